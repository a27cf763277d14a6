"""CSV campaigns of payment positions: upload, background creation on GPD (v2 bulk), progress, report.

Why this shape (resumable after a crash, nothing created twice):
- the upload validates every row and stores the campaign *with all its rows* in one transaction —
  a row is `invalid` (with its error) or `pending` (with its validated request); nothing else
  happens in the request, so a huge file never holds a worker on GPD;
- a background worker takes pending rows in batches. Step 1 (one transaction) makes each row's
  draft position — its reference is `campaign id:row number`, unique per tenant, and the row
  records the position id — so a row has exactly one IUPD and one IUV forever. Step 2 sends the
  drafts to GPD in one v2 bulk call (outside any transaction; the adapter keeps GPD's 100 calls /
  10 s per key). Step 3 (one transaction) publishes them, marks the rows `created` and puts one
  `PaymentPositionCreated` (with `campaign_id`) per position in the outbox.
- killed anywhere, the next run re-sends the same drafts: GPD answers 409 for those it already
  has and the adapter, 409-aware, fetches instead of creating, so GPD holds each position once.
- a batch GPD refuses (400) is retried position by position to find the bad ones: those rows
  become `failed` with the reason, their never-published drafts are deleted, the rest go on.
  GPD unavailable (after the adapter's retries) leaves the rows pending for the next run.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.pagopa import store
from services.pagopa.application import Positions
from services.pagopa.domain.campaign_csv import MAX_ERROR_CHARS, parse_campaign
from services.pagopa.domain.errors import GpdRejected, GpdUnavailable, IdempotencyConflict
from services.pagopa.domain.iuv import notice_for
from services.pagopa.domain.positions import (
    Debtor,
    PaymentPosition,
    PositionRequest,
    PositionStatus,
    Transfer,
)
from services.pagopa.models import campaign_rows, campaigns, positions
from sportello.contracts.pagopa import PaymentPositionCreated
from sportello.errors import NotFound, ValidationFailed
from sportello.tenants import Tenant

log = structlog.get_logger("pagopa.campaigns")
BATCH_SIZE = 20  # positions per GPD v2 bulk call (GPD documents no maximum; 20 = its bulk-delete limit)
MAX_ERRORS_IN_ANSWER = 1000
ROW_STATES = ("invalid", "pending", "created", "failed")
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def _request_json(request: PositionRequest) -> str:
    r = request
    return json.dumps({
        "kind": r.debtor.kind, "fiscal_code": r.debtor.fiscal_code, "name": r.debtor.full_name,
        "amount_cents": r.amount_cents, "due_date": r.due_date.isoformat(), "description": r.description,
        "iban": r.transfers[0].iban, "reference": r.reference, "campaign_id": r.campaign_id,
    }, separators=(",", ":"), ensure_ascii=False)


def _request_from(text: str) -> PositionRequest:
    d = json.loads(text)
    return PositionRequest(
        description=d["description"], amount_cents=int(d["amount_cents"]), due_date=date.fromisoformat(d["due_date"]),
        debtor=Debtor(d["kind"], d["fiscal_code"], d["name"]),
        transfers=[Transfer(1, int(d["amount_cents"]), d["description"], iban=d["iban"])],
        purpose="campaign", reference=d["reference"], campaign_id=d["campaign_id"],
    )


class Campaigns:
    """Use cases of CSV campaigns, on top of `Positions` (same database, tenants and GPD port)."""

    def __init__(self, positions_app: Positions, *, batch_size: int = BATCH_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = positions_app
        self.db = positions_app.db
        self.gpd = positions_app.gpd
        self.batch_size = batch_size
        self.clock = clock

    # -- upload --------------------------------------------------------------------------------
    def upload(self, tenant_id: str, name: str, data: bytes | str, *,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Validate every row and store the campaign with all its rows in one transaction.

        With an `idempotency_key`, uploading the same name and CSV again answers the campaign
        already made (`replayed: true`); the same key with other content is IdempotencyConflict."""
        tenant = self.app._tenant(tenant_id)
        assert tenant.pagopa is not None
        name = (name or "").strip()
        if not 1 <= len(name) <= 140:
            raise ValidationFailed("campaign name must be 1-140 characters")
        digest = None
        if idempotency_key is not None:
            if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
                raise ValidationFailed("Idempotency-Key must be 1-255 visible ASCII characters")
            raw = data.encode("utf-8") if isinstance(data, str) else data
            digest = hashlib.sha256(name.encode("utf-8") + b"\0" + raw).hexdigest()
            earlier = self._replay(tenant.id, idempotency_key, digest)
            if earlier is not None:
                return earlier
        try:
            return self._store(tenant, name, data, idempotency_key, digest)
        except IntegrityError:
            if idempotency_key is None or digest is None:
                raise
            earlier = self._replay(tenant.id, idempotency_key, digest)  # a concurrent twin stored it first
            if earlier is None:
                raise
            return earlier

    def _replay(self, tenant_id: str, key: str, digest: str) -> dict[str, Any] | None:
        """The campaign made earlier with this key (same content), None if none; conflict otherwise."""
        with self.db.transaction() as session:
            found = session.execute(sa.select(campaigns.c.id, campaigns.c.content_sha256).where(
                campaigns.c.tenant == tenant_id, campaigns.c.idempotency_key == key)).first()
            if found is None:
                return None
            if found.content_sha256 != digest:
                raise IdempotencyConflict("this Idempotency-Key was used for another upload (other name or CSV)")
            errors = session.execute(
                sa.select(campaign_rows.c.row_number, campaign_rows.c.error)
                .where(campaign_rows.c.campaign_id == found.id, campaign_rows.c.status == "invalid")
                .order_by(campaign_rows.c.row_number).limit(MAX_ERRORS_IN_ANSWER)).all()
        view = self.progress(tenant_id, found.id)
        view["errors"] = [{"row": r.row_number, "error": r.error} for r in errors]
        view["replayed"] = True
        log.info("payment_campaign_upload_replayed", tenant=tenant_id, campaign_id=found.id)
        return view

    def _store(self, tenant: Tenant, name: str, data: bytes | str, idempotency_key: str | None,
               digest: str | None) -> dict[str, Any]:
        assert tenant.pagopa is not None
        campaign_id = str(uuid.uuid4())
        rows = parse_campaign(data, campaign_id=campaign_id, today=self.app.today(),
                              default_iban=tenant.pagopa.ibans[0], allowed_ibans=tenant.pagopa.ibans)
        valid = sum(1 for r in rows if r.request is not None)
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            session.execute(sa.insert(campaigns).values(
                id=campaign_id, tenant=tenant.id, name=name, status="running" if valid else "done",
                total_rows=len(rows), valid_rows=valid, created_at=now, updated_at=now,
                idempotency_key=idempotency_key, content_sha256=digest))
            session.execute(sa.insert(campaign_rows), [
                {"campaign_id": campaign_id, "row_number": r.number, "tenant": tenant.id,
                 "reference": r.request.reference if r.request else None,
                 "payload": _request_json(r.request) if r.request else None,
                 "status": "pending" if r.request else "invalid", "error": r.error, "position_id": None}
                for r in rows
            ])
        log.info("payment_campaign_uploaded", tenant=tenant.id, campaign_id=campaign_id, rows=len(rows),
                 valid=valid)
        view = self.progress(tenant.id, campaign_id)
        view["errors"] = [{"row": r.number, "error": r.error} for r in rows if r.error][:MAX_ERRORS_IN_ANSWER]
        view["replayed"] = False
        return view

    # -- queries ------------------------------------------------------------------------------
    def progress(self, tenant_id: str, campaign_id: str) -> dict[str, Any]:
        with self.db.transaction() as session:
            campaign = session.execute(sa.select(campaigns).where(
                campaigns.c.id == campaign_id, campaigns.c.tenant == tenant_id)).first()
            if campaign is None:
                raise NotFound("no such campaign")
            counts: dict[str, int] = dict(session.execute(  # type: ignore[arg-type]
                sa.select(campaign_rows.c.status, sa.func.count())
                .where(campaign_rows.c.campaign_id == campaign_id).group_by(campaign_rows.c.status)).all())
        m = campaign._mapping
        return {
            "campaign_id": m["id"], "name": m["name"], "status": m["status"], "total_rows": m["total_rows"],
            "valid_rows": m["valid_rows"], "counts": {state: int(counts.get(state, 0)) for state in ROW_STATES},
            "created_at": m["created_at"].isoformat(), "updated_at": m["updated_at"].isoformat(),
        }

    def report(self, tenant_id: str, campaign_id: str, *, status: str | None = None, offset: int = 0,
               limit: int = 1000) -> dict[str, Any]:
        """Per-row outcome: state, error, and the position (id, notice number) it made."""
        if status is not None and status not in ROW_STATES:
            raise ValidationFailed("status must be one of " + ", ".join(ROW_STATES))
        if not 1 <= limit <= 5000 or offset < 0:
            raise ValidationFailed("limit must be 1-5000 and offset >= 0")
        self.progress(tenant_id, campaign_id)  # NotFound for another tenant's campaign
        query = (sa.select(campaign_rows.c.row_number, campaign_rows.c.status, campaign_rows.c.error,
                           campaign_rows.c.position_id, positions.c.notice_number)
                 .select_from(campaign_rows.outerjoin(positions, positions.c.id == campaign_rows.c.position_id))
                 .where(campaign_rows.c.campaign_id == campaign_id, campaign_rows.c.tenant == tenant_id))
        if status is not None:
            query = query.where(campaign_rows.c.status == status)
        query = query.order_by(campaign_rows.c.row_number).offset(offset).limit(limit)
        with self.db.transaction() as session:
            found = session.execute(query).all()
        return {"campaign_id": campaign_id, "offset": offset, "items": [
            {"row": r.row_number, "status": r.status, "error": r.error,
             "position_id": r.position_id if r.status == "created" else None,
             "notice_number": r.notice_number if r.status == "created" else None}
            for r in found]}

    # -- background work -------------------------------------------------------------------------
    def running(self, tenant_id: str) -> list[str]:
        with self.db.transaction() as session:
            return list(session.execute(sa.select(campaigns.c.id).where(
                campaigns.c.tenant == tenant_id, campaigns.c.status == "running")
                .order_by(campaigns.c.created_at)).scalars())

    def process(self, tenant_id: str, *, budget_seconds: float = 30.0) -> int:
        """Work on the tenant's running campaigns for at most about `budget_seconds`; rows settled."""
        deadline = self.clock() + budget_seconds
        settled = 0
        for campaign_id in self.running(tenant_id):
            while self.clock() < deadline:
                done = self.process_batch(tenant_id, campaign_id)
                if done is None:
                    break
                settled += done
            if self.clock() >= deadline:
                break
        return settled

    def process_batch(self, tenant_id: str, campaign_id: str) -> int | None:
        """One batch of pending rows: drafts, one GPD bulk call, published. None when nothing is
        pending (the campaign is then marked done) or GPD is unavailable (try again later)."""
        tenant = self.app._tenant(tenant_id)
        drafts = self._drafts(tenant, campaign_id)
        if not drafts:
            self._finish(tenant.id, campaign_id)
            return None
        failed: dict[int, str] = {}
        try:
            self.gpd.create_many(tenant, [p for _, p in drafts], publish=True)
        except GpdRejected:
            for number, position in drafts:  # find the ones GPD refuses; the others are created
                try:
                    self.gpd.create(tenant, position, publish=True)
                except GpdRejected as exc:
                    failed[number] = exc.detail[:MAX_ERROR_CHARS]
        except GpdUnavailable as exc:
            log.warning("payment_campaign_gpd_unavailable", tenant=tenant.id, campaign_id=campaign_id, code=exc.code)
            return None
        self._settle(tenant, campaign_id, drafts, failed)
        return len(drafts)

    def _drafts(self, tenant: Tenant, campaign_id: str) -> list[tuple[int, PaymentPosition]]:
        """The next pending rows with their draft positions (made now for rows that have none)."""
        assert tenant.pagopa is not None
        with self.db.transaction() as session:
            query = (sa.select(campaign_rows.c.row_number, campaign_rows.c.payload, campaign_rows.c.position_id)
                     .where(campaign_rows.c.campaign_id == campaign_id, campaign_rows.c.status == "pending")
                     .order_by(campaign_rows.c.row_number).limit(self.batch_size))
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            pending = session.execute(query).all()
            if not pending:
                return []
            have = [r.position_id for r in pending if r.position_id is not None]
            existing = {row.id: self.app._load(row, tenant) for row in session.execute(
                sa.select(positions).where(positions.c.id.in_(have)))} if have else {}
            fresh = [r for r in pending if r.position_id is None]
            bases = iter(store.allocate_iuv_bases(session, tenant.id, tenant.pagopa.segregation_code, len(fresh))
                         if fresh else ())
            out: list[tuple[int, PaymentPosition]] = []
            new_positions: list[dict[str, Any]] = []
            links: list[dict[str, Any]] = []
            now = datetime.now(UTC)
            for r in pending:
                if r.position_id is not None:
                    out.append((r.row_number, existing[r.position_id]))
                    continue
                number = notice_for(tenant.pagopa.segregation_code, next(bases))
                position_id = str(uuid.uuid4())
                position = PaymentPosition(
                    id=position_id, tenant=tenant.id, iupd=f"{tenant.fiscal_code}-{position_id}", iuv=number.iuv,
                    notice_number=number.notice_number, payee_fiscal_code=tenant.fiscal_code,
                    company_name=tenant.name, request=_request_from(r.payload))
                new_positions.append({**store.to_row(position), "created_at": now, "updated_at": now})
                links.append({"c": campaign_id, "n": r.row_number, "p": position_id})
                out.append((r.row_number, position))
            if new_positions:
                session.execute(sa.insert(positions), new_positions)
                session.execute(sa.update(campaign_rows).where(
                    campaign_rows.c.campaign_id == sa.bindparam("c"), campaign_rows.c.row_number == sa.bindparam("n"))
                    .values(position_id=sa.bindparam("p")), links)
        return out

    def _settle(self, tenant: Tenant, campaign_id: str, drafts: list[tuple[int, PaymentPosition]],
                failed: dict[int, str]) -> None:
        """Published + row created + event, or row failed (draft deleted) — one transaction, a few
        statements per batch (not per row): the worker must keep up with 10 GPD calls a second."""
        now = datetime.now(UTC)
        numbers = [number for number, _ in drafts]
        with self.db.transaction() as session:
            query = sa.select(campaign_rows.c.row_number).where(
                campaign_rows.c.campaign_id == campaign_id, campaign_rows.c.row_number.in_(numbers),
                campaign_rows.c.status == "pending")
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update()  # a second replica settling the same rows waits, then skips them
            still = set(session.execute(query).scalars())  # others were settled by another worker
            todo = [(n, p) for n, p in drafts if n in still]
            gone = [(n, p) for n, p in todo if n in failed]
            made = [(n, p) for n, p in todo if n not in failed]
            if gone:
                session.execute(sa.delete(positions).where(positions.c.id.in_([p.id for _, p in gone]),
                                                           positions.c.status == PositionStatus.DRAFT.value))
                session.execute(self._row_update(), [
                    {"c": campaign_id, "n": n, "s": "failed", "e": failed[n], "p": None} for n, _ in gone])
            publish = [p.publish() for _, p in made if p.status is PositionStatus.DRAFT]
            if publish:
                session.execute(sa.update(positions).where(
                    positions.c.id.in_([p.id for p in publish]), positions.c.tenant == tenant.id,
                    positions.c.status == PositionStatus.DRAFT.value)
                    .values(status=PositionStatus.PUBLISHED.value, updated_at=now))
                for published in publish:
                    self._emit_created(session, tenant, published)
            if made:
                session.execute(self._row_update(), [
                    {"c": campaign_id, "n": n, "s": "created", "e": None, "p": p.id} for n, p in made])
            session.execute(sa.update(campaigns).where(campaigns.c.id == campaign_id).values(updated_at=now))

    @staticmethod
    def _row_update() -> sa.Update:
        return (sa.update(campaign_rows).where(campaign_rows.c.campaign_id == sa.bindparam("c"),
                                               campaign_rows.c.row_number == sa.bindparam("n"))
                .values(status=sa.bindparam("s"), error=sa.bindparam("e"), position_id=sa.bindparam("p")))

    def _emit_created(self, session: Session, tenant: Tenant, position: PaymentPosition) -> None:
        r = position.request
        self.app._emit(session, tenant, PaymentPositionCreated(
            position_id=position.id, iupd=position.iupd, iuv=position.iuv, notice_number=position.notice_number,
            payee_fiscal_code=tenant.fiscal_code, amount_cents=r.amount_cents, due_date=r.due_date,
            description=r.description, debtor_fiscal_code=r.debtor.fiscal_code, purpose=r.purpose,
            reference=r.reference, campaign_id=r.campaign_id, io_service=r.io_service,
        ), position)

    def _finish(self, tenant_id: str, campaign_id: str) -> None:
        with self.db.transaction() as session:
            changed = session.execute(sa.update(campaigns).where(
                campaigns.c.id == campaign_id, campaigns.c.tenant == tenant_id, campaigns.c.status == "running")
                .values(status="done", updated_at=datetime.now(UTC))).rowcount  # type: ignore[attr-defined]
            counts: Counter[str] = Counter(dict(session.execute(
                sa.select(campaign_rows.c.status, sa.func.count())
                .where(campaign_rows.c.campaign_id == campaign_id).group_by(campaign_rows.c.status)).all()))
        if changed:
            log.info("payment_campaign_done", tenant=tenant_id, campaign_id=campaign_id,
                     created=counts["created"], failed=counts["failed"], invalid=counts["invalid"])
