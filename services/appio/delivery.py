"""Recording messages and delivering them: never lose one, never submit one twice.

Why: events, back-office requests and campaigns only *record* a logical message (one row,
unique per tenant and dedup key, in the same transaction as the inbox claim or the campaign).
A dispatcher then drives each row through the state machine of `domain.delivery`, under a
lease with a fencing token so two workers never act on the same row. Plain Python: the
database, IO port, tenants and clock are injected; nameko only runs the loop (service.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from services.appio.domain import delivery as sm
from services.appio.domain import templates
from services.appio.domain.campaigns import recipients as clean_recipients
from services.appio.domain.errors import (
    IOApiError,
    IOBadRequest,
    IONotFound,
    IOOutcomeUnknown,
    IOThrottled,
    MessageNotInDoubt,
    NotConfirmedByIO,
)
from services.appio.domain.messages import MessageContent, PaymentData, normalise_fiscal_code
from services.appio.models import campaigns, messages
from services.appio.ports import IOMessageStatus, IOServicesPort, ServiceKeys
from sportello.contracts.appio import MessageFailed, MessageNotDeliverable, MessageSent
from sportello.errors import ConfigurationError, NotFound, ValidationFailed
from sportello.events import EventPayload, new_event
from sportello.outbox import add_event
from sportello.tenants import Tenant, TenantRegistry

log = structlog.get_logger("appio.delivery")


class Transactional(Protocol):
    def transaction(self) -> Any: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite hands back naive datetimes
    return value


def service_keys(tenant: Tenant, io_service: str) -> ServiceKeys:
    if tenant.appio is None:
        raise ConfigurationError(f"tenant {tenant.id} has no App IO configuration")
    service = tenant.appio.service(io_service)
    return ServiceKeys(limiter_key=f"{tenant.id}/{service.name}", primary=service.primary_key.get_secret_value(),
                       secondary=service.secondary_key.get_secret_value() if service.secondary_key else None,
                       service_id=service.service_id, base_url=str(tenant.appio.base_url))


def choose_service(tenant: Tenant, requested: str | None) -> str:
    """The named IO service if it exists, else (none named) the tenant's first."""
    if tenant.appio is None:
        raise ConfigurationError(f"tenant {tenant.id} has no App IO configuration")
    if requested:
        return tenant.appio.service(requested).name
    return tenant.appio.services[0].name


# -- recording ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    message_id: str
    created: bool


def record_message(session: Session, *, tenant: Tenant, dedup_key: str, io_service: str | None, kind: str,
                   recipient: str, variables: dict[str, Any], correlation_id: str, reference: str | None = None,
                   campaign_id: str | None = None, now: datetime | None = None) -> Recorded:
    """Record one logical message (validated now, in every language it may be sent in)."""
    existing = session.execute(select(messages.c.id).where(messages.c.tenant == tenant.id,
                                                           messages.c.dedup_key == dedup_key)).first()
    if existing is not None:
        return Recorded(existing[0], False)
    recipient = normalise_fiscal_code(recipient)
    service = choose_service(tenant, io_service)
    variables = {**variables, "comune": tenant.name}
    for language in ("it", "en"):
        templates.render(kind, variables, language)  # raises InvalidMessage before anything is stored
    message_id = str(uuid.uuid4())
    now = now or utcnow()
    session.execute(insert(messages).values(
        id=message_id, tenant=tenant.id, dedup_key=dedup_key, io_service=service, kind=kind,
        recipient_fiscal_code=recipient, reference=reference, campaign_id=campaign_id, variables=variables,
        state=sm.PENDING, attempts=0, next_attempt_at=now, correlation_id=correlation_id, created_at=now))
    return Recorded(message_id, True)


def payment_variables(data: Any) -> dict[str, Any]:
    """From a PaymentPositionCreated payload."""
    return {"description": data.description, "amount_cents": data.amount_cents, "notice_number": data.notice_number,
            "payee_fiscal_code": data.payee_fiscal_code, "due_date": data.due_date.isoformat()}


def certificate_variables(data: Any) -> dict[str, Any]:
    """From a CertificateIssued payload."""
    return {"certificate_type": data.certificate_type, "verification_code": data.verification_code}


