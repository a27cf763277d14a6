"""Use cases of the pagopa service: create/publish, invalidate, pay, expire, list.

Why: one place that orders the steps — validate, number, store, register on GPD, record the
new state *and* its event in one transaction (outbox). nameko entrypoints only translate and
call these; unit tests drive them with a fake GPD and a SQLite file.

GPD is called outside any database transaction (never hold a row lock across the network).
A position is stored as `draft` first; if GPD fails it stays a draft and the same request
(same reference) or the retried event resumes it — the IUPD is fixed, so GPD never gets it twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import structlog
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.pagopa import store
from services.pagopa.domain.errors import NotPayable
from services.pagopa.domain.iuv import notice_for
from services.pagopa.domain.positions import (
    PaymentPosition,
    PositionRequest,
    PositionStatus,
    stamp_duty_request,
)
from services.pagopa.ports import CartNotice, CheckoutPort, GpdPort, GpdReceiptsPort, NodoReportingPort, ReturnUrls
from sportello.contracts.anpr import StampDutyRequested
from sportello.contracts.pagopa import (
    PaymentCompleted,
    PaymentPositionCreated,
    PaymentPositionExpired,
    PaymentPositionInvalidated,
)
from sportello.errors import ConfigurationError, NotFound, ValidationFailed
from sportello.events import EventPayload, new_event
from sportello.outbox import add_event
from sportello.tenants import Tenant, TenantRegistry

log = structlog.get_logger("pagopa.positions")
SERVICE = "pagopa"
STAMP_DUTY_DAYS = 30


class Transactional(Protocol):
    def transaction(self) -> AbstractContextManager[Session]:
        ...


class Positions:
    def __init__(self, database: Transactional, tenants: TenantRegistry, gpd: GpdPort, *,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date(),
                 correlation_id: str | None = None, gpd_receipts: GpdReceiptsPort | None = None,
                 checkout: CheckoutPort | None = None, nodo_reporting: NodoReportingPort | None = None) -> None:
        self.db = database
        self.nodo_reporting = nodo_reporting
        self.tenants = tenants
        self.gpd = gpd
        self.gpd_receipts = gpd_receipts
        self.checkout = checkout
        self.today = today
        self.correlation_id = correlation_id

    # -- helpers ---------------------------------------------------------------------------
    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant.pagopa is None:
            raise ConfigurationError(f"tenant {tenant_id} has no pagopa section")
        return tenant

    def _load(self, row: Any, tenant: Tenant) -> PaymentPosition:
        return store.from_row(row, payee_fiscal_code=tenant.fiscal_code, company_name=tenant.name)

    def _emit(self, session: Session, tenant: Tenant, payload: EventPayload, position: PaymentPosition) -> None:
        add_event(session, new_event(payload, service=SERVICE, tenant=tenant.id, correlation_id=self.correlation_id,
                                     subject=position.id))

    # -- create ------------------------------------------------------------------------------
    def create(self, tenant_id: str, request: PositionRequest) -> PaymentPosition:
        """Create, register and publish one position; idempotent by (purpose, reference)."""
        tenant = self._tenant(tenant_id)
        assert tenant.pagopa is not None
        request = request.validated(today=self.today(), allowed_ibans=tenant.pagopa.ibans)
        try:
            position = self._store_draft(tenant, request)
        except IntegrityError:
            if request.reference is None:
                raise
            position = self._store_draft(tenant, request)  # a concurrent twin won the reference: take its row
        if position.status is PositionStatus.DRAFT:
            position = self._publish(tenant, position)
        return position

    def _store_draft(self, tenant: Tenant, request: PositionRequest) -> PaymentPosition:
        """The existing position for this reference, or a new draft with the next notice number."""
        assert tenant.pagopa is not None
        with self.db.transaction() as session:
            if request.reference is not None:
                existing = store.select_one(session, tenant.id, reference=(request.purpose, request.reference))
                if existing is not None:
                    return self._load(existing, tenant)
            base = store.allocate_iuv_bases(session, tenant.id, tenant.pagopa.segregation_code)[0]
            number = notice_for(tenant.pagopa.segregation_code, base)
            position_id = str(uuid.uuid4())
            position = PaymentPosition(
                id=position_id, tenant=tenant.id, iupd=f"{tenant.fiscal_code}-{position_id}", iuv=number.iuv,
                notice_number=number.notice_number, payee_fiscal_code=tenant.fiscal_code,
                company_name=tenant.name, request=request,
            )
            store.insert(session, position)
        return position

    def _publish(self, tenant: Tenant, position: PaymentPosition) -> PaymentPosition:
        self.gpd.create(tenant, position, publish=True)
        with self.db.transaction() as session:
            current = self._load(store.select_one(session, tenant.id, position_id=position.id, for_update=True), tenant)
            if current.status is not PositionStatus.DRAFT:
                return current  # someone else finished it meanwhile
            published = current.publish()
            store.save_state(session, published)
            r = published.request
            self._emit(session, tenant, PaymentPositionCreated(
                position_id=published.id, iupd=published.iupd, iuv=published.iuv,
                notice_number=published.notice_number, payee_fiscal_code=tenant.fiscal_code,
                amount_cents=r.amount_cents, due_date=r.due_date, description=r.description,
                debtor_fiscal_code=r.debtor.fiscal_code, purpose=r.purpose, reference=r.reference,
                campaign_id=r.campaign_id, io_service=r.io_service,
            ), published)
        log.info("payment_position_published", position_id=published.id, tenant=tenant.id)
        return published

    def on_stamp_duty_requested(self, tenant_id: str, event: StampDutyRequested) -> PaymentPosition:
        """ANPR asked for a certificate's stamp duty: a €16.00 position, idempotent by request id."""
        tenant = self._tenant(tenant_id)
        assert tenant.pagopa is not None
        request = stamp_duty_request(
            request_id=event.request_id, debtor_fiscal_code=event.debtor_fiscal_code,
            amount_cents=event.amount_cents, description=event.description,
            due_date=self.today() + timedelta(days=STAMP_DUTY_DAYS), iban=tenant.pagopa.ibans[0],
            io_service=event.io_service,
        )
        return self.create(tenant_id, request)

    # -- state changes ---------------------------------------------------------------------
    def invalidate(self, tenant_id: str, position_id: str) -> PaymentPosition:
        tenant = self._tenant(tenant_id)
        position = self.get(tenant_id, position_id)
        position.invalidate()  # refuse early (typed error) before touching GPD
        if position.status is PositionStatus.PUBLISHED:
            self.gpd.invalidate(tenant, position.iupd)
        else:
            self.gpd.delete(tenant, position.iupd)  # a draft may exist on GPD unpublished; 404 is fine
        with self.db.transaction() as session:
            current = self._load(store.select_one(session, tenant.id, position_id=position_id, for_update=True),
                                 tenant)
            invalidated = current.invalidate()
            store.save_state(session, invalidated)
            self._emit(session, tenant, PaymentPositionInvalidated(
                position_id=current.id, notice_number=current.notice_number, purpose=current.request.purpose,
                reference=current.request.reference), invalidated)
        log.info("payment_position_invalidated", position_id=position_id, tenant=tenant.id)
        return invalidated

    def record_payment(self, tenant_id: str, notice_number: str, *, receipt_id: str, paid_at: datetime,
                       amount_cents: int, event_id: str | None = None) -> tuple[PaymentPosition, bool]:
        """A receipt: the position becomes paid and `payment.completed` is emitted, once.

        Returns (position, changed). A duplicate receipt changes nothing.
        """
        tenant = self._tenant(tenant_id)
        with self.db.transaction() as session:
            row = store.select_one(session, tenant.id, notice_number=notice_number, for_update=True)
            if row is None:
                raise NotFound("no payment position with this notice number")
            position = self._load(row, tenant)
            if position.status is PositionStatus.PAID:
                return position, False
            paid = position.pay(paid_at=paid_at, receipt_id=receipt_id)
            store.save_state(session, paid)
            self._emit(session, tenant, PaymentCompleted(
                position_id=paid.id, iuv=paid.iuv, notice_number=paid.notice_number, amount_cents=amount_cents,
                paid_at=paid_at, receipt_id=receipt_id, purpose=paid.request.purpose,
                reference=paid.request.reference), paid)
        log.info("payment_position_paid", position_id=paid.id, tenant=tenant.id)
        return paid, True

    def expire_overdue(self, tenant_id: str) -> int:
        """Published positions past their due date become expired (each with its event)."""
        tenant = self._tenant(tenant_id)
        count = 0
        with self.db.transaction() as session:
            for row in store.select_many(session, tenant.id, status=PositionStatus.PUBLISHED.value,
                                         due_before=self.today(), limit=500):
                expired = self._load(row, tenant).expire()
                store.save_state(session, expired)
                self._emit(session, tenant, PaymentPositionExpired(
                    position_id=expired.id, notice_number=expired.notice_number, purpose=expired.request.purpose,
                    reference=expired.request.reference), expired)
                count += 1
        return count

    def start_payment(self, tenant_id: str, position_id: str, urls: ReturnUrls, *,
                      debtor_fiscal_code: str | None = None, email: str | None = None) -> str:
        """The Checkout page where the citizen pays this position (a v2 cart of one notice)."""
        assert self.checkout is not None
        tenant = self._tenant(tenant_id)
        position = self.get(tenant_id, position_id)
        if debtor_fiscal_code is not None and position.request.debtor.fiscal_code != debtor_fiscal_code:
            raise NotFound("no such payment position")
        if position.status is not PositionStatus.PUBLISHED or position.request.due_date < self.today():
            raise NotPayable(f"the position is {position.status.value}"
                             + (" and past its due date" if position.request.due_date < self.today() else ""))
        if email is not None:
            try:  # Checkout's cart schema: emailNotice is format "email"; a bad one would come back as 400
                email = validate_email(email, check_deliverability=False).normalized
            except EmailNotValidError:
                raise ValidationFailed("email is not a valid e-mail address") from None
        notice = CartNotice(position.notice_number, tenant.fiscal_code, position.request.amount_cents, tenant.name,
                            position.request.description)
        location = self.checkout.start_cart(tenant, [notice], urls, email=email, cart_id=position.id)
        log.info("checkout_cart_started", position_id=position.id, tenant=tenant.id)
        return location

    # -- queries ---------------------------------------------------------------------------
    def get(self, tenant_id: str, position_id: str) -> PaymentPosition:
        tenant = self._tenant(tenant_id)
        with self.db.transaction() as session:
            row = store.select_one(session, tenant.id, position_id=position_id)
        if row is None:
            raise NotFound("no such payment position")
        return self._load(row, tenant)

    def list(self, tenant_id: str, **filters: Any) -> list[PaymentPosition]:
        tenant = self._tenant(tenant_id)
        with self.db.transaction() as session:
            rows = store.select_many(session, tenant.id, **filters)
        return [self._load(row, tenant) for row in rows]


