"""Reporting flows from the Nodo: the twin settles what citizens paid into FlussoRiversamento flows
and serves them over nodeForPa; our adapter lists and fetches them; the import is idempotent and the
report says what is reported, paid, missing or mismatched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from sandbox.nodo.app import NodoTwin, passwords_from_tenant_files
from services.pagopa.adapters.nodo import HttpNodoReporting
from services.pagopa.application import Positions
from services.pagopa.domain import reporting
from services.pagopa.domain.errors import NodoRejected, NodoUnavailable
from services.pagopa.domain.positions import PaymentPosition
from services.pagopa.models import flow_payments, flows
from services.pagopa.receipts import Receipts
from services.pagopa.reconciliation import Reconciliation
from sportello.db import Database
from sportello.errors import ConfigurationError
from sportello.tenants import SecretSource, Tenant
from tests.unit.pagopa.support import FakeGpd, migrated, registry, request, tenant

ORG = "00297960197"
STATION = "00297960197_01"
PASSWORD = "sandbox-pw-01"
NODO_URL = "http://nodo.test/nodo-auth/node-for-pa/v1"


def nodo_tenant(password: str = PASSWORD) -> Tenant:
    base = tenant()
    assert base.pagopa is not None
    return base.model_copy(update={"pagopa": base.pagopa.model_copy(update={
        "nodo_base_url": NODO_URL, "nodo_password": SecretStr(password)})})


class World:
    """Our station and the Nodo twin wired to each other in memory (no sockets)."""

    def __init__(self, database: Database, t: Tenant) -> None:
        self.twin = NodoTwin(station_url="http://station.test/paForNode", stations={ORG: (ORG, STATION)},
                             passwords={STATION: PASSWORD},
                             client=httpx.Client(transport=httpx.MockTransport(self._station)))
        self.nodo = HttpNodoReporting(client=httpx.Client(transport=httpx.WSGITransport(app=self.twin)),
                                      sleep=lambda _s: None)
        self.positions = Positions(database, registry(t), FakeGpd(), nodo_reporting=self.nodo)
        self.reconciliation = Reconciliation(self.positions)

    def _station(self, http_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=Receipts(self.positions).handle(http_request.content))

    def control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = Response.from_app(self.twin, EnvironBuilder(method="POST", path=path, json=body).get_environ())
        assert response.status_code == 200, response.get_data()
        return dict(json.loads(response.get_data()))

    def paid(self, amount: int) -> PaymentPosition:
        position = self.positions.create("cremona", request(amount=amount))
        result = self.control("/__twin/pay", {"fiscalCode": ORG, "noticeNumber": position.notice_number})
        assert result["send"]["outcome"] == "OK"
        return position


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = migrated(tmp_path)
    yield db
    db.dispose()


@pytest.fixture
def world(database: Database) -> World:
    return World(database, nodo_tenant())


def test_paid_receipts_are_settled_into_a_flow_fetched_once_and_reconciled(world: World, database: Database
                                                                          ) -> None:
    a, b, c = world.paid(1000), world.paid(2000), world.paid(3000)
    made = world.control("/__twin/flows", {"fiscalCode": ORG, "mismatches": {b.iuv: "19.99"}, "omit": [c.iuv],
                                           "extra": [{"iuv": "01000000000099999", "amount": "7.00"}]})
    [flow_id] = made["flowIds"]
    assert world.control("/__twin/flows", {"fiscalCode": ORG})["flowIds"] == []  # nothing new to settle

    assert world.reconciliation.fetch_from_nodo("cremona") == {"listed": 1, "known": 0, "imported": 1,
                                                              "rejected": 0}
    first = world.reconciliation.report("cremona")
    assert first["counts"] == {"reported": 1, "paid": 1, "missing": 1, "mismatched": 1}
    assert [line["iuv"] for line in first["reported"]] == [a.iuv]
    assert first["mismatched"][0] == {"iuv": b.iuv, "receipt_cents": 2000, "reported_cents": 1999,
                                      "position_id": b.id}
    assert [line["iuv"] for line in first["paid"]] == [c.iuv]
    assert first["missing"][0]["iuv"] == "01000000000099999" and first["missing"][0]["reported_cents"] == 700

    # again: nothing fetched twice, nothing stored twice, the same report
    assert world.reconciliation.fetch_from_nodo("cremona") == {"listed": 1, "known": 1, "imported": 0,
                                                              "rejected": 0}
    assert world.reconciliation.import_flow("cremona", world.nodo.get_flow(nodo_tenant(), flow_id))["new"] is False
    assert world.reconciliation.report("cremona") == first
    with database.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(flows)).scalar_one() == 1
        assert session.execute(sa.select(sa.func.count()).select_from(flow_payments)).scalar_one() == 3

    # the omitted payment arrives in the next flow: everything is reported
    world.control("/__twin/flows", {"fiscalCode": ORG, "extra": [{"iuv": c.iuv, "amount": "30.00",
                                                                   "receiptId": "late"}]})
    assert world.reconciliation.fetch_from_nodo("cremona")["imported"] == 1
    assert world.reconciliation.report("cremona")["counts"] == {"reported": 2, "paid": 0, "missing": 1,
                                                                "mismatched": 1}


def test_a_receipt_the_station_refused_is_still_money_in_the_flow(world: World) -> None:
    stray = world.control("/__twin/pay", {"fiscalCode": ORG, "noticeNumber": "301000000000999900",
                                          "steps": ["send"], "amount": "12.00"})
    assert stray["send"]["faultCode"] == "PAA_PAGAMENTO_SCONOSCIUTO"
    world.control("/__twin/flows", {"fiscalCode": ORG})
    world.reconciliation.fetch_from_nodo("cremona")
    report = world.reconciliation.report("cremona")
    assert report["counts"]["missing"] == 1 and report["missing"][0]["reported_cents"] == 1200


def test_the_nodo_checks_who_asks(database: Database) -> None:
    world = World(database, nodo_tenant(password="wrong-password"))
    with pytest.raises(NodoRejected, match="PPT_AUTENTICAZIONE"):
        world.nodo.list_flows(nodo_tenant(password="wrong-password"))
    with pytest.raises(NodoRejected, match="PPT_ID_FLUSSO_SCONOSCIUTO"):
        world.nodo.get_flow(nodo_tenant(), "2026-11-21SANDBOXPSP0-9999")
    stranger = nodo_tenant()
    assert stranger.pagopa is not None
    other_station = stranger.pagopa.model_copy(update={"station_id": "00297960197_09"})
    stranger = stranger.model_copy(update={"pagopa": other_station})
    with pytest.raises(NodoRejected, match="PPT_STAZIONE_INT_PA_SCONOSCIUTA"):
        world.nodo.list_flows(stranger)


def test_a_nodo_that_keeps_failing_is_unavailable_and_then_recovers(world: World) -> None:
    world.control("/__twin/faults", {"reporting_status": 503, "count": 3})
    with pytest.raises(NodoUnavailable):
        world.nodo.list_flows(nodo_tenant())
    world.control("/__twin/faults", {"reporting_status": 503, "count": 2})
    assert world.nodo.list_flows(nodo_tenant()) == []  # third attempt answers


def test_a_comune_without_a_nodo_endpoint_is_a_configuration_error(database: Database) -> None:
    world = World(database, tenant())
    with pytest.raises(ConfigurationError):
        world.reconciliation.fetch_from_nodo("cremona")


def test_a_flow_that_breaks_the_schema_is_counted_and_skipped(world: World, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    world.paid(500)
    world.control("/__twin/flows", {"fiscalCode": ORG})
    monkeypatch.setattr(world.nodo, "get_flow", lambda _t, _f: b"<FlussoRiversamento/>")
    assert world.reconciliation.fetch_from_nodo("cremona")["rejected"] == 1
    monkeypatch.undo()
    assert world.reconciliation.fetch_from_nodo("cremona")["imported"] == 1  # asked again next time


def test_messages_round_trip_and_faults_are_typed() -> None:
    credentials = reporting.Credentials(ORG, STATION, PASSWORD, ORG)
    operation, data = reporting.read_request(reporting.fetch_request(credentials, "F1"))
    assert operation == reporting.FETCH and data["identificativoFlusso"] == "F1" and data["password"] == PASSWORD
    when = datetime.fromisoformat("2026-11-21T10:00:00+01:00")
    assert reporting.read_list_response(reporting.list_response([reporting.FlowRef("F1", when)])) == [
        reporting.FlowRef("F1", when)]
    with pytest.raises(ValueError, match="nodeForPa"):
        reporting.list_request(reporting.Credentials(ORG, STATION, "short", ORG))  # stPassword is 8-15
    with pytest.raises(reporting.NodoFault) as fault:
        reporting.read_fetch_response(reporting.fault_response(reporting.FETCH, "PPT_ID_FLUSSO_SCONOSCIUTO"))
    assert fault.value.code == "PPT_ID_FLUSSO_SCONOSCIUTO"


def test_the_twin_reads_station_passwords_from_the_tenant_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("pagopa: {station_id: '00297960197_01', nodo_password: {secret: A_NODO_PASSWORD}}")
    (tmp_path / "b.yaml").write_text("pagopa: {station_id: '01234567890_01'}")
    found = passwords_from_tenant_files(tmp_path, SecretSource({"SPORTELLO_SECRET_A_NODO_PASSWORD": PASSWORD}))
    assert found == {STATION: PASSWORD}
