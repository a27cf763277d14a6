"""Receipts: the creditor-institution station the Nodo calls, and the one place a receipt is applied.

Why: a citizen's payment reaches us twice over — the Nodo pushes `paSendRTV2` to our station and
GPD lists the same receipt in its receipts API. Both land in `Receipts.apply`, which records the
receipt (unique per tenant by receipt id) and, in the same transaction, makes the position paid and
adds `payment.completed` to the outbox. A receipt seen again, from either path, changes nothing and
is answered as the first time. Receipts for unknown, expired or cancelled positions are recorded
(money was taken: reconciliation and refunds need them) and answered with the contract's fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite

from services.pagopa import store
from services.pagopa.application import Positions
from services.pagopa.domain import nodo
from services.pagopa.domain.nodo import NoticeQuery, Receipt, StationFault
from services.pagopa.domain.positions import PaymentPosition, PositionStatus
from services.pagopa.models import receipts
from services.pagopa.ports import GpdReceiptsPort
from sportello.contracts.pagopa import PaymentCompleted
from sportello.errors import ValidationFailed
from sportello.tenants import Tenant

log = structlog.get_logger("pagopa.receipts")

APPLIED = "applied"
DUPLICATE_PAYMENT = "duplicate_payment"
UNKNOWN = "unknown_position"
EXPIRED = "expired_position"
INVALIDATED = "invalidated_position"
NOT_PAID = "not_paid"

# what the station answers for a receipt, by its disposition (None: outcome OK)
RECEIPT_FAULTS: dict[str, str | None] = {
    APPLIED: None,
    NOT_PAID: None,
    UNKNOWN: "PAA_PAGAMENTO_SCONOSCIUTO",
    EXPIRED: "PAA_PAGAMENTO_SCADUTO",
    INVALIDATED: "PAA_PAGAMENTO_ANNULLATO",
    DUPLICATE_PAYMENT: "PAA_RECEIPT_DUPLICATA",
}


@dataclass(frozen=True)
class Applied:
    disposition: str
    changed: bool  # False: this receipt id was already known (from either path)
    position_id: str | None


class Receipts:
    def __init__(self, positions: Positions, gpd_receipts: GpdReceiptsPort | None = None) -> None:
        self.positions = positions
        self.gpd_receipts = gpd_receipts or positions.gpd_receipts

    # -- GPD receipts API: the other path ------------------------------------------------------
    def poll_gpd(self, tenant_id: str, *, since: date, max_pages: int = 50) -> dict[str, int]:
        """Turn receipts GPD lists since `since` into payments; ones already known (from either
        path) are skipped without fetching them again. Returns counts by disposition."""
        assert self.gpd_receipts is not None
        tenant = self.positions._tenant(tenant_id)
        counts: dict[str, int] = {}
        page, pages = 0, 1
        while page < min(pages, max_pages):
            items, pages = self.gpd_receipts.list_receipts(tenant, since=since.isoformat(), page=page,
                                                           page_size=100)
            known = self._known_iuvs(tenant.id, [i.iuv for i in items])
            for item in items:
                if item.iuv in known:
                    counts["known"] = counts.get("known", 0) + 1
                    continue
                xml = self.gpd_receipts.get_receipt(tenant, item.iuv)
                if xml is None:
                    continue
                try:
                    receipt = nodo.parse_receipt_document(xml)
                    if receipt.fiscal_code != tenant.fiscal_code:
                        raise ValueError("receipt of another creditor institution")
                    applied = self.apply(tenant, receipt, source="gpd")
                except (ValueError, StationFault) as exc:
                    log.warning("gpd_receipt_unreadable", tenant=tenant.id, reason=str(exc)[:200])
                    counts["unreadable"] = counts.get("unreadable", 0) + 1
                    continue
                key = applied.disposition if applied.changed else "known"
                counts[key] = counts.get(key, 0) + 1
            page += 1
        if counts:
            log.info("gpd_receipts_polled", tenant=tenant.id, **counts)
        return counts

    def _known_iuvs(self, tenant: str, iuvs: list[str]) -> set[str]:
        if not iuvs:
            return set()
        with self.positions.db.transaction() as session:
            rows = session.execute(sa.select(receipts.c.iuv).where(receipts.c.tenant == tenant,
                                                                   receipts.c.iuv.in_(iuvs))).scalars()
            return set(rows)

    # -- applying a receipt (both paths) -------------------------------------------------------
    def apply(self, tenant: Tenant, receipt: Receipt, *, source: str) -> Applied:
        if not 1 <= len(receipt.receipt_id) <= 64:
            raise StationFault("PAA_SINTASSI_EXTRAXSD", "receiptId longer than 64 characters")
        p = self.positions
        with p.db.transaction() as session:
            dialect = session.get_bind().dialect.name
            existing = session.execute(sa.select(receipts.c.disposition, receipts.c.position_id).where(
                receipts.c.tenant == tenant.id, receipts.c.receipt_id == receipt.receipt_id)).first()
            if existing is not None:
                return Applied(existing.disposition, False, existing.position_id)
            row = store.select_one(session, tenant.id, notice_number=receipt.notice_number, for_update=True)
            position = p._load(row, tenant) if row is not None else None
            disposition = self._disposition(position, receipt)
            make_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            inserted = session.execute(make_insert(receipts).values(
                tenant=tenant.id, receipt_id=receipt.receipt_id, notice_number=receipt.notice_number,
                iuv=receipt.creditor_reference_id, amount_cents=receipt.amount_cents, outcome=receipt.outcome,
                paid_at=receipt.paid_at, psp_id=receipt.psp_id[:35], source=source, disposition=disposition,
                position_id=position.id if position else None, received_at=datetime.now(UTC),
            ).on_conflict_do_nothing().returning(receipts.c.id)).first()
            if inserted is None:  # a concurrent twin of this receipt won: nothing more to do
                return Applied(disposition, False, position.id if position else None)
            if disposition == APPLIED:
                assert position is not None
                paid_at = receipt.paid_at or datetime.now(UTC)
                paid = position.pay(paid_at=paid_at, receipt_id=receipt.receipt_id)
                store.save_state(session, paid)
                p._emit(session, tenant, PaymentCompleted(
                    position_id=paid.id, iuv=paid.iuv, notice_number=paid.notice_number,
                    amount_cents=receipt.amount_cents, paid_at=paid_at, receipt_id=receipt.receipt_id,
                    purpose=paid.request.purpose, reference=paid.request.reference), paid)
        log.info("receipt_recorded", tenant=tenant.id, source=source, disposition=disposition,
                 position_id=position.id if position else None)
        return Applied(disposition, True, position.id if position else None)

    @staticmethod
    def _disposition(position: PaymentPosition | None, receipt: Receipt) -> str:
        if receipt.outcome != "OK":
            return NOT_PAID
        if position is None or position.status is PositionStatus.DRAFT:
            return UNKNOWN
        if position.status is PositionStatus.PAID:
            return DUPLICATE_PAYMENT
        if position.status is PositionStatus.EXPIRED:
            return EXPIRED
        if position.status is PositionStatus.INVALIDATED:
            return INVALIDATED
        return APPLIED

    # -- the SOAP station ----------------------------------------------------------------------
    def tenant_for(self, id_pa: str) -> Tenant:
        for tenant in self.positions.tenants:
            if tenant.pagopa is not None and tenant.fiscal_code == id_pa:
                return tenant
        raise StationFault("PAA_ID_DOMINIO_ERRATO", "no creditor institution with this idPA here")

    def _check(self, addressing: nodo.Addressing, fiscal_code: str) -> Tenant:
        tenant = self.tenant_for(addressing.id_pa)
        assert tenant.pagopa is not None
        if fiscal_code != addressing.id_pa:
            raise StationFault("PAA_ID_DOMINIO_ERRATO", "qrCode fiscal code differs from idPA")
        if addressing.id_broker_pa != tenant.pagopa.broker_id:
            raise StationFault("PAA_ID_INTERMEDIARIO_ERRATO")
        if addressing.id_station != tenant.pagopa.station_id:
            raise StationFault("PAA_STAZIONE_INT_ERRATA")
        return tenant

    def handle(self, payload: bytes) -> bytes:
        """One SOAP exchange: a reply the Nodo can read (a PAA fault rather than an error);
        ValidationFailed only for a body that is no paForNode request at all."""
        try:
            operation, request = nodo.parse_request(payload)
        except nodo.NotSoap as exc:
            raise ValidationFailed(f"not a paForNode SOAP request: {exc}") from None
        except nodo.RequestFault as exc:
            log.info("station_request_refused", operation=exc.operation, fault=exc.fault.code)
            return nodo.fault_response(exc.operation, exc.fault, id_pa=None)
        id_pa = request.addressing.id_pa
        try:
            if isinstance(request, NoticeQuery):
                document = self._notice(operation, request)
            else:
                document = self._receipt(request)
            return nodo.ok_response(operation, document)
        except StationFault as fault:
            log.info("station_fault", operation=operation, fault=fault.code)
            return nodo.fault_response(operation, fault, id_pa=id_pa)

    def _notice(self, operation: str, query: NoticeQuery) -> dict[str, Any]:
        tenant = self._check(query.addressing, query.fiscal_code)
        p = self.positions
        with p.db.transaction() as session:
            row = store.select_one(session, tenant.id, notice_number=query.notice_number)
        position = p._load(row, tenant) if row is not None else None
        if position is None or position.status is PositionStatus.DRAFT:
            raise StationFault("PAA_PAGAMENTO_SCONOSCIUTO")
        if position.status is PositionStatus.PAID:
            raise StationFault("PAA_PAGAMENTO_DUPLICATO")
        if position.status is PositionStatus.INVALIDATED:
            raise StationFault("PAA_PAGAMENTO_ANNULLATO")
        if position.status is PositionStatus.EXPIRED or position.request.due_date < p.today():
            raise StationFault("PAA_PAGAMENTO_SCADUTO")
        if operation == "paVerifyPaymentNotice":
            return verify_document(tenant, position)
        if operation == "paGetPaymentV2":
            return {"data": payment_document(tenant, position, v2=True)}
        if any(t.stamp is not None for t in position.request.transfers):
            raise StationFault("PAA_SEMANTICA", "a digital stamp needs paGetPaymentV2")
        return {"data": payment_document(tenant, position, v2=False)}

    def _receipt(self, receipt: Receipt) -> dict[str, Any]:
        tenant = self._check(receipt.addressing, receipt.fiscal_code)
        applied = self.apply(tenant, receipt, source="nodo")
        fault = RECEIPT_FAULTS[applied.disposition]
        if fault is not None:
            raise StationFault(fault)
        return {}


def verify_document(tenant: Tenant, position: PaymentPosition) -> dict[str, Any]:
    r = position.request
    return {
        "paymentList": {"paymentOptionDescription": {
            "amount": nodo.euros(r.amount_cents), "options": "EQ", "dueDate": r.due_date.isoformat(),
            "detailDescription": r.description, "allCCP": False}},
        "paymentDescription": r.description,
        "fiscalCodePA": tenant.fiscal_code,
        "companyName": tenant.name[:140],
    }


def payment_document(tenant: Tenant, position: PaymentPosition, *, v2: bool) -> dict[str, Any]:
    """`ctPaymentPA(V2)`: what the PSP will collect and where each part goes."""
    r = position.request
    transfers = []
    for t in r.transfers:
        item: dict[str, Any] = {"idTransfer": t.id_transfer, "transferAmount": nodo.euros(t.amount_cents),
                                "fiscalCodePA": tenant.fiscal_code}
        if t.stamp is not None:
            item["richiestaMarcaDaBollo"] = {"hashDocumento": t.stamp.hash_document, "tipoBollo": t.stamp.stamp_type,
                                             "provinciaResidenza": t.stamp.provincial_residence}
        else:
            item["IBAN"] = t.iban
        item["remittanceInformation"] = t.remittance_information
        item["transferCategory"] = t.category
        transfers.append(item)
    return {
        "creditorReferenceId": position.iuv,
        "paymentAmount": nodo.euros(r.amount_cents),
        "dueDate": r.due_date.isoformat(),
        "description": r.description,
        "companyName": tenant.name[:140],
        "debtor": {"uniqueIdentifier": {"entityUniqueIdentifierType": r.debtor.kind,
                                        "entityUniqueIdentifierValue": r.debtor.fiscal_code},
                   "fullName": r.debtor.full_name},
        "transferList": {"transfer": transfers},
    }
