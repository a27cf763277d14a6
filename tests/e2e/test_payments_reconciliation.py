"""Reconciliation end to end: citizens pay at the Nodo twin (through our station at the gateway), the
twin's PSP settles the money into a reporting flow (with a wrong amount, a payment left out and money
for a notice we never issued), the back office asks the Nodo through the gateway, imports a flow file
by hand, and reads the report — the same every time it is asked, whatever is repeated.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.pagopa.domain import reporting
from tests.support.platform import Platform, start_platform

pytestmark = pytest.mark.e2e
ORG = "00297960197"
CITIZEN = "RSSMRA85T10A562S"
OPERATOR = "VRDLGU70A01D150D"
BASE = "/v1/tenants/cremona/payments"
STRAY_IUV = "01000000000099999"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with start_platform(tmp_path_factory.mktemp("reconciliation"), services=("pagopa", "spid"),
                        twins=("gpd", "nodo"), twin_env={"nodo": {"SANDBOX_NODO_FLOW_SECONDS": "0"}}) as running:
        yield running


def operator(platform: Platform) -> dict[str, str]:
    return platform.auth(OPERATOR, ["operator"])


def paid_position(platform: Platform, amount: int) -> dict[str, Any]:
    body = {"description": "Retta mensa scolastica", "amount_cents": amount,
            "due_date": (date.today() + timedelta(days=30)).isoformat(),
            "debtor": {"fiscal_code": CITIZEN, "full_name": "Mario Rossi"}, "reference": f"e2e-{uuid.uuid4()}"}
    created = httpx.post(platform.url(f"{BASE}/positions"), json=body, headers=operator(platform), timeout=30)
    assert created.status_code == 201, created.text
    paid = httpx.post(f"{platform.twins['nodo']}/__twin/pay",
                      json={"fiscalCode": ORG, "noticeNumber": created.json()["notice_number"]}, timeout=60)
    assert paid.json()["send"]["outcome"] == "OK", paid.text
    return dict(created.json())


def report(platform: Platform, **params: Any) -> dict[str, Any]:
    answer = httpx.get(platform.url(f"{BASE}/reconciliation"), params=params, headers=operator(platform), timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_flows_from_the_nodo_and_by_hand_reconcile_the_same_every_time(platform: Platform) -> None:
    a, b, c = (paid_position(platform, amount) for amount in (1000, 2000, 3000))
    settled = httpx.post(f"{platform.twins['nodo']}/__twin/flows", timeout=10, json={
        "fiscalCode": ORG, "mismatches": {b["iuv"]: "19.99"}, "omit": [c["iuv"]],
        "extra": [{"iuv": STRAY_IUV, "amount": "7.00"}]})
    assert len(settled.json()["flowIds"]) == 1

    fetch = platform.url(f"{BASE}/reporting-flows/fetch")
    first_fetch = httpx.post(fetch, headers=operator(platform), timeout=60)
    assert first_fetch.status_code == 200, first_fetch.text
    assert first_fetch.json() == {"listed": 1, "known": 0, "imported": 1, "rejected": 0}
    first = report(platform)
    assert first["counts"] == {"reported": 1, "paid": 1, "missing": 1, "mismatched": 1}
    assert [line["iuv"] for line in first["reported"]] == [a["iuv"]]
    assert first["mismatched"] == [{"iuv": b["iuv"], "receipt_cents": 2000, "reported_cents": 1999,
                                    "position_id": b["id"]}]
    assert [line["position_id"] for line in first["paid"]] == [c["id"]]
    assert [line["iuv"] for line in first["missing"]] == [STRAY_IUV]

    again = httpx.post(fetch, headers=operator(platform), timeout=60).json()
    assert again == {"listed": 1, "known": 1, "imported": 0, "rejected": 0}
    assert report(platform) == first
    only = report(platform, status="mismatched")
    assert set(only) == {"counts", "offset", "mismatched"} and only["mismatched"] == first["mismatched"]

    # the flow of the payment left out, uploaded by hand (as a file from the treasurer's bank)
    now = datetime.now(ZoneInfo("Europe/Rome"))
    flow = reporting.flow_xml(flow_id=f"{now:%Y-%m-%d}BANCATESO-{uuid.uuid4().hex[:8]}", flow_date=now,
                              settlement_id="SETTLE-MANUAL", settlement_date=now.date().isoformat(),
                              psp_id="BANCATESO", receiver_fiscal_code=ORG, payments=[
                                  reporting.FlowPayment(c["iuv"], "IUR-MANUAL", 3000, "0", now.date().isoformat())])
    upload = platform.url(f"{BASE}/reporting-flows")
    headers = {**operator(platform), "Content-Type": "application/xml"}
    created = httpx.post(upload, content=flow, headers=headers, timeout=60)
    assert created.status_code == 201 and created.json()["new"] is True, created.text
    repeated = httpx.post(upload, content=flow, headers=headers, timeout=60)
    assert repeated.status_code == 200 and repeated.json()["new"] is False
    final = report(platform)
    assert final["counts"] == {"reported": 2, "paid": 0, "missing": 1, "mismatched": 1}
    assert report(platform) == final
    rows = platform.rows("pagopa", "SELECT count(*) AS n FROM pagopa_flow_payments")
    assert rows[0].n == 4  # 3 from the Nodo's flow + 1 by hand, each once


def test_reconciliation_is_for_the_back_office_of_its_own_comune(platform: Platform) -> None:
    citizen = httpx.get(platform.url(f"{BASE}/reconciliation"), headers=platform.auth(CITIZEN), timeout=10)
    assert citizen.status_code == 403
    elsewhere = httpx.post(platform.url("/v1/tenants/lodi/payments/reporting-flows/fetch"),
                           headers=platform.auth(OPERATOR, ["operator"], tenant="lodi"), timeout=10)
    assert elsewhere.status_code in (403, 404)
    other = httpx.get(platform.url(f"{BASE}/reconciliation"), headers=platform.auth(OPERATOR, ["operator"],
                                                                                   tenant="lodi"), timeout=10)
    assert other.status_code == 403


@pytest.mark.parametrize(("body", "content_type", "says"), [
    (b"<FlussoRiversamento/>", "application/xml", "FlussoRiversamento"),
    (b"not xml at all", "application/xml", "not XML"),
    (b"<a/>", "text/csv", "application/xml"),
])
def test_a_bad_flow_upload_is_a_clear_400(platform: Platform, body: bytes, content_type: str, says: str) -> None:
    answer = httpx.post(platform.url(f"{BASE}/reporting-flows"), content=body, timeout=30,
                        headers={**operator(platform), "Content-Type": content_type})
    assert answer.status_code == 400 and answer.headers["content-type"] == "application/problem+json"
    assert says in answer.json()["detail"]


def test_a_bad_report_filter_is_a_400(platform: Platform) -> None:
    answer = httpx.get(platform.url(f"{BASE}/reconciliation"), params={"status": "everything"},
                       headers=operator(platform), timeout=10)
    assert answer.status_code == 400
