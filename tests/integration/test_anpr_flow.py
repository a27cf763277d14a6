"""anpr over real RPC, RabbitMQ and PostgreSQL against the PDND and ANPR twins (each its own process).

- a look-up needs its reason, reaches ANPR with it and is audited; a citizen may not look up;
- a tenant's daily quota is refused by us before ANPR sees the call;
- the certificate flow driven by real events: StampDutyRequested leaves through the outbox and the
  broker; a PaymentCompleted delivered twice gives one WS 6001 call, one stored certificate and one
  CertificateIssued.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.anpr.domain.errors import QuotaExhausted, ReasonRequired
from sportello.contracts.anpr import CertificateIssued, StampDutyRequested
from sportello.contracts.pagopa import PaymentCompleted
from sportello.errors import Forbidden
from sportello.events import new_event
from tests.support.platform import Platform, start_platform
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration
MARIO = "RSSMRA85T10A562S"
GIULIA = "BNCGLI90D45D150M"
OPERATOR = {"subject": "VRDLGU70A01D150D", "role": "operator", "level": 2}
QUOTA = 2
# a second Comune with its own PDND client and a tiny C001 quota (the twins learn it from this file)
CREMA = f"""
id: crema
name: Comune di Crema
fiscal_code: "00111540191"
istat_code: "019035"
ipa_code: c_d142
pdnd:
  token_url: http://127.0.0.1:8104/token.oauth2
  client_id: 5f0c3a1e-8d2b-4c7a-9e6f-1a2b3c4d5e6f
  key_id: sandbox-crema-key-1
  private_key: {{secret: CREMONA_PDND_PRIVATE_KEY}}
  purposes:
    C001: 6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d
  anpr_base_url: http://127.0.0.1:8105/anpr
  anpr_ws6001_url: http://127.0.0.1:8105/anpr/ws6001
  assertion_audience: auth.sandbox.interop.pagopa.it/client-assertion
  anpr_audience_base: https://modipa-val.anpr.interno.it/govway/rest/in/MinInternoPortaANPR
  daily_quotas: {{C001: {QUOTA}}}
  ws6001_send_type: TEST
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with start_platform(tmp_path_factory.mktemp("anpr"), services=("anpr",), twins=("pdnd", "anpr"), gateway=False,
                        extra_tenants={"crema.yaml": CREMA}) as running:
        yield running


def twin_calls(platform: Platform) -> dict[str, int]:
    counts: dict[str, int] = httpx.get(f"{platform.twins['anpr']}/_calls", timeout=5).json()["calls"]
    return counts


def test_a_lookup_needs_a_reason_reaches_anpr_with_it_and_is_audited(platform: Platform) -> None:
    with platform.rpc() as cluster:
        before = twin_calls(platform).get("C001", 0)
        found = cluster.anpr.lookup_resident("cremona", OPERATOR, GIULIA, "prot. 4711/2026")
        assert (found["fiscal_code"], found["surname"], found["municipality"]) == (GIULIA, "BIANCHI", "CREMONA")
        with pytest.raises(ReasonRequired):
            cluster.anpr.lookup_resident("cremona", OPERATOR, GIULIA, "  ")
        with pytest.raises(Forbidden):
            cluster.anpr.lookup_resident("cremona", {"subject": MARIO, "role": "citizen"}, GIULIA, "curiosity")
        assert twin_calls(platform)["C001"] == before + 1  # the refused ones never left
        trail = cluster.anpr.audit_trail("cremona", OPERATOR)
    latest = trail[0]
    assert (latest["action"], latest["subject"], latest["reason"], latest["actor"]) == (
        "lookup.C001", GIULIA, "prot. 4711/2026", OPERATOR["subject"])
    assert GIULIA not in platform.processes["anpr"].log()  # no fiscal codes in the logs


