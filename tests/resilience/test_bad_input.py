"""Bad input on the running platform (issue 8, scenario 3): refused with a clear, typed error; nothing lost.

Already covered elsewhere, and not repeated here (see docs/benchmarks.md, "Resilience"):
malformed events on the kernel's test services (tests/integration/test_backbone.py), envelopes and
payloads (tests/unit/test_events.py), CSV files and rows (tests/unit/pagopa/test_campaigns.py,
tests/e2e/test_payments_campaign.py, tests/unit/appio/test_delivery.py), SAML responses
(tests/unit/spid/test_saml_domain.py, tests/e2e/test_login_spid.py), JWTs (tests/unit/test_tokens.py,
tests/e2e/test_gateway_enforcement.py, tests/e2e/test_login_spid.py), JSON bodies at the gateway
(tests/e2e/test_payments_gateway.py, tests/e2e/test_messages_gateway.py). The campaign scenarios
here upload bad CSV rows amid 10,000 good ones (`campaign.BAD_ROWS`).

Added here, on the whole platform: malformed `payment.position.created` events reach the real
appio service (dead-lettered with their reason, the service keeps serving, the good event that
follows is delivered exactly once); a few of each bad input through the one gateway; and the 500s
the gateway fuzz found, now fixed (NUL in a JSON string, an offset past PostgreSQL's bigint, a
non-string certificate document).
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import httpx
import pytest

from sandbox.appio import seed
from sportello.bus import EVENTS_EXCHANGE, ConfirmingPublisher
from sportello.contracts.pagopa import PaymentPositionCreated
from sportello.events import new_event
from tests.resilience.campaign import OPERATOR, ORG, deliverable
from tests.support.platform import Platform
from tests.support.processes import wait_for

pytestmark = pytest.mark.resilience
RK = PaymentPositionCreated.event_type


def a_citizen_nobody_else_uses(start: int) -> str:
    """A deliverable citizen outside every campaign of these scenarios (those start at 0)."""
    return next(cf for n in range(start, start + 100) if deliverable(cf := seed.synthetic_fiscal_code(n)))


def position_event(fiscal_code: str) -> Any:
    iuv = f"{uuid.uuid4().int % 10**17:017d}"
    payload = PaymentPositionCreated(
        position_id=str(uuid.uuid4()), iupd=f"{ORG}-{iuv}", iuv=iuv, notice_number=f"3{iuv}",
        payee_fiscal_code=ORG, amount_cents=12_345, due_date=date(2099, 3, 31), description="TARI 2099 rata unica",
        debtor_fiscal_code=fiscal_code, purpose="campaign")
    return new_event(payload, service="pagopa", tenant="cremona", subject=payload.position_id)


def test_malformed_events_to_appio_are_dead_lettered_and_the_next_good_one_is_delivered_once(
        platform: Platform) -> None:
    citizen = a_citizen_nobody_else_uses(5_000_000)
    good = position_event(citizen)
    body = good.to_message()
    malformed: list[tuple[bytes, str]] = [
        (b"{not json", "application/json"),
        (b"plain words", "text/plain"),
        (json.dumps({k: v for k, v in body.items() if k != "tenant"} | {"id": "bad-no-tenant"}).encode(),
         "application/json"),
        (json.dumps(body | {"id": "bad-future", "type": RK.replace(".v1", ".v9")}).encode(), "application/json"),
        (json.dumps(body | {"id": "bad-payload", "data": {**body["data"], "amount_cents": "lots"}}).encode(),
         "application/json"),
    ]
    before = platform.rows("appio", "SELECT count(*) AS n FROM dead_letters")[0].n
    publisher = ConfirmingPublisher(platform.amqp_uri)
    try:
        for raw, content_type in malformed:
            publisher.publish(raw, exchange=EVENTS_EXCHANGE, routing_key=RK, content_type=content_type)
    finally:
        publisher.close()
    platform.publish(good, times=2)  # at least once: the same event twice is one message

    wait_for(lambda: platform.rows("appio", "SELECT count(*) AS n FROM dead_letters")[0].n >= before + 5,
             timeout=60, what="five dead letters in appio")
    letters = platform.rows("appio", "SELECT reason, event_id, attempts FROM dead_letters ORDER BY id")[before:]
    reasons = sorted(letter.reason.split(":")[0] for letter in letters)
    assert reasons == ["event.malformed", "event.malformed", "event.unknown_type", "undecodable body",
                       "undecodable body"], reasons
    assert {letter.event_id for letter in letters if letter.event_id} == {"bad-no-tenant", "bad-future", "bad-payload"}
    assert all(letter.attempts == 0 for letter in letters)  # input errors are not retried

    def delivered() -> int:
        held = httpx.get(f"{platform.twins['appio']}/__admin/counts", timeout=10).json()["messages"]
        return int(held.get(citizen, 0))
    wait_for(delivered, timeout=60, what="the good event's IO message")
    wait_for(lambda: platform.rows("appio", "SELECT count(*) AS n FROM appio_messages WHERE recipient_fiscal_code "
                                            "= :cf AND state = 'sent'", cf=citizen)[0].n == 1,
             timeout=60, what="the message recorded as sent")
    assert delivered() == 1
    with platform.rpc(timeout=30) as cluster:
        assert cluster.appio.health()["status"] == "ok"  # the consumer did not crash on input
    # the back office sees them, with their reasons (and can replay them once fixed)
    admin = platform.auth(OPERATOR, ("admin",))
    listed = httpx.get(platform.url("/v1/tenants/cremona/admin/dead-letters"), headers=admin, timeout=30)
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), [
    ("POST", "/v1/tenants/cremona/auth/spid/acs",
     {"data": {"SAMLResponse": "PHNhbWw+Z2FyYmFnZTwvc2FtbD4=", "RelayState": "x"}}, 400, "spid.response_rejected"),
    ("POST", "/v1/tenants/cremona/auth/spid/acs", {"data": {"SAMLResponse": "%%% not base64"}}, 400, None),
    ("GET", "/v1/me", {"headers": {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}}, 401,
     "auth.unauthenticated"),
    ("GET", "/v1/me", {"headers": {"Authorization": "Bearer not.a.token"}}, 401, "auth.unauthenticated"),
    ("POST", "/v1/tenants/cremona/payments/campaigns",
     {"content": b"codice_fiscale;nominativo\n\xff\xfe\n", "headers": {"Content-Type": "text/csv"}}, 400, None),
])
def test_bad_input_through_the_gateway_is_a_typed_4xx(platform: Platform, method: str, path: str,
                                                     kwargs: dict[str, Any], status: int, code: str | None) -> None:
    kwargs = dict(kwargs)
    headers = dict(kwargs.pop("headers", {}))
    if path.endswith("/campaigns"):  # an operator's upload of a file that is no campaign
        headers.update(platform.auth(OPERATOR, ("operator",)))
    response = httpx.request(method, platform.url(path), headers=headers, timeout=30, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["detail"] and problem["request_id"]
    if code:
        assert problem["code"] == code


# Found by the gateway fuzz (test_gateway_fuzz.py): a NUL inside a JSON string reached PostgreSQL,
# which refuses it ("A string literal cannot contain NUL (0x00) characters"), and the caller got a
# 500. Fixed: the gateway refuses NUL in any JSON body string (gateway/http.py json_object).
@pytest.mark.parametrize("field", ["name", "idempotency_key"])
def test_a_nul_character_in_a_json_field_is_a_400(platform: Platform, field: str) -> None:
    body = {"name": "TARI 2099", "subject": "Avviso di prova numero uno", "markdown": "x" * 90,
            "fiscal_codes": [a_citizen_nobody_else_uses(6_000_000)], field: "TARI\x002099"}
    response = httpx.post(platform.url("/v1/tenants/cremona/message-campaigns"), json=body, timeout=30,
                          headers=platform.auth(OPERATOR, ("operator",)))
    assert response.status_code == 400, response.text


# Found by the gateway fuzz once NUL was generated again: a NUL in a query parameter (here
# `reference` of GET .../payments/positions) reached PostgreSQL: a 500. Fixed in gateway/http.py.
def test_a_nul_character_in_the_query_is_a_400(platform: Platform) -> None:
    response = httpx.get(platform.url("/v1/tenants/cremona/payments/positions"), timeout=30,
                         params={"reference": "TARI\x002099"}, headers=platform.auth(OPERATOR, ("operator",)))
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")


# Found by the gateway fuzz (`make resilience`, 2026-11-22): an offset past PostgreSQL's bigint range
# reached the query and the caller got a 500 (schemathesis cases LVMtC0, UiRxqQ). Fixed: integer
# query parameters are 0..2^31-1 (gateway/http.py int_arg).
@pytest.mark.parametrize("path", ["/v1/tenants/cremona/payments/notices", "/v1/tenants/cremona/payments/positions"])
def test_an_offset_past_any_integer_column_is_a_400(platform: Platform, path: str) -> None:
    response = httpx.get(platform.url(path), timeout=30,
                         params={"offset": "178343611870334269911990272"},
                         headers=platform.auth(OPERATOR, ("operator",)))
    assert response.status_code == 400, response.text


# Found by the gateway fuzz (`make resilience` 03:09, case hczcD3): a JSON `true` where the
# certificate's base64 text belongs was a 500. Fixed in gateway/routes/registry.py.
def test_a_certificate_verification_with_a_non_string_document_is_a_400(platform: Platform) -> None:
    response = httpx.post(platform.url("/v1/public/tenants/cremona/certificates/verify"), timeout=30,
                          json={"code": "ABCD1234", "document_base64": True})
    assert response.status_code == 400, response.text

