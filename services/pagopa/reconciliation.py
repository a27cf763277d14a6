"""Reconciliation: reporting flows (FlussoRiversamento 1.0.4) matched to the receipts we hold.

Why: a receipt says a citizen paid; the reporting flow says the money reached the Comune's
account. Flows are validated against pagoPA's XSD and stored keyed by (flow id, IUV, IUR, transfer
index), so importing the same flow again is a no-op; the report is computed from the stored rows
every time, so running it again gives the same answer until something new arrives:
- reported: a receipt applied to a position and its money reported, amounts equal;
- paid: a receipt applied but not (yet) in any flow;
- missing: a flow reports money for an IUV we have no applied receipt for;
- mismatched: both exist for the IUV but the amounts differ.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from xml.etree import ElementTree

import sqlalchemy as sa
import structlog
import xmlschema
from sqlalchemy.dialects import postgresql, sqlite

from services.pagopa.application import Positions
from services.pagopa.domain import nodo
from services.pagopa.domain.reporting import MAX_FLOW_BYTES
from services.pagopa.models import flow_payments, flows, receipts
from sportello.errors import ConfigurationError, ValidationFailed

log = structlog.get_logger("pagopa.reconciliation")
PAID_CODES = frozenset({"0", "4", "8", "9"})  # eseguito, in stand-in, senza RPT; 3 = revocato


def parse_flow(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_FLOW_BYTES or b"<!DOCTYPE" in payload or b"<!ENTITY" in payload:
        raise ValidationFailed("reporting flow too large or with a DTD")
    try:
        element = ElementTree.fromstring(payload)  # noqa: S314 - DTDs refused above
        decoded: Any = nodo.flow_schema().elements["FlussoRiversamento"].decode(
            element, validation="strict", namespaces={"": nodo.FLOW_NAMESPACE})
    except ElementTree.ParseError:
        raise ValidationFailed("reporting flow is not XML") from None
    except (xmlschema.XMLSchemaValidationError, KeyError) as exc:
        raise ValidationFailed(f"reporting flow does not satisfy FlussoRiversamento 1.0.4: "
                               f"{getattr(exc, 'reason', exc)}") from None
    return decoded  # type: ignore[no-any-return]


class Reconciliation:
    def __init__(self, positions: Positions) -> None:
        self.positions = positions

    def import_flow(self, tenant_id: str, payload: bytes) -> dict[str, Any]:
        tenant = self.positions._tenant(tenant_id)
        flow = parse_flow(payload)
        receiver = flow["istitutoRicevente"]["identificativoUnivocoRicevente"]["codiceIdentificativoUnivoco"]
        if receiver != tenant.fiscal_code:
            raise ValidationFailed("this reporting flow is addressed to another creditor institution")
        items = flow["datiSingoliPagamenti"]
        flow_id = str(flow["identificativoFlusso"])
        when = datetime.fromisoformat(str(flow["dataOraFlusso"]))
        with self.positions.db.transaction() as session:
            dialect = session.get_bind().dialect.name
            make_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            new = session.execute(make_insert(flows).values(
                tenant=tenant.id, flow_id=flow_id, flow_date=when if when.tzinfo else when.replace(tzinfo=UTC),
                settlement_id=str(flow["identificativoUnivocoRegolamento"]),
                total_cents=nodo.cents(flow["importoTotalePagamenti"]), payments=len(items),
                imported_at=datetime.now(UTC)).on_conflict_do_nothing().returning(flows.c.flow_id)).first()
            if new is not None:
                for position, item in enumerate(items, start=1):
                    session.execute(make_insert(flow_payments).values(
                        tenant=tenant.id, flow_id=flow_id, iuv=str(item["identificativoUnivocoVersamento"]),
                        receipt_id=str(item["identificativoUnivocoRiscossione"]),
                        transfer_index=int(item.get("indiceDatiSingoloPagamento") or position),
                        amount_cents=nodo.cents(item["singoloImportoPagato"]),
                        outcome_code=str(item["codiceEsitoSingoloPagamento"]),
                        paid_on=date.fromisoformat(str(item["dataEsitoSingoloPagamento"])),
                    ).on_conflict_do_nothing())
        log.info("reporting_flow_imported", tenant=tenant.id, payments=len(items), new=new is not None)
        return {"flow_id": flow_id, "payments": len(items), "new": new is not None}

    def fetch_from_nodo(self, tenant_id: str) -> dict[str, int]:
        """Ask the Nodo which flows it holds for the Comune and import those not imported yet.

        Idempotent: a flow already stored is not fetched again, and importing the same flow id
        twice is a no-op anyway. A flow that breaks its schema is counted and skipped (the others
        still arrive); the next run asks for it again."""
        tenant = self.positions._tenant(tenant_id)
        port = self.positions.nodo_reporting
        if port is None or not port.configured(tenant):
            raise ConfigurationError("this Comune has no Nodo reporting endpoint (pagopa.nodo_base_url)")
        listed = list(port.list_flows(tenant))
        ids = [ref.flow_id for ref in listed]
        known: set[str] = set()
        with self.positions.db.transaction() as session:
            for start in range(0, len(ids), 500):
                known |= set(session.execute(sa.select(flows.c.flow_id).where(
                    flows.c.tenant == tenant.id, flows.c.flow_id.in_(ids[start:start + 500]))).scalars())
        counts = {"listed": len(listed), "known": len(known), "imported": 0, "rejected": 0}
        for flow_id in sorted(set(ids) - known):
            payload = port.get_flow(tenant, flow_id)
            try:
                result = self.import_flow(tenant_id, payload)
            except ValidationFailed as exc:
                log.warning("reporting_flow_rejected", tenant=tenant.id, flow_id=flow_id, reason=exc.detail[:200])
                counts["rejected"] += 1
                continue
            counts["imported" if result["new"] else "known"] += 1
        log.info("reporting_flows_fetched", tenant=tenant.id, **counts)
        return counts

    def report(self, tenant_id: str) -> dict[str, Any]:
        tenant = self.positions._tenant(tenant_id)
        with self.positions.db.transaction() as session:
            paid = {r.iuv: r for r in session.execute(
                sa.select(receipts.c.iuv, receipts.c.receipt_id, receipts.c.amount_cents, receipts.c.position_id)
                .where(receipts.c.tenant == tenant.id, receipts.c.disposition == "applied"))}
            reported: dict[str, int] = {}
            for r in session.execute(sa.select(flow_payments.c.iuv, flow_payments.c.amount_cents,
                                               flow_payments.c.outcome_code)
                                     .where(flow_payments.c.tenant == tenant.id)):
                if r.outcome_code in PAID_CODES:
                    reported[r.iuv] = reported.get(r.iuv, 0) + int(r.amount_cents)
        out: dict[str, list[dict[str, Any]]] = {"reported": [], "paid": [], "missing": [], "mismatched": []}
        for iuv in sorted(set(paid) | set(reported)):
            receipt = paid.get(iuv)
            line: dict[str, Any] = {"iuv": iuv, "receipt_cents": receipt.amount_cents if receipt else None,
                                    "reported_cents": reported.get(iuv),
                                    "position_id": receipt.position_id if receipt else None}
            if receipt is None:
                out["missing"].append(line)
            elif iuv not in reported:
                out["paid"].append(line)
            elif reported[iuv] != receipt.amount_cents:
                out["mismatched"].append(line)
            else:
                out["reported"].append(line)
        return {"counts": {k: len(v) for k, v in out.items()}, **out}