def test_the_daily_quota_is_refused_before_anpr_sees_the_call(platform: Platform) -> None:
    with platform.rpc() as cluster:
        before = twin_calls(platform).get("C001", 0)
        for _ in range(QUOTA):
            assert cluster.anpr.lookup_resident("crema", OPERATOR, MARIO, "prot. 1")["surname"] == "ROSSI"
        with pytest.raises(QuotaExhausted, match="C001"):
            cluster.anpr.lookup_resident("crema", OPERATOR, MARIO, "prot. 2")
        assert twin_calls(platform)["C001"] == before + QUOTA
        # another Comune's quota is its own
        assert cluster.anpr.lookup_resident("cremona", OPERATOR, MARIO, "prot. 3")["surname"] == "ROSSI"


def paid(request_id: str) -> Any:
    return new_event(PaymentCompleted(position_id=str(uuid.uuid4()), iuv="47000000000000017",
                                      notice_number="347000000000000017", amount_cents=1600,
                                      paid_at=datetime.now(UTC), receipt_id=f"rcpt-{uuid.uuid4().hex[:8]}",
                                      purpose="certificate_stamp_duty", reference=request_id),
                     service="pagopa", tenant="cremona")


def test_certificate_issued_once_on_a_payment_delivered_twice(platform: Platform) -> None:
    citizen = {"subject": MARIO, "role": "citizen", "level": 2}
    with platform.listen(StampDutyRequested.event_type, CertificateIssued.event_type) as tap, \
            platform.rpc() as cluster:
        started = cluster.anpr.request_certificate("cremona", citizen, 8)
        assert started["status"] == "awaiting_payment" and started["stamp_duty_cents"] == 1600
        request_id = started["request_id"]
        [stamp] = tap.wait(lambda got: [e for e in got if e["type"] == StampDutyRequested.event_type],
                           what="StampDutyRequested through the outbox")
        assert stamp["data"] == {"request_id": request_id, "debtor_fiscal_code": MARIO, "amount_cents": 1600,
                                 "description": "Imposta di bollo - Certificato di Residenza",
                                 "io_service": "anagrafe"}
        assert stamp["tenant"] == "cremona" and stamp["subject"] == request_id
        sixty_before = twin_calls(platform).get("6001", 0)

        platform.publish(paid(request_id), times=2)  # at-least-once: the same event twice
        issued = wait_for(lambda: cluster.anpr.certificate_status("cremona", citizen, request_id)["status"] == "issued",
                          timeout=60, interval=0.3, what="the certificate issued")
        assert issued
        [announced] = tap.wait(lambda got: [e for e in got if e["type"] == CertificateIssued.event_type],
                               what="CertificateIssued")
        wait_for(lambda: platform.rows("anpr", "SELECT count(*) FROM inbox WHERE consumer = :c",
                                       c="anpr.on_payment_completed")[0][0] == 1, timeout=30,
                 what="the payment claimed once")
        time.sleep(2)  # room for a wrong second certificate to show up
        assert [e["type"] for e in tap.drain()].count(CertificateIssued.event_type) == 1
        assert platform.outbox_types("anpr").count(CertificateIssued.event_type) == 1
        assert twin_calls(platform)["6001"] == sixty_before + 1  # ANPR asked once
        status = cluster.anpr.certificate_status("cremona", citizen, request_id)
        code = status["certificate"]["verification_code"]
        assert announced["data"]["verification_code"] == code and announced["data"]["holder_fiscal_code"] == MARIO
        stored = platform.rows("anpr", "SELECT count(*), min(sha256) FROM anpr_certificates WHERE request_id = :r",
                               r=request_id)
        assert stored[0][0] == 1
        pdf = base64.b64decode(cluster.anpr.download_certificate("cremona", citizen, request_id))
        assert pdf.startswith(b"%PDF")
        verdict = cluster.anpr.verify_certificate("cremona", code, base64.b64encode(pdf).decode())
        assert verdict["genuine"] and verdict["valid"] and verdict["document_matches"]
        assert verdict["sha256"] == stored[0][1]