def free_text_variables(subject: str, markdown: str, due_date: date | datetime | None = None,
                        payment: dict[str, Any] | None = None) -> dict[str, Any]:
    from services.appio.domain.messages import io_timestamp

    variables: dict[str, Any] = {"subject": subject, "markdown": markdown}
    if due_date is not None:
        variables["due_date"] = io_timestamp(due_date)
    if payment:
        variables["payment_data"] = PaymentData(
            amount_cents=payment.get("amount_cents"),  # type: ignore[arg-type]
            notice_number=payment.get("notice_number"),  # type: ignore[arg-type]
            payee_fiscal_code=payment.get("payee_fiscal_code"),  # type: ignore[arg-type]
            invalid_after_due_date=bool(payment.get("invalid_after_due_date", False))).as_dict()
    return variables


def create_campaign(session: Session, *, tenant: Tenant, name: str, subject: str, markdown: str,
                    fiscal_codes: list[str], io_service: str | None, correlation_id: str,
                    idempotency_key: str | None = None, created_by: str | None = None) -> dict[str, Any]:
    """A campaign and all its recipients' messages, in one transaction (so resumable by construction)."""
    dedup = f"key:{idempotency_key}" if idempotency_key else f"campaign:{uuid.uuid4()}"
    existing = session.execute(select(campaigns.c.id).where(campaigns.c.tenant == tenant.id,
                                                            campaigns.c.dedup_key == dedup)).first()
    if existing is not None:
        return campaign_progress(session, tenant.id, existing[0])
    if not 1 <= len(name.strip()) <= 120:
        raise ValidationFailed("name: 1 to 120 characters")
    variables = free_text_variables(subject, markdown)
    templates.render("free_text", variables)
    unique, duplicates = clean_recipients(fiscal_codes)
    service = choose_service(tenant, io_service)
    campaign_id = str(uuid.uuid4())
    now = utcnow()
    session.execute(insert(campaigns).values(
        id=campaign_id, tenant=tenant.id, dedup_key=dedup, io_service=service, name=name.strip(),
        variables=variables, recipients=len(unique), duplicates=duplicates, created_by=created_by,
        correlation_id=correlation_id, created_at=now))
    rows = [dict(id=str(uuid.uuid4()), tenant=tenant.id, dedup_key=f"campaign:{campaign_id}:{code}",
                 io_service=service, kind="free_text", recipient_fiscal_code=code, reference=None,
                 campaign_id=campaign_id, variables={**variables, "comune": tenant.name}, state=sm.PENDING,
                 attempts=0, next_attempt_at=now, correlation_id=correlation_id, created_at=now) for code in unique]
    for start in range(0, len(rows), 1000):
        session.execute(insert(messages), rows[start:start + 1000])
    return campaign_progress(session, tenant.id, campaign_id)


# -- reading -----------------------------------------------------------------------------------------


def message_view(row: Any) -> dict[str, Any]:
    return {"message_id": row.id, "kind": row.kind, "io_service": row.io_service, "state": row.state,
            "outcome": sm.outcome(row.state, row.outcome_reason), "reason": row.outcome_reason,
            "io_message_id": row.io_message_id, "io_status": row.io_status, "attempts": row.attempts,
            "reference": row.reference, "campaign_id": row.campaign_id,
            "created_at": _aware(row.created_at).isoformat(),  # type: ignore[union-attr]
            "completed_at": row.completed_at and _aware(row.completed_at).isoformat(),  # type: ignore[union-attr]
            "resolution": row.resolution and {
                "action": row.resolution, "by": row.resolved_by,
                "at": _aware(row.resolved_at).isoformat()}}  # type: ignore[union-attr]


def get_message(session: Session, tenant: str, message_id: str) -> dict[str, Any]:
    row = session.execute(select(messages).where(messages.c.tenant == tenant, messages.c.id == message_id)).first()
    if row is None:
        raise NotFound(f"no message {message_id}")
    return message_view(row)