def position_view(position: PaymentPosition) -> dict[str, Any]:
    """The JSON shape callers (gateway, back office) see."""
    r = position.request
    return {
        "id": position.id, "tenant": position.tenant, "iupd": position.iupd, "iuv": position.iuv,
        "notice_number": position.notice_number, "status": position.status.value,
        "payee_fiscal_code": position.payee_fiscal_code, "company_name": position.company_name,
        "amount_cents": r.amount_cents, "due_date": r.due_date.isoformat(), "description": r.description,
        "debtor": {"type": r.debtor.kind, "fiscal_code": r.debtor.fiscal_code, "full_name": r.debtor.full_name},
        "transfers": [
            {"id_transfer": t.id_transfer, "amount_cents": t.amount_cents, "remittance_information":
             t.remittance_information, "category": t.category, "iban": t.iban,
             "stamp": None if t.stamp is None else {"hash_document": t.stamp.hash_document,
                                                    "stamp_type": t.stamp.stamp_type,
                                                    "provincial_residence": t.stamp.provincial_residence}}
            for t in r.transfers
        ],
        "purpose": r.purpose, "reference": r.reference, "campaign_id": r.campaign_id,
        "paid_at": position.paid_at.isoformat() if position.paid_at else None, "receipt_id": position.receipt_id,
    }
