"""Paying end to end: a citizen starts paying through the gateway (Checkout twin redirect); the Nodo
twin plays a citizen paying at a PSP and calls our station through the gateway
(paVerifyPaymentNotice, paGetPaymentV2, paSendRTV2); `payment.completed` is published once, the
position is paid, and the same receipt arriving through GPD's receipts API changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.support.platform import Platform, start_platform

pytestmark = pytest.mark.e2e
ORG = "00297960197"
CITIZEN = "RSSMRA85T10A562S"
COMPLETED = "it.sportello.pagopa.payment.completed.v1"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with start_platform(tmp_path_factory.mktemp("receipts"), services=("pagopa", "spid"),
                        twins=("gpd", "nodo", "checkout")) as running:
        yield running


def create(platform: Platform, amount: int = 3100) -> dict[str, Any]:
    body = {"description": "Retta mensa scolastica", "amount_cents": amount,
            "due_date": (date.today() + timedelta(days=30)).isoformat(),
            "debtor": {"fiscal_code": CITIZEN, "full_name": "Mario Rossi"}, "reference": f"e2e-{uuid.uuid4()}"}
    created = httpx.post(platform.url("/v1/tenants/cremona/payments/positions"), json=body,
                         headers=platform.auth("VRDLGU70A01D150D", ["operator"]), timeout=30)
    assert created.status_code == 201, created.text
    return dict(created.json())


def pay(platform: Platform, notice_number: str, **extra: Any) -> dict[str, Any]:
    reply = httpx.post(f"{platform.twins['nodo']}/__twin/pay", json={"fiscalCode": ORG, "noticeNumber": notice_number,
                                                                     **extra}, timeout=60)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_a_citizen_pays_at_the_nodo_and_the_position_is_paid_once(platform: Platform) -> None:
    position = create(platform)
    with platform.listen(COMPLETED) as tap:
        result = pay(platform, position["notice_number"])
        assert [result[s]["outcome"] for s in ("verify", "get", "send")] == ["OK", "OK", "OK"], result
        assert all(result[s]["valid"] for s in ("verify", "get", "send"))
        [event] = tap.wait(lambda got: [e for e in got if e["subject"] == position["id"]], what="payment.completed")
    assert event["data"]["amount_cents"] == 3100 and event["data"]["receipt_id"] == result["receiptId"]
    citizen = platform.auth(CITIZEN)
    seen = httpx.get(platform.url(f"/v1/tenants/cremona/payments/positions/{position['id']}"), headers=citizen,
                     timeout=10).json()
    assert seen["status"] == "paid" and seen["receipt_id"] == result["receiptId"]
    assert result["gpd"] == 200  # the GPD twin lists the same receipt in its receipts API

    with platform.rpc() as cluster:
        polled = cluster.pagopa.poll_gpd_receipts("cremona")
    assert polled.get("known", 0) >= 1 and "applied" not in polled
    assert platform.outbox_types("pagopa").count(COMPLETED) == 1
    again = pay(platform, position["notice_number"])
    assert again["verify"]["faultCode"] == "PAA_PAGAMENTO_DUPLICATO"


def test_receipts_for_unknown_and_cancelled_notices_are_answered_and_recorded(platform: Platform) -> None:
    position = create(platform, amount=500)
    cancelled = httpx.post(platform.url(f"/v1/tenants/cremona/payments/positions/{position['id']}/invalidate"),
                           headers=platform.auth("VRDLGU70A01D150D", ["operator"]), timeout=30)
    assert cancelled.status_code == 200
    assert pay(platform, position["notice_number"])["verify"]["faultCode"] == "PAA_PAGAMENTO_ANNULLATO"
    late = pay(platform, position["notice_number"], steps=["send"], amount="5.00")
    assert late["send"]["faultCode"] == "PAA_PAGAMENTO_ANNULLATO"
    stray = pay(platform, "301000000009999" + "999", steps=["send"])
    assert stray["send"]["faultCode"] == "PAA_PAGAMENTO_SCONOSCIUTO"
    rows = platform.rows("pagopa", "SELECT receipt_id, disposition FROM pagopa_receipts")
    dispositions = {r.receipt_id: r.disposition for r in rows}
    assert dispositions[late["receiptId"]] == "invalidated_position"
    assert dispositions[stray["receiptId"]] == "unknown_position"


def test_the_station_refuses_what_is_not_a_nodo_message(platform: Platform) -> None:
    reply = httpx.post(platform.url("/v1/pagopa/paForNode"), content=b"<hello/>",
                       headers={"Content-Type": "text/xml"}, timeout=10)
    assert reply.status_code == 400 and reply.headers["content-type"] == "application/problem+json"


def test_a_citizen_starts_paying_online_through_checkout(platform: Platform) -> None:
    position = create(platform, amount=1990)
    urls = {"ok": "https://portale.example.it/ok", "cancel": "https://portale.example.it/annulla",
            "error": "https://portale.example.it/errore"}
    path = f"/v1/tenants/cremona/payments/positions/{position['id']}/checkout"
    someone_else = httpx.post(platform.url(path), json={"return_urls": urls},
                              headers=platform.auth("VRDLGU70A01D150D"), timeout=30)
    assert someone_else.status_code == 404
    started = httpx.post(platform.url(path), json={"return_urls": urls}, headers=platform.auth(CITIZEN), timeout=30)
    assert started.status_code == 200, started.text
    redirect = started.json()["redirect_url"]
    assert redirect.startswith(f"{platform.twins['checkout']}/c/")
    page = httpx.get(redirect, timeout=10)
    assert page.status_code == 200 and position["notice_number"] in page.text
    [cart] = httpx.get(f"{platform.twins['checkout']}/__twin/carts", timeout=10).json()["carts"].values()
    assert cart["paymentNotices"][0]["amount"] == 1990 and cart["returnUrls"]["returnWaitingUrl"] == urls["ok"]
    bad = httpx.post(platform.url(path), json={"return_urls": {"ok": "javascript:alert(1)"}},
                     headers=platform.auth(CITIZEN), timeout=30)
    assert bad.status_code == 400
    # found by the gateway fuzz: Checkout refuses a malformed e-mail with 400, which came back as a 502
    carts_before = len(httpx.get(f"{platform.twins['checkout']}/__twin/carts", timeout=10).json()["carts"])
    bad_email = httpx.post(platform.url(path), json={"return_urls": urls, "email": "not an address"},
                           headers=platform.auth(CITIZEN), timeout=30)
    assert bad_email.status_code == 400 and "e-mail" in bad_email.json()["detail"], bad_email.text
    assert len(httpx.get(f"{platform.twins['checkout']}/__twin/carts", timeout=10).json()["carts"]) == carts_before
    with_email = httpx.post(platform.url(path), json={"return_urls": urls, "email": "Mario.Rossi@Example.IT"},
                            headers=platform.auth(CITIZEN), timeout=30)
    assert with_email.status_code == 200, with_email.text
    pay(platform, position["notice_number"])
    paid = httpx.post(platform.url(path), json={"return_urls": urls}, headers=platform.auth(CITIZEN), timeout=30)
    assert paid.status_code == 409 and paid.json()["code"] == "pagopa.position.not_payable"