def list_messages(session: Session, tenant: str, *, state: str | None = None, campaign_id: str | None = None,
                  offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """The tenant's messages, newest first (e.g. those `in_doubt`, waiting for an operator)."""
    if state is not None and state not in sm.ALL_STATES:
        raise ValidationFailed(f"state: one of {', '.join(sm.ALL_STATES)}")
    query = select(messages).where(messages.c.tenant == tenant)
    if state is not None:
        query = query.where(messages.c.state == state)
    if campaign_id is not None:
        query = query.where(messages.c.campaign_id == campaign_id)
    rows = session.execute(query.order_by(messages.c.created_at.desc(), messages.c.id)
                           .offset(offset).limit(limit)).all()
    return [message_view(row) for row in rows]


def campaign_progress(session: Session, tenant: str, campaign_id: str) -> dict[str, Any]:
    campaign = session.execute(select(campaigns).where(campaigns.c.tenant == tenant,
                                                       campaigns.c.id == campaign_id)).first()
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    counts = {"pending": 0, "sent": 0, "not_on_io": 0, "not_allowed": 0, "failed": 0, "in_doubt": 0}
    for state, reason, count in session.execute(
            select(messages.c.state, messages.c.outcome_reason, func.count())
            .where(messages.c.campaign_id == campaign_id, messages.c.tenant == tenant)
            .group_by(messages.c.state, messages.c.outcome_reason)):
        counts[sm.outcome(state, reason)] += int(count)
    return {"campaign_id": campaign.id, "name": campaign.name, "io_service": campaign.io_service,
            "recipients": int(campaign.recipients), "duplicates_dropped": int(campaign.duplicates),
            "outcomes": counts, "done": counts["pending"] == 0,
            "created_at": _aware(campaign.created_at).isoformat()}  # type: ignore[union-attr]


def campaign_report(session: Session, tenant: str, campaign_id: str, *, offset: int = 0,
                    limit: int = 1000) -> dict[str, Any]:
    progress = campaign_progress(session, tenant, campaign_id)
    rows = session.execute(select(messages).where(messages.c.campaign_id == campaign_id, messages.c.tenant == tenant)
                           .order_by(messages.c.recipient_fiscal_code).offset(offset).limit(limit)).all()
    return {**progress, "offset": offset, "items": [
        {"fiscal_code": row.recipient_fiscal_code, "message_id": row.id,
         "outcome": sm.outcome(row.state, row.outcome_reason), "reason": row.outcome_reason,
         "io_message_id": row.io_message_id} for row in rows]}


# -- delivering --------------------------------------------------------------------------------------


class Deliverer:
    """Moves due messages along the state machine; each `process()` call owns its row by lease."""

    def __init__(self, db: Transactional, io: IOServicesPort, tenants: TenantRegistry, *,
                 policy: sm.RetryPolicy | None = None, lease_seconds: float = 120.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.io = io
        self.tenants = tenants
        self.policy = policy or sm.RetryPolicy()
        self.lease = timedelta(seconds=lease_seconds)
        self.clock = clock

    # The dispatcher's two queries ----------------------------------------------------------------
    def due(self, limit: int = 100, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
        now = self.clock()
        with self.db.transaction() as session:
            rows = session.execute(
                select(messages.c.id).where(messages.c.state.in_(sm.ACTIVE), messages.c.next_attempt_at <= now,
                                            or_(messages.c.lease_until.is_(None), messages.c.lease_until < now))
                .order_by(messages.c.next_attempt_at).limit(limit + len(exclude))).all()
        return [row[0] for row in rows if row[0] not in exclude][:limit]

    def resolve_abandoned(self) -> int:
        """Submissions whose worker died mid-call: in doubt, reported, never sent again."""
        now = self.clock()
        resolved = 0
        with self.db.transaction() as session:
            rows = session.execute(select(messages).where(messages.c.state == sm.SUBMITTING,
                                                          messages.c.lease_until < now)).all()
            for row in rows:
                done = session.execute(update(messages).where(
                    messages.c.id == row.id, messages.c.state == sm.SUBMITTING,
                    messages.c.lease_token == row.lease_token)
                    .values(state=sm.IN_DOUBT, outcome_reason="submission_in_doubt", lease_until=None,
                            lease_token=None, completed_at=now))
                if done.rowcount == 1:  # type: ignore[attr-defined]
                    self._emit(session, row, MessageFailed, reason="submission_in_doubt")
                    resolved += 1
        if resolved:
            log.warning("appio_submissions_in_doubt", count=resolved)
        return resolved

    # An operator's decision on an in-doubt message (docs/adr/0007) ------------------------------
    def resolve_in_doubt(self, tenant: str, message_id: str, *, action: str, operator: str,
                         io_message_id: str | None = None, confirm: bool = False) -> dict[str, Any]:
        """`mark_sent`: IO confirms it has the message under `io_message_id` (then it is followed to
        its final status); `resend`: submitted again, only with `confirm` (the citizen may get it twice).
        Both are conditional on the row still being `in_doubt`, so two operators cannot both act."""
        if action not in ("mark_sent", "resend"):
            raise ValidationFailed("action: mark_sent or resend")
        with self.db.transaction() as session:
            row = session.execute(select(messages).where(messages.c.tenant == tenant,
                                                         messages.c.id == message_id)).first()
        if row is None:
            raise NotFound(f"no message {message_id}")
        if row.state != sm.IN_DOUBT:
            raise MessageNotInDoubt(f"message {message_id} is {row.state}")
        now = self.clock()
        audit = {"resolution": action, "resolved_by": operator[:16], "resolved_at": now}
        if action == "resend":
            if confirm is not True:
                raise ValidationFailed("resend needs confirm=true: IO may already have this message, and the "
                                       "citizen would then receive it twice")
            values: dict[str, Any] = dict(state=sm.PENDING, attempts=0, outcome_reason=None, io_message_id=None,
                                          io_status=None, next_attempt_at=now, submitting_at=None,
                                          submitted_at=None, completed_at=None, lease_until=None, lease_token=None)
            event: type[EventPayload] | None = None
        else:
            io_id = (io_message_id or "").strip()
            if not 1 <= len(io_id) <= 64:
                raise ValidationFailed("mark_sent needs io_message_id: the id IO gave the message (1-64 characters)")
            with self.db.transaction() as session:
                taken = session.execute(select(messages.c.id).where(
                    messages.c.tenant == tenant, messages.c.io_message_id == io_id, messages.c.id != row.id)).first()
            if taken is not None:
                raise ValidationFailed("io_message_id: already the IO id of another message")
            keys = service_keys(self.tenants.get(tenant), row.io_service)
            try:
                status = self.io.get_message(keys, row.recipient_fiscal_code, io_id)
            except IONotFound:
                raise NotConfirmedByIO("IO has no such message for this citizen from this service") from None
            if status.status in ("FAILED", "REJECTED"):
                raise NotConfirmedByIO(f"IO has that message as {status.status}: resend instead")
            if status.status == "PROCESSED":
                values = dict(state=sm.SENT, io_message_id=io_id, io_status=status.status, outcome_reason=None,
                              completed_at=now)
                event = MessageSent
            else:  # accepted, not final yet: followed like any submission
                values = dict(state=sm.SUBMITTED, io_message_id=io_id, io_status=status.status, attempts=0,
                              outcome_reason=None, submitted_at=now, completed_at=None, next_attempt_at=now)
                event = None
        with self.db.transaction() as session:
            done = session.execute(update(messages).where(messages.c.id == row.id, messages.c.state == sm.IN_DOUBT)
                                   .values(**values, **audit))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise MessageNotInDoubt(f"message {message_id} was resolved meanwhile")
            if event is MessageSent:
                self._emit(session, row, MessageSent, io_message_id=values["io_message_id"])
            view = message_view(session.execute(select(messages).where(messages.c.id == row.id)).one())
        log.info("appio_in_doubt_resolved", message_id=row.id, action=action)
        return view

    # One message -------------------------------------------------------------------------------
    def process(self, message_id: str) -> str | None:
        """Advance one message as far as it can go now. Returns its state, None if not ours."""
        claimed = self._claim(message_id)
        if claimed is None:
            return None
        row, token = claimed
        try:
            tenant = self.tenants.get(row.tenant)
            keys = service_keys(tenant, row.io_service)
        except Exception as exc:  # noqa: BLE001 - configuration removed under our feet: keep it, retry later
            return self._retry(row, token, f"configuration: {type(exc).__name__}", attempts=row.attempts + 1)
        state = row.state
        if state == sm.PENDING:
            state = self._check_profile(row, token, keys)
            if state != sm.PROFILE_CHECKED:
                return state
            row = self._reload(message_id)
        if state == sm.PROFILE_CHECKED:
            return self._submit(row, token, keys)
        if state == sm.SUBMITTED:
            return self._follow(row, token, keys)
        self._release(row.id, token)
        return str(state)

    def _claim(self, message_id: str) -> tuple[Any, str] | None:
        now = self.clock()
        token = str(uuid.uuid4())
        with self.db.transaction() as session:
            done = session.execute(update(messages).where(
                messages.c.id == message_id, messages.c.state.in_(sm.ACTIVE),
                or_(messages.c.lease_until.is_(None), messages.c.lease_until < now))
                .values(lease_until=now + self.lease, lease_token=token))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = session.execute(select(messages).where(messages.c.id == message_id)).one()
        return row, token

    def _reload(self, message_id: str) -> Any:
        with self.db.transaction() as session:
            return session.execute(select(messages).where(messages.c.id == message_id)).one()

    def _write(self, session: Session, row: Any, token: str, **values: Any) -> bool:
        """Update our row only while we still hold its lease (fencing token)."""
        done = session.execute(update(messages).where(messages.c.id == row.id, messages.c.lease_token == token)
                               .values(**values))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            log.warning("appio_lease_lost", message_id=row.id)
            return False
        return True

    def _release(self, message_id: str, token: str) -> None:
        with self.db.transaction() as session:
            session.execute(update(messages).where(messages.c.id == message_id, messages.c.lease_token == token)
                            .values(lease_until=None, lease_token=None))

    def _finish(self, row: Any, token: str, state: str, event: type[EventPayload], **values: Any) -> str:
        now = self.clock()
        with self.db.transaction() as session:
            if self._write(session, row, token, state=state, lease_until=None, lease_token=None, completed_at=now,
                           **values):
                if event is MessageSent:
                    self._emit(session, row, event, io_message_id=values["io_message_id"])
                else:
                    self._emit(session, row, event, reason=values.get("outcome_reason") or "failed")
        log.info("appio_message_final", message_id=row.id, state=state, reason=values.get("outcome_reason"))
        return state

    def _retry(self, row: Any, token: str, reason: str, *, attempts: int, state: str | None = None,
               delay: float | None = None) -> str:
        state = state or row.state
        if attempts >= self.policy.max_attempts:
            return self._finish(row, token, sm.FAILED, MessageFailed, outcome_reason=reason[:200], attempts=attempts)
        wait = self.policy.delay(attempts) if delay is None else max(delay, 0.0)
        with self.db.transaction() as session:
            self._write(session, row, token, state=state, attempts=attempts, outcome_reason=reason[:200],
                        next_attempt_at=self.clock() + timedelta(seconds=wait), lease_until=None, lease_token=None)
        log.info("appio_message_retry", message_id=row.id, state=state, attempt=attempts, delay=round(wait, 2),
                 reason=reason)
        return state

    def _emit(self, session: Session, row: Any, event: type[EventPayload], **fields: Any) -> None:
        payload = event.model_validate({"message_id": row.id, "kind": row.kind,
                                        "recipient_fiscal_code": row.recipient_fiscal_code,
                                        "reference": row.reference, "campaign_id": row.campaign_id, **fields})
        add_event(session, new_event(payload, service="appio", tenant=row.tenant,
                                     correlation_id=row.correlation_id, subject=row.id))

    # The three calls to IO -------------------------------------------------------------------------
    def _check_profile(self, row: Any, token: str, keys: ServiceKeys) -> str:
        try:
            profile = self.io.get_profile(keys, row.recipient_fiscal_code)
        except IONotFound:
            return self._finish(row, token, sm.NOT_DELIVERABLE, MessageNotDeliverable, outcome_reason="not_on_io")
        except IOApiError as exc:
            return self._on_error(row, token, exc, sm.PENDING)
        if not profile.sender_allowed:
            return self._finish(row, token, sm.NOT_DELIVERABLE, MessageNotDeliverable,
                                outcome_reason="sender_not_allowed")
        with self.db.transaction() as session:
            self._write(session, row, token, state=sm.PROFILE_CHECKED, attempts=0,
                        language=templates.language_for(profile.preferred_languages), outcome_reason=None)
        return sm.PROFILE_CHECKED

    def _submit(self, row: Any, token: str, keys: ServiceKeys) -> str:
        content: MessageContent = templates.render(row.kind, row.variables, row.language or "it")
        attempts = row.attempts + 1

        def record_intent() -> None:
            with self.db.transaction() as session:
                if not self._write(session, row, token, state=sm.SUBMITTING, attempts=attempts,
                                   submitting_at=self.clock()):
                    raise LeaseLost(row.id)

        try:
            io_id = self.io.submit_message(keys, row.recipient_fiscal_code, content, before_send=record_intent)
        except LeaseLost:
            return sm.PROFILE_CHECKED
        except IOOutcomeUnknown:
            return self._finish(row, token, sm.IN_DOUBT, MessageFailed, outcome_reason="submission_in_doubt",
                                attempts=attempts)
        except IOBadRequest as exc:
            return self._finish(row, token, sm.FAILED, MessageFailed,
                                outcome_reason=f"refused by IO: {exc.detail}"[:200], attempts=attempts)
        except IOApiError as exc:
            return self._on_error(row, token, exc, sm.PROFILE_CHECKED, attempts=attempts)
        now = self.clock()
        with self.db.transaction() as session:
            self._write(session, row, token, state=sm.SUBMITTED, io_message_id=io_id, submitted_at=now, attempts=0,
                        outcome_reason=None, lease_until=None, lease_token=None,
                        next_attempt_at=now + timedelta(seconds=self.policy.poll_delay(1)))
        return sm.SUBMITTED

    def _follow(self, row: Any, token: str, keys: ServiceKeys) -> str:
        polls = row.attempts + 1
        status: IOMessageStatus | None = None
        try:
            status = self.io.get_message(keys, row.recipient_fiscal_code, row.io_message_id)
        except IOApiError as exc:
            reason = exc.code
        else:
            reason = status.status
            if status.status == "PROCESSED":
                return self._finish(row, token, sm.SENT, MessageSent, io_message_id=row.io_message_id,
                                    io_status=status.status, outcome_reason=None)
            if status.final:
                return self._finish(row, token, sm.FAILED, MessageFailed, io_message_id=row.io_message_id,
                                    io_status=status.status, outcome_reason=f"io_status_{status.status.lower()}")
        submitted_at = _aware(row.submitted_at) or self.clock()
        if (self.clock() - submitted_at).total_seconds() >= self.policy.follow_seconds:
            # IO accepted it (201) and never said otherwise: it is the citizen's, as far as anyone can know.
            return self._finish(row, token, sm.SENT, MessageSent, io_message_id=row.io_message_id,
                                io_status=status.status if status else None, outcome_reason="status_not_final")
        with self.db.transaction() as session:
            self._write(session, row, token, attempts=polls, io_status=status.status if status else row.io_status,
                        next_attempt_at=self.clock() + timedelta(seconds=self.policy.poll_delay(polls)),
                        lease_until=None, lease_token=None)
        log.info("appio_status_not_final", message_id=row.id, poll=polls, status=reason)
        return sm.SUBMITTED

    def _on_error(self, row: Any, token: str, exc: IOApiError, state: str, attempts: int | None = None) -> str:
        attempts = row.attempts + 1 if attempts is None else attempts
        delay = None
        if isinstance(exc, IOThrottled):  # IO pacing us is not a failed attempt: wait as told, no count
            attempts, delay = row.attempts, exc.retry_after
        return self._retry(row, token, exc.code, attempts=attempts, state=state, delay=delay)


class LeaseLost(Exception):
    """Our lease on a message expired before we could record the intent: do not send."""

