"""The certificate flow of DESIGN.md end to end: gateway, the four services and every twin, as real processes.

citizen requests a residence certificate with stamp duty → pagopa creates the €16.00 position on GPD
→ appio sends it on IO with its payment data → the citizen pays at a PSP: the Nodo twin calls our
station through the gateway (paVerifyPaymentNotice, paGetPaymentV2, paSendRTV2) and pagopa records
the receipt and emits `payment.completed` once → anpr obtains the certificate from WS 6001 → appio
says it is ready → the citizen downloads the PDF → anyone verifies it by code, without login; a
tampered PDF fails. Also: the exempt path, the verification QR, tenant isolation and role checks at
the gateway.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pypdf
import pytest

from tests.support.platform import Platform, start_platform
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
MARIO = "RSSMRA85T10A562S"  # a resident, on IO
GIULIA = "BNCGLI90D45D150M"
OPERATOR = "VRDLGU70A01D150D"  # operator and admin of cremona
ORG = "00297960197"
COMPLETED = "it.sportello.pagopa.payment.completed.v1"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # the twins this flow talks to (tokens are minted as spid would, so no IdP twin is needed); the
    # Nodo twin calls the gateway's station (start_platform gives it SANDBOX_NODO_STATION_URL)
    with start_platform(tmp_path_factory.mktemp("certificates"),
                        twins=("gpd", "nodo", "appio", "pdnd", "anpr")) as running:
        yield running


def mentions(message: dict[str, Any], code: str) -> bool:
    """The IO message names this verification code (markdown may escape its hyphens)."""
    return code in message["content"].get("markdown", "").replace("\\", "")


def tamper(pdf: bytes) -> bytes:
    """The same certificate re-saved with an edited field: still a valid PDF, no longer the one issued."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    writer = pypdf.PdfWriter()
    writer.append(reader)
    writer.add_metadata({"/Title": "Certificato di residenza (modificato)"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def io_messages(platform: Platform, fiscal_code: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(f"{platform.twins['appio']}/__admin/messages",
                                            params={"fiscal_code": fiscal_code}, timeout=10).json()
    return found


def certificates(platform: Platform, tenant: str = "cremona") -> str:
    return platform.url(f"/v1/tenants/{tenant}/certificates")


def public(platform: Platform, path: str = "") -> str:
    return platform.url(f"/v1/public/tenants/cremona/certificates/verify{path}")


def test_certificate_with_stamp_duty_from_request_to_verification(platform: Platform) -> None:
    citizen = platform.auth(MARIO)
    io_before = len(io_messages(platform, MARIO))

    # 1. the citizen asks; the stamp duty is due
    asked = httpx.post(certificates(platform), json={"certificate_type": 8}, headers=citizen, timeout=30)
    assert asked.status_code == 202, asked.text
    request = asked.json()
    assert request["status"] == "awaiting_payment" and request["stamp_duty_cents"] == 1600
    request_id = request["request_id"]

    # 2. pagopa creates the €16.00 position (PaymentPositionCreated) and publishes it on GPD
    def stamp_position() -> dict[str, Any] | None:
        items = httpx.get(platform.url("/v1/tenants/cremona/payments/mine"), headers=citizen, timeout=10).json()
        return next((p for p in items["items"] if p["reference"] == request_id and p["status"] == "published"), None)

    position = wait_for(stamp_position, timeout=60, interval=0.5, what="the stamp-duty position")
    assert position["amount_cents"] == 1600 and position["purpose"] == "certificate_stamp_duty"
    assert position["debtor"]["fiscal_code"] == MARIO
    assert "it.sportello.pagopa.payment.position.created.v1" in platform.outbox_types("pagopa")

    # 3. appio sends the IO message with the payment data
    def payment_message() -> dict[str, Any] | None:
        return next((m for m in io_messages(platform, MARIO)
                     if (m["content"].get("payment_data") or {}).get("notice_number") == position["notice_number"]),
                    None)

    message = wait_for(payment_message, timeout=60, interval=0.5, what="the IO message with the payment")
    assert message["content"]["payment_data"]["amount"] == 1600
    counts = httpx.get(f"{platform.twins['appio']}/__admin/counts", timeout=10).json()
    assert counts["messages"][MARIO] >= io_before + 1

    # 4. the citizen pays at a PSP: the Nodo twin calls our station through the gateway, as pagoPA does
    def completions(got: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in got if e["subject"] == position["id"]]

    with platform.listen(COMPLETED) as tap:
        paying = httpx.post(f"{platform.twins['nodo']}/__twin/pay",
                            json={"fiscalCode": ORG, "noticeNumber": position["notice_number"]}, timeout=60)
        assert paying.status_code == 200, paying.text
        paid = paying.json()
        steps = ("verify", "get", "send")
        assert [paid.get(s, {}).get("outcome") for s in steps] == ["OK", "OK", "OK"], paid  # a failed step ends it
        assert all(paid[s]["valid"] for s in steps), paid  # every station reply valid against pagoPA's XSDs
        assert paid["gpd"] == 200  # the GPD twin lists the same receipt in its receipts API
        receipt_id = paid["receiptId"]
        [event] = tap.wait(completions, timeout=60, what="payment.completed for the stamp duty")
        assert event["data"]["receipt_id"] == receipt_id and event["data"]["amount_cents"] == 1600
        assert event["data"]["purpose"] == "certificate_stamp_duty" and event["data"]["reference"] == request_id
        seen = httpx.get(platform.url(f"/v1/tenants/cremona/payments/positions/{position['id']}"), headers=citizen,
                         timeout=10).json()
        assert seen["status"] == "paid" and seen["receipt_id"] == receipt_id

        # 5. anpr obtains the certificate from WS 6001 on payment.completed
        def issued() -> dict[str, Any] | None:
            status = httpx.get(f"{certificates(platform)}/{request_id}", headers=citizen, timeout=10).json()
            return status if status["status"] == "issued" else None

        status = wait_for(issued, timeout=60, interval=0.5, what="the certificate issued")
        code = status["certificate"]["verification_code"]
        assert platform.outbox_types("anpr").count("it.sportello.anpr.certificate.issued.v1") == 1

        # the same payment seen again changes nothing: the Nodo is told it is already paid, and the
        # receipt listed by GPD's receipts API is known
        again = httpx.post(f"{platform.twins['nodo']}/__twin/pay",
                           json={"fiscalCode": ORG, "noticeNumber": position["notice_number"]}, timeout=60).json()
        assert again["verify"]["faultCode"] == "PAA_PAGAMENTO_DUPLICATO" and "send" not in again
        with platform.rpc() as cluster:
            polled = cluster.pagopa.poll_gpd_receipts("cremona")
        assert polled.get("known", 0) >= 1 and "applied" not in polled, polled

        # the receipt was recorded once, from the station; payment.completed was emitted and published once
        recorded = platform.rows("pagopa", "SELECT receipt_id, source, disposition, amount_cents FROM pagopa_receipts"
                                           " WHERE notice_number = :n", n=position["notice_number"])
        assert [tuple(r) for r in recorded] == [(receipt_id, "nodo", "applied", 1600)]
        emitted = [json.loads(r.body) for r in platform.rows("pagopa", "SELECT body FROM outbox WHERE event_type = :t",
                                                               t=COMPLETED)]
        assert [e["data"]["receipt_id"] for e in completions(emitted)] == [receipt_id]
        assert len(completions(tap.drain())) == 1

    # 6. appio tells the citizen it is ready
    def ready_message() -> dict[str, Any] | None:
        return next((m for m in io_messages(platform, MARIO) if mentions(m, code)), None)

    ready = wait_for(ready_message, timeout=60, interval=0.5, what="the 'certificate ready' IO message")
    assert "payment_data" not in ready["content"]

    # 7. the citizen downloads the PDF
    document = httpx.get(f"{certificates(platform)}/{request_id}/document", headers=citizen, timeout=30)
    assert document.status_code == 200 and document.headers["content-type"] == "application/pdf"
    pdf = document.content
    assert pdf.startswith(b"%PDF")

    # 8. anyone verifies it, without login; a tampered PDF fails
    by_code = httpx.get(public(platform, f"/{code}"), timeout=10)
    assert by_code.status_code == 200
    assert by_code.json()["genuine"] and by_code.json()["valid"]
    assert MARIO not in by_code.text and "ROSSI" not in by_code.text  # nothing personal
    genuine = httpx.post(public(platform), json={"code": code, "document_base64": base64.b64encode(pdf).decode()},
                         timeout=30).json()
    assert genuine["genuine"] and genuine["document_matches"]
    tampered_pdf = tamper(pdf)
    assert tampered_pdf.startswith(b"%PDF") and tampered_pdf != pdf
    tampered = httpx.post(public(platform), json={"code": code,
                                                  "document_base64": base64.b64encode(tampered_pdf).decode()},
                          timeout=30).json()
    assert not tampered["genuine"] and not tampered["document_matches"]
    assert tampered["reason"] == "the document differs from the one issued"

    # 9. the verification QR, for printing beside the certificate
    qr = httpx.get(public(platform, f"/{code}/qr"), timeout=10)
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.lstrip().startswith("<svg")
    unknown = httpx.get(public(platform, "/AAAA-BBBB-CCCC-DDDD/qr"), timeout=10)
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"


def test_exempt_certificate_is_issued_at_once_without_payment(platform: Platform) -> None:
    citizen = platform.auth(GIULIA)
    asked = httpx.post(certificates(platform), json={"certificate_type": 12, "exemption": 99,
                                                     "exemption_description": "uso assegni familiari"},
                       headers=citizen, timeout=60)
    assert asked.status_code == 201, asked.text
    done = asked.json()
    assert done["status"] == "issued" and done["stamp_duty_cents"] == 0 and done["exemption"] == 99
    code = done["certificate"]["verification_code"]
    mine = httpx.get(platform.url("/v1/tenants/cremona/payments/mine"), headers=citizen, timeout=10).json()["items"]
    assert [p for p in mine if p["reference"] == done["request_id"]] == []  # nothing to pay
    wait_for(lambda: any(mentions(m, code) for m in io_messages(platform, GIULIA)),
             timeout=60, interval=0.5, what="the 'certificate ready' IO message")
    pdf = httpx.get(f"{certificates(platform)}/{done['request_id']}/document", headers=citizen, timeout=30)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_a_citizen_lists_only_his_own_certificate_requests(platform: Platform) -> None:
    mario, giulia = platform.auth(MARIO), platform.auth(GIULIA)
    asked = httpx.post(certificates(platform), json={"certificate_type": 8, "exemption": 1}, headers=mario,
                       timeout=60)
    assert asked.status_code == 201, asked.text
    request_id = asked.json()["request_id"]
    listed = httpx.get(certificates(platform), headers=mario, timeout=10)
    assert listed.status_code == 200, listed.text
    mine = listed.json()["requests"]
    assert mine[0]["request_id"] == request_id and mine[0]["status"] == "issued"  # newest first
    assert mine[0]["certificate"]["verification_code"]
    theirs = httpx.get(certificates(platform), headers=giulia, timeout=10).json()["requests"]
    assert request_id not in {item["request_id"] for item in theirs}
    one = httpx.get(certificates(platform), params={"limit": 1}, headers=mario, timeout=10)
    assert len(one.json()["requests"]) == 1
    bad = httpx.get(certificates(platform), params={"limit": "many"}, headers=mario, timeout=10)
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert httpx.get(certificates(platform), timeout=10).status_code == 401


def test_tenant_isolation_and_roles_at_the_gateway(platform: Platform) -> None:
    mario, giulia = platform.auth(MARIO), platform.auth(GIULIA)
    asked = httpx.post(certificates(platform), json={"certificate_type": 8, "exemption": 1}, headers=mario,
                       timeout=60).json()
    mine = f"{certificates(platform)}/{asked['request_id']}"
    assert httpx.get(mine, headers=mario, timeout=10).status_code == 200
    for path in (mine, f"{mine}/document"):  # another citizen of the same Comune: as if it did not exist
        denied = httpx.get(path, headers=giulia, timeout=10)
        assert denied.status_code == 404 and denied.headers["content-type"] == "application/problem+json"
    elsewhere = platform.auth(MARIO, tenant="lodi")  # a valid token of another Comune
    for reply in (httpx.get(mine, headers=elsewhere, timeout=10),
                  httpx.post(certificates(platform), json={"certificate_type": 8}, headers=elsewhere, timeout=10)):
        assert reply.status_code == 403 and reply.json()["code"] == "access.forbidden", reply.text
    assert httpx.get(mine, timeout=10).status_code == 401

    lookup = platform.url("/v1/tenants/cremona/registry/lookups")
    body = {"fiscal_code": GIULIA, "reason": "prot. 99/2026"}
    assert httpx.post(lookup, json=body, headers=mario, timeout=10).status_code == 403  # a citizen is no operator
    assert httpx.get(platform.url("/v1/tenants/cremona/registry/audit"), headers=mario, timeout=10).status_code == 403
    counter = {"certificate_type": 8, "fiscal_code": GIULIA, "exemption": 1, "reason": "sportello 1"}
    assert httpx.post(platform.url("/v1/tenants/cremona/registry/certificates"), json=counter, headers=mario,
                      timeout=10).status_code == 403
    operator = platform.auth(OPERATOR, roles=["operator"])
    found = httpx.post(lookup, json=body, headers=operator, timeout=30)
    assert found.status_code == 200 and found.json()["surname"] == "BIANCHI"
    no_reason = httpx.post(lookup, json={"fiscal_code": GIULIA}, headers=operator, timeout=10)
    assert no_reason.status_code == 400 and no_reason.json()["code"] == "anpr.reason_required"
    # the operator sees any request of the Comune; at the counter someone else may ask for Giulia's
    assert httpx.get(mine, headers=operator, timeout=10).status_code == 200
    delegated = httpx.post(platform.url("/v1/tenants/cremona/registry/certificates"), headers=operator, timeout=60,
                           json={**counter, "requester": {"fiscal_code": MARIO, "surname": "Rossi", "name": "Mario"}})
    assert delegated.status_code == 201 and delegated.json()["channel"] == "counter", delegated.text
    trail = httpx.get(platform.url("/v1/tenants/cremona/registry/audit"), headers=operator, timeout=10).json()
    assert {"lookup.C001", "certificate.request", "certificate.issue"} <= {e["action"] for e in trail["entries"]}
    foreign_operator = platform.auth(OPERATOR, roles=["operator"], tenant="lodi")
    assert httpx.post(lookup, json=body, headers=foreign_operator, timeout=10).status_code == 403
