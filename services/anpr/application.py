"""The `anpr` use cases: look-ups, certificate requests, issuing on payment, verification.

Why here and not in service.py: this is plain Python over the database and the ports, so it is
tested without a broker (fakes or the in-process twins); the nameko class only translates.
Network calls to ANPR never happen inside a database transaction; the effect of an answer is
written (with its event, through the outbox) in one transaction afterwards.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from services.anpr import models
from services.anpr.domain import certificates as catalogue
from services.anpr.domain import eservices
from services.anpr.domain.errors import (
    AnprRefused,
    AnprUnavailable,
    IssueInProgress,
    NotCertifiable,
    QuotaExhausted,
    ResidentNotFound,
    UpstreamRateLimited,
)
from services.anpr.domain.modi import AuditContext
from services.anpr.domain.ws6001 import CertificateOrder, Person
from services.anpr.ports import CertificateAuthority, ResidentRegistry
from sportello.contracts.anpr import CertificateIssued, StampDutyRequested
from sportello.contracts.pagopa import PaymentCompleted
from sportello.db import Database
from sportello.errors import Forbidden, NotFound, SportelloError, ValidationFailed
from sportello.events import Envelope, new_event
from sportello.inbox import claim
from sportello.outbox import add_event
from sportello.tenants import Tenant, TenantRegistry

SERVICE = "anpr"
CERTIFICATE_VALIDITY = timedelta(days=183)  # registry certificates are valid six months (DPR 445/2000 art. 41)
PAYMENT_CONSUMER = "anpr.on_payment_completed"
STAMP_PURPOSE = "certificate_stamp_duty"
CERTIFICATE_IO_SERVICE = "anagrafe"
# How long one worker may hold a request while it obtains the certificate from ANPR: a duplicate
# delivery of the payment meanwhile is retried later instead of asking ANPR a second time.
ISSUE_LEASE = timedelta(minutes=2)


def pseudonym(tenant: str, fiscal_code: str) -> str:
    """The `userID` sent to ANPR: stable per person, not the fiscal code itself."""
    return hashlib.sha256(f"{tenant}:{fiscal_code}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Actor:
    fiscal_code: str
    role: str  # citizen, operator, system
    level: int = 2

    def audit(self, tenant: str, channel: str) -> AuditContext:
        loa = "SYSTEM" if self.role == "system" else f"SPID_L{self.level}"
        return AuditContext(pseudonym(tenant, self.fiscal_code), f"sportello-{channel}", loa)


SYSTEM = Actor("SYSTEM0000000000", "system")


class AnprApplication:
    def __init__(self, database: Database | Any, tenants: TenantRegistry, registry: ResidentRegistry,
                 authority: CertificateAuthority, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 correlation_id: Callable[[], str | None] = lambda: None) -> None:
        self.db = database
        self.tenants = tenants
        self.registry = registry
        self.authority = authority
        self.clock = clock
        self.correlation_id = correlation_id

    # -- quotas, operation ids, audit -----------------------------------------------------------
    def _quota(self, tenant: Tenant, code: str) -> int:
        override = tenant.pdnd.daily_quotas.get(code) if tenant.pdnd else None
        return override or eservices.eservice(code).default_daily_quota

    def _reserve(self, session: Session, tenant: Tenant, service: eservices.EService) -> str:
        """Count the call against today's quota and take the next operation id, in the caller's transaction."""
        day = self.clock().date().isoformat()
        key = dict(tenant=tenant.id, eservice=service.code, day=day)
        used = session.execute(select(models.quota_usage.c.used).filter_by(**key)).scalar()
        if used is not None and used >= self._quota(tenant, service.code):
            raise QuotaExhausted(f"{service.code}: today's {self._quota(tenant, service.code)} calls are used up")
        if used is None:
            session.execute(insert(models.quota_usage).values(**key, used=1))
        else:
            session.execute(update(models.quota_usage).filter_by(**key).values(used=models.quota_usage.c.used + 1))
        if not service.numeric_operation_ids:
            return eservices.operation_id(service, now=self.clock().timestamp())
        ids = dict(tenant=tenant.id, eservice=service.code)
        last = session.execute(select(models.operation_ids.c.last_value).filter_by(**ids)).scalar()
        if last is None:
            # start from the clock so a fresh database never goes below what ANPR has already seen
            last = int(self.clock().timestamp() * 1000)
            session.execute(insert(models.operation_ids).values(**ids, last_value=last + 1))
        else:
            session.execute(update(models.operation_ids).filter_by(**ids).values(last_value=last + 1))
        return eservices.operation_id(service, last_numeric=last)

    def _audit(self, session: Session, tenant: str, actor: Actor, action: str, subject: str, reason: str,
               reference: str | None = None) -> None:
        session.execute(insert(models.audit).values(
            tenant=tenant, at=self.clock(), actor=actor.fiscal_code[:16], actor_role=actor.role, action=action,
            subject=subject, reason=reason[:200], reference=reference))

    def _call(self, tenant: Tenant, code: str, actor: Actor, fiscal_code: str, reason: str, *,
              channel: str, verify: dict[str, Any] | None = None, reference: str | None = None) -> dict[str, Any]:
        service = eservices.eservice(code)
        reason = eservices.check_reason(reason)
        with self.db.transaction() as session:
            operation = self._reserve(session, tenant, service)
            self._audit(session, tenant.id, actor, f"lookup.{code}", fiscal_code, reason, reference)
        body = eservices.build_request(service, operation=operation, fiscal_code=fiscal_code, reason=reason,
                                       reference_date=self.clock().date(), verify=verify)
        return self.registry.e002(tenant, service, body, actor.audit(tenant.id, channel))

    # -- look-ups -------------------------------------------------------------------------------
    def lookup_resident(self, tenant_id: str, operator: Actor, fiscal_code: str, reason: str) -> dict[str, Any]:
        tenant = self.tenants.get(tenant_id)
        answer = self._call(tenant, "C001", operator, _fiscal_code(fiscal_code), reason, channel="backoffice")
        return eservices.parse_c001(answer).as_dict()

    def national_id(self, tenant_id: str, operator: Actor, fiscal_code: str, reason: str) -> str:
        tenant = self.tenants.get(tenant_id)
        return eservices.parse_c030(self._call(tenant, "C030", operator, _fiscal_code(fiscal_code), reason,
                                               channel="backoffice"))

    def verify_declaration(self, tenant_id: str, operator: Actor, fiscal_code: str, declared: dict[str, str],
                           reason: str) -> dict[str, str]:
        tenant = self.tenants.get(tenant_id)
        allowed = {k: v for k, v in declared.items() if k in ("cognome", "nome", "sesso", "dataNascita")}
        if not allowed:
            raise ValidationFailed("declare at least one of cognome, nome, sesso, dataNascita")
        return eservices.parse_c003(self._call(tenant, "C003", operator, _fiscal_code(fiscal_code), reason,
                                               channel="backoffice", verify=allowed))

    # -- certificates ---------------------------------------------------------------------------
    def request_certificate(self, tenant_id: str, requester: Actor, *, certificate_type: int,
                            subject: str | None = None, exemption: int | None = None,
                            exemption_description: str | None = None, at_counter: bool = False,
                            reason: str | None = None,
                            on_behalf_of: Person | dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a request: check the subject in ANPR, then ask for the stamp duty or issue at once.

        At the counter the person asking is the subject, unless `on_behalf_of` names someone else
        (ANPR then gets them as `generalitaRichiedente`, `tipoRichiedente` 1).
        """
        tenant = self.tenants.get(tenant_id)
        holder = _fiscal_code(subject or requester.fiscal_code)
        for_self = holder == requester.fiscal_code
        catalogue.check_requester(certificate_type, for_self=for_self, at_counter=at_counter)
        if on_behalf_of is not None:
            if not at_counter:
                raise ValidationFailed("a requester other than the subject is stated at the counter only")
            stated: Person | None = _person(on_behalf_of)
            if stated is not None and stated.fiscal_code == holder:
                stated = None  # the subject themself
        else:
            stated = None
        duty = catalogue.stamp_duty(exemption, exemption_description)
        request_id = str(uuid.uuid4())
        reason_text = (reason or f"richiesta certificato {request_id}")
        resident = eservices.parse_c001(self._call(
            tenant, "C001", requester, holder, reason_text, channel="counter" if at_counter else "online",
            reference=request_id))
        if resident.certifiability is not None:
            # before anyone pays for a certificate ANPR will not issue
            catalogue.check_certifiable(certificate_type, resident.certifiability, at_counter=at_counter)
        asking = stated.fiscal_code if stated else (holder if at_counter else requester.fiscal_code)
        now = self.clock()
        with self.db.transaction() as session:
            seq = session.execute(select(func.count()).select_from(models.certificate_requests)).scalar() or 0
            session.execute(insert(models.certificate_requests).values(
                # at the counter the citizen asking is the subject; the operator is recorded apart
            id=request_id, tenant=tenant.id, requester=asking, subject=holder,
                requester_surname=stated.surname if stated else None,
                requester_name=stated.name if stated else None,
                subject_surname=resident.surname, subject_name=resident.name, certificate_type=certificate_type,
                channel="counter" if at_counter else "online",
                operator=requester.fiscal_code if at_counter else None, stamp_duty_cents=duty.amount_cents,
                exemption=duty.exemption, exemption_description=duty.exemption_description,
                status="awaiting_payment" if duty.due else "issuing", failure=None, operation_seq=seq + 1,
                io_service=CERTIFICATE_IO_SERVICE, created_at=now, updated_at=now))
            self._audit(session, tenant.id, requester, "certificate.request", holder, reason_text, request_id)
            if duty.due:
                kind = catalogue.certificate_type(certificate_type)
                add_event(session, new_event(StampDutyRequested(
                    request_id=request_id, debtor_fiscal_code=holder, amount_cents=duty.amount_cents,
                    description=f"Imposta di bollo - {kind.description}"[:140], io_service=CERTIFICATE_IO_SERVICE),
                    service=SERVICE, tenant=tenant.id, correlation_id=self.correlation_id(), subject=request_id))
        if not duty.due:
            try:
                self._issue(tenant, request_id, None)
            except (AnprUnavailable, UpstreamRateLimited):
                pass  # stays `issuing`: retry_stalled_issues obtains it once ANPR answers again
        return self.status(tenant.id, request_id, requester)

    def on_payment_completed(self, event: Envelope[Any]) -> None:
        """Stamp duty paid: obtain the certificate from ANPR (network first, then one transaction)."""
        payment: PaymentCompleted = event.data
        if payment.purpose != STAMP_PURPOSE or not payment.reference:
            with self.db.transaction() as session:
                claim(session, PAYMENT_CONSUMER, event)
            return
        tenant = self.tenants.get(event.tenant)
        with self.db.transaction() as session:
            row = session.execute(select(models.certificate_requests).filter_by(
                id=payment.reference, tenant=tenant.id)).mappings().first()
        if row is None or row["status"] not in ("awaiting_payment", "issuing"):
            with self.db.transaction() as session:
                claim(session, PAYMENT_CONSUMER, event)
            return
        if not self._take_lease(tenant.id, payment.reference):
            raise IssueInProgress("another worker is obtaining this certificate; retried later")
        try:
            self._issue(tenant, payment.reference, event)
        except Exception:
            self._release_lease(tenant.id, payment.reference)  # the retry must not wait for the lease
            raise

    def _take_lease(self, tenant_id: str, request_id: str) -> bool:
        """Mark the request `issuing` unless another worker holds it (a live lease): one ANPR call per request."""
        now = self.clock()
        table = models.certificate_requests
        with self.db.transaction() as session:
            taken: Any = session.execute(update(table).where(
                table.c.id == request_id, table.c.tenant == tenant_id,
                (table.c.status == "awaiting_payment")
                | ((table.c.status == "issuing") & (table.c.updated_at < now - ISSUE_LEASE)))
                .values(status="issuing", updated_at=now))
            return bool(taken.rowcount)

    def retry_stalled_issues(self, limit: int = 50) -> int:
        """Requests left `issuing` past the lease — ANPR was away when an exempt or counter certificate
        was issued at once, or a worker died mid-issue — are tried again. Returns how many were issued."""
        table = models.certificate_requests
        with self.db.transaction() as session:
            stalled = session.execute(select(table.c.tenant, table.c.id).where(
                table.c.status == "issuing", table.c.updated_at < self.clock() - ISSUE_LEASE).limit(limit)).all()
        issued = 0
        for tenant_id, request_id in stalled:
            if not self._take_lease(tenant_id, request_id):
                continue  # another worker took it meanwhile
            try:
                self._issue(self.tenants.get(tenant_id), request_id, None)
            except SportelloError:
                continue  # still away: the lease runs out again and the next sweep retries
            issued += 1
        return issued

    def _release_lease(self, tenant_id: str, request_id: str) -> None:
        table = models.certificate_requests
        with self.db.transaction() as session:
            session.execute(update(table).where(table.c.id == request_id, table.c.tenant == tenant_id,
                                                table.c.status == "issuing")
                            .values(status="awaiting_payment", updated_at=self.clock()))

    def _issue(self, tenant: Tenant, request_id: str, event: Envelope[Any] | None) -> None:
        assert tenant.pdnd is not None
        with self.db.transaction() as session:
            row = dict(session.execute(select(models.certificate_requests).filter_by(
                id=request_id, tenant=tenant.id)).mappings().one())
        order = CertificateOrder(
            operation_id=f"S{row['operation_seq']}{uuid.UUID(request_id).hex[:12]}",
            istat_code=tenant.istat_code, certificate_type=row["certificate_type"],
            subject=Person(row["subject"], row["subject_surname"], row["subject_name"]),
            # online only for oneself; at the counter someone else may ask (generalitaRichiedente)
            requester=Person(row["requester"], row["requester_surname"], row["requester_name"])
            if row["requester_surname"] and row["requester"] != row["subject"] else None,
            officer_surname=tenant.pdnd.registry_officer_surname, officer_name=tenant.pdnd.registry_officer_name,
            at_counter=row["channel"] == "counter", stamp_duty_cents=row["stamp_duty_cents"],
            exemption=row["exemption"], exemption_description=row["exemption_description"],
            send_type=tenant.pdnd.ws6001_send_type)
        failure: str | None = None
        try:
            document = self.authority.issue(tenant, order)
        except (AnprRefused, NotCertifiable, ResidentNotFound) as exc:  # permanent: record it, do not retry
            failure, document = f"{exc.code}: {exc.detail}", None
        now = self.clock()
        with self.db.transaction() as session:
            if event is not None and not claim(session, PAYMENT_CONSUMER, event):
                return
            if document is None:
                session.execute(update(models.certificate_requests).filter_by(id=request_id).values(
                    status="failed", failure=failure[:2000] if failure else None, updated_at=now))
                return
            certificate_id = str(uuid.uuid4())
            code = catalogue.verification_code()
            session.execute(insert(models.certificates).values(
                id=certificate_id, tenant=tenant.id, request_id=request_id, verification_code=code,
                sha256=catalogue.document_hash(document.pdf), protocol=document.protocol, document=document.pdf,
                issued_at=now, valid_until=now + CERTIFICATE_VALIDITY, revoked_at=None))
            session.execute(update(models.certificate_requests).filter_by(id=request_id).values(
                status="issued", updated_at=now))
            add_event(session, new_event(CertificateIssued(
                certificate_id=certificate_id, request_id=request_id, certificate_type=row["certificate_type"],
                holder_fiscal_code=row["subject"], requester_fiscal_code=row["requester"], verification_code=code,
                issued_at=now, io_service=row["io_service"]),
                service=SERVICE, tenant=tenant.id, correlation_id=self.correlation_id(), subject=certificate_id))
            if row["channel"] == "counter":
                self._audit(session, tenant.id, Actor(row["operator"] or "", "operator"), "certificate.issue",
                            row["subject"], f"richiesta {request_id}", request_id)

    def status(self, tenant_id: str, request_id: str, actor: Actor) -> dict[str, Any]:
        with self.db.transaction() as session:
            row = session.execute(select(models.certificate_requests).filter_by(
                id=request_id, tenant=tenant_id)).mappings().first()
            if row is None or (actor.role == "citizen" and row["requester"] != actor.fiscal_code):
                raise NotFound("no such certificate request")
            cert = session.execute(select(models.certificates.c.id, models.certificates.c.verification_code,
                                          models.certificates.c.issued_at, models.certificates.c.valid_until)
                                   .filter_by(request_id=request_id)).mappings().first()
        answer: dict[str, Any] = {
            "request_id": row["id"], "status": row["status"], "certificate_type": row["certificate_type"],
            "stamp_duty_cents": row["stamp_duty_cents"], "exemption": row["exemption"],
            "channel": row["channel"], "failure": row["failure"], "certificate": None,
        }
        if cert is not None:
            answer["certificate"] = {"id": cert["id"], "verification_code": cert["verification_code"],
                                     "issued_at": _iso(cert["issued_at"]), "valid_until": _iso(cert["valid_until"])}
        return answer

    def requests_of(self, tenant_id: str, actor: Actor, limit: int = 50) -> list[dict[str, Any]]:
        """The actor's own certificate requests, newest first (what a citizen asked for, on any channel)."""
        limit = max(1, min(int(limit), 200))
        with self.db.transaction() as session:
            ids = session.execute(select(models.certificate_requests.c.id).filter_by(
                tenant=tenant_id, requester=actor.fiscal_code).order_by(
                models.certificate_requests.c.created_at.desc()).limit(limit)).scalars().all()
        citizen = Actor(actor.fiscal_code, "citizen", actor.level)  # own requests only, whatever the role
        return [self.status(tenant_id, request_id, citizen) for request_id in ids]

    def download(self, tenant_id: str, request_id: str, actor: Actor) -> bytes:
        self.status(tenant_id, request_id, actor)  # the same access rule
        with self.db.transaction() as session:
            document = session.execute(select(models.certificates.c.document).filter_by(
                request_id=request_id, tenant=tenant_id)).scalar()
        if document is None:
            raise NotFound("the certificate is not issued yet")
        return bytes(document)

    def verify(self, tenant_id: str, code: str, document: bytes | None = None) -> dict[str, Any]:
        """Public: is this code ours, still valid, and (if a document is given) is it the same PDF?"""
        normal = catalogue.normalise_code(code)
        with self.db.transaction() as session:
            row = session.execute(select(models.certificates, models.certificate_requests.c.certificate_type)
                                  .join(models.certificate_requests,
                                        models.certificate_requests.c.id == models.certificates.c.request_id)
                                  .where(models.certificates.c.verification_code == normal,
                                         models.certificates.c.tenant == tenant_id)).mappings().first()
        if row is None:
            return {"genuine": False, "valid": False, "reason": "unknown verification code"}
        now = self.clock()
        valid_until = _aware(row["valid_until"])
        valid = row["revoked_at"] is None and now < valid_until
        answer: dict[str, Any] = {
            "genuine": True, "valid": valid, "certificate_type": row["certificate_type"],
            "description": catalogue.certificate_type(row["certificate_type"]).description,
            "issued_at": _iso(row["issued_at"]), "valid_until": _iso(valid_until), "sha256": row["sha256"],
            "reason": None if valid else ("revoked" if row["revoked_at"] else "expired"),
        }
        if document is not None:
            matches = catalogue.document_hash(document) == row["sha256"]
            answer["document_matches"] = matches
            if not matches:
                answer.update(genuine=False, valid=False, reason="the document differs from the one issued")
        return answer

    def verification_qr(self, tenant_id: str, code: str) -> dict[str, str]:
        """The verification URL of one of our certificates and its QR code (SVG, segno)."""
        tenant = self.tenants.get(tenant_id)
        normal = catalogue.normalise_code(code)
        with self.db.transaction() as session:
            known = session.execute(select(models.certificates.c.id).where(
                models.certificates.c.verification_code == normal,
                models.certificates.c.tenant == tenant.id)).scalar()
        if known is None:
            raise NotFound("no certificate with this verification code")
        if tenant.pdnd is None or tenant.pdnd.verification_url is None:
            raise NotFound("this Comune publishes no verification page")
        url = f"{str(tenant.pdnd.verification_url).rstrip('/')}/{normal}"
        return {"verification_code": normal, "url": url, "svg": catalogue.qr_svg(url)}

    def audit_trail(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.transaction() as session:
            rows = session.execute(select(models.audit).filter_by(tenant=tenant_id)
                                   .order_by(models.audit.c.id.desc()).limit(limit)).mappings().all()
        return [{**dict(r), "at": _iso(r["at"])} for r in rows]


def _fiscal_code(value: str) -> str:
    from stdnum.it import codicefiscale

    cleaned = (value or "").strip().upper()
    if len(cleaned) != 16 or not codicefiscale.is_valid(cleaned):
        raise ValidationFailed("not a valid personal fiscal code")
    return cleaned


def _person(person: Person | dict[str, Any]) -> Person:
    """A requester stated at the counter: a valid fiscal code and the names as on their document."""
    if isinstance(person, dict):
        try:
            person = Person(str(person["fiscal_code"]), str(person["surname"]), str(person["name"]))
        except KeyError:
            raise ValidationFailed("the requester needs fiscal_code, surname and name") from None
    surname, name = person.surname.strip().upper(), person.name.strip().upper()
    if not (1 <= len(surname) <= 80 and 1 <= len(name) <= 80):
        raise ValidationFailed("the requester's surname and name: 1 to 80 characters")
    return Person(_fiscal_code(person.fiscal_code), surname, name)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _aware(value).isoformat()
    return value.isoformat()


def require_operator(actor: Actor) -> None:
    if actor.role not in ("operator", "admin"):
        raise Forbidden("only registry operators may do this")


__all__ = ["SYSTEM", "Actor", "AnprApplication", "SportelloError", "require_operator"]
