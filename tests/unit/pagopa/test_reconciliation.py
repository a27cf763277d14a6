"""Reconciliation: flows validated by the FlussoRiversamento XSD, imported once, matched to receipts."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from sandbox.nodo.app import receipt_document
from services.pagopa.application import Positions
from services.pagopa.domain import nodo
from services.pagopa.receipts import Receipts
from services.pagopa.reconciliation import Reconciliation
from sportello.db import Database
from sportello.errors import ValidationFailed
from tests.unit.pagopa.support import FakeGpd, migrated, registry, request, tenant
from tests.unit.pagopa.test_station import ADDRESSING, ORG, call_payment_shape

NS = "http://www.digitpa.gov.it/schemas/2011/Pagamenti/"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = migrated(tmp_path)
    yield db
    db.dispose()


def flow(items: list[tuple[str, str, int, str]], receiver: str = ORG, flow_id: str = "2026-11-21SANDBOXPSP0-0001"
         ) -> bytes:
    document: dict[str, Any] = {
        "versioneOggetto": "1.0", "identificativoFlusso": flow_id, "dataOraFlusso": "2026-11-21T10:00:00",
        "identificativoUnivocoRegolamento": "SETTLEMENT-0001", "dataRegolamento": "2026-11-21",
        "istitutoMittente": {"identificativoUnivocoMittente": {"tipoIdentificativoUnivoco": "B",
                                                                "codiceIdentificativoUnivoco": "SANDBOXPSP0"}},
        "istitutoRicevente": {"identificativoUnivocoRicevente": {"tipoIdentificativoUnivoco": "G",
                                                                  "codiceIdentificativoUnivoco": receiver}},
        "numeroTotalePagamenti": Decimal(len(items)),
        "importoTotalePagamenti": nodo.euros(sum(i[2] for i in items)),
        "datiSingoliPagamenti": [{"identificativoUnivocoVersamento": iuv, "identificativoUnivocoRiscossione": iur,
                                  "indiceDatiSingoloPagamento": 1, "singoloImportoPagato": nodo.euros(cents),
                                  "codiceEsitoSingoloPagamento": code, "dataEsitoSingoloPagamento": "2026-11-20"}
                                 for iuv, iur, cents, code in items],
    }
    element = nodo.flow_schema().elements["FlussoRiversamento"].encode(document, validation="strict",
                                                                      namespaces={"": NS})
    return bytes(ElementTree.tostring(element, encoding="utf-8"))


def test_report_is_paid_reported_missing_mismatched_and_rerunnable(database: Database) -> None:
    positions = Positions(database, registry(tenant()), FakeGpd())
    station = Receipts(positions)
    created = [positions.create("cremona", request(amount=a)) for a in (1000, 2000, 3000)]
    for i, position in enumerate(created):
        document = receipt_document(addressing=ADDRESSING, notice_number=position.notice_number, fiscal_code=ORG,
                                    payment=call_payment_shape(position), receipt_id=f"rcpt-{i}")
        assert nodo.read_response("paSendRTV2", station.handle(
            nodo.request_envelope("paSendRTV2", document)))["outcome"] == "OK"
    reconciliation = Reconciliation(positions)
    xml = flow([(created[0].iuv, "rcpt-0", 1000, "0"), (created[1].iuv, "rcpt-1", 1999, "0"),
                ("01000000000099999", "rcpt-x", 700, "0"), ("01000000000099998", "rcpt-y", 800, "3")])
    assert reconciliation.import_flow("cremona", xml) == {"flow_id": "2026-11-21SANDBOXPSP0-0001", "payments": 4,
                                                          "new": True}
    first = reconciliation.report("cremona")
    assert first["counts"] == {"reported": 1, "paid": 1, "missing": 1, "mismatched": 1}
    assert first["reported"][0]["iuv"] == created[0].iuv and first["paid"][0]["iuv"] == created[2].iuv
    assert first["mismatched"][0] == {"iuv": created[1].iuv, "receipt_cents": 2000, "reported_cents": 1999,
                                      "position_id": created[1].id}
    assert reconciliation.import_flow("cremona", xml)["new"] is False
    assert reconciliation.report("cremona") == first


@pytest.mark.parametrize("payload", [b"<FlussoRiversamento/>", b"not xml"])
def test_a_bad_flow_is_refused(database: Database, payload: bytes) -> None:
    with pytest.raises(ValidationFailed):
        Reconciliation(Positions(database, registry(tenant()), FakeGpd())).import_flow("cremona", payload)


def test_a_flow_for_another_institution_is_refused(database: Database) -> None:
    with pytest.raises(ValidationFailed):
        Reconciliation(Positions(database, registry(tenant()), FakeGpd())).import_flow(
            "cremona", flow([("01000000000099999", "r", 100, "0")], receiver="01234560199"))
