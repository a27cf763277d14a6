"""Certificates: catalogue rules, stamp duty, WS 6001 through the twin, payment → issue → verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sandbox.anpr.app import AnprTwin
from services.anpr.adapters.anpr_rest import AnprRestClient
from services.anpr.adapters.ws6001 import Ws6001Client
from services.anpr.application import Actor, AnprApplication
from services.anpr.domain import certificates as cat
from services.anpr.domain.errors import CertificateNotAllowed, IssueInProgress, NotCertifiable
from sportello.contracts.pagopa import PaymentCompleted
from sportello.db import Database
from sportello.errors import NotFound, ValidationFailed
from sportello.events import new_event
from sportello.tables import outbox
from sportello.tenants import TenantRegistry

MARIO = Actor("RSSMRA85T10A562S", "citizen")
GIULIA = Actor("BNCGLI90D45D150M", "citizen")
OPERATOR = Actor("VRDLGU70A01D150D", "operator")


def test_catalogue_is_anprs_table() -> None:
    assert len(cat.catalogue()) == 20
    assert cat.certificate_type(8).description == "Certificato di Residenza"
    assert not cat.certificate_type(20).online
    with pytest.raises(ValidationFailed):
        cat.certificate_type(21)


def test_stamp_duty_and_exemptions() -> None:
    assert cat.stamp_duty(None).amount_cents == 1600
    assert cat.stamp_duty(7) == cat.StampDuty(0, 7, None)
    assert cat.exemptions()[10].waives_fees and not cat.exemptions()[1].waives_fees
    with pytest.raises(ValidationFailed, match="99"):
        cat.stamp_duty(99)
    with pytest.raises(ValidationFailed, match="256"):
        cat.stamp_duty(99, "x" * 257)
    assert cat.stamp_duty(99, "uso borsa di studio").exemption_description == "uso borsa di studio"
    with pytest.raises(ValidationFailed):
        cat.stamp_duty(42)


def test_who_may_request_what() -> None:
    cat.check_requester(8, for_self=True, at_counter=False)
    with pytest.raises(CertificateNotAllowed):
        cat.check_requester(8, for_self=False, at_counter=False)
    with pytest.raises(CertificateNotAllowed):
        cat.check_requester(9, for_self=True, at_counter=False)
    cat.check_requester(9, for_self=False, at_counter=True)
    cat.check_certifiable(8, 1, at_counter=False)
    with pytest.raises(Exception, match="PARZIALE"):
        cat.check_certifiable(17, 1, at_counter=False)


def test_verification_codes() -> None:
    code = cat.verification_code()
    assert len(code) == 19 and cat.normalise_code(code.lower().replace("-", " ")) == code
    with pytest.raises(ValidationFailed):
        cat.normalise_code("0000-0000")
    assert cat.qr_svg("https://x/verify/" + code).startswith("<svg")


@pytest.fixture
def app(anpr_database: Database, registry: TenantRegistry, http: httpx.Client) -> AnprApplication:
    return AnprApplication(anpr_database, registry, AnprRestClient(http, sleep=lambda s: None),
                           Ws6001Client(http, sleep=lambda s: None))


def outbox_events(database: Database) -> list[dict[str, Any]]:
    with database.transaction() as session:
        return [json.loads(b) for b in session.execute(select(outbox.c.body).order_by(outbox.c.id)).scalars()]


def paid(request_id: str, *, purpose: str = "certificate_stamp_duty") -> Any:
    return new_event(PaymentCompleted(position_id="p1", iuv="47000000000000001", notice_number="347000000000000001",
                                      amount_cents=1600, paid_at=datetime.now(UTC), receipt_id="r1",
                                      purpose=purpose, reference=request_id), service="pagopa", tenant="cremona")


def test_stamp_duty_flow_issues_on_payment_once_and_verifies(app: AnprApplication, anpr_database: Database,
                                                              anpr_twin: AnprTwin) -> None:
    started = app.request_certificate("cremona", MARIO, certificate_type=8)
    assert started["status"] == "awaiting_payment" and started["stamp_duty_cents"] == 1600
    events = outbox_events(anpr_database)
    assert [e["type"] for e in events] == ["it.sportello.anpr.stamp_duty.requested.v1"]
    assert events[0]["data"]["request_id"] == started["request_id"] and events[0]["data"]["amount_cents"] == 1600
    with pytest.raises(NotFound):
        app.download("cremona", started["request_id"], MARIO)

    event = paid(started["request_id"])
    app.on_payment_completed(event)
    app.on_payment_completed(event)  # redelivered: no second certificate, no second event
    status = app.status("cremona", started["request_id"], MARIO)
    assert status["status"] == "issued"
    assert [c["eservice"] for c in anpr_twin.calls] == ["C001", "6001"]
    order = anpr_twin.calls[1]["body"]
    assert order["datiControllo"]["bollo"] == "1600" and order["datiControllo"]["tipoRichiedente"] == "2"
    issued = [e for e in outbox_events(anpr_database) if e["type"] == "it.sportello.anpr.certificate.issued.v1"]
    assert len(issued) == 1 and issued[0]["data"]["verification_code"] == status["certificate"]["verification_code"]

    pdf = app.download("cremona", started["request_id"], MARIO)
    assert pdf.startswith(b"%PDF")
    with pytest.raises(NotFound):
        app.download("cremona", started["request_id"], GIULIA)  # someone else's
    code = status["certificate"]["verification_code"]
    verdict = app.verify("cremona", code, pdf)
    assert verdict["genuine"] and verdict["valid"] and verdict["document_matches"]
    tampered = app.verify("cremona", code, pdf[:200] + bytes([pdf[200] ^ 1]) + pdf[201:])
    assert not tampered["genuine"] and tampered["reason"] == "the document differs from the one issued"
    assert not app.verify("other-tenant", code)["genuine"]  # tenant isolation
    app.clock = lambda: datetime.now(UTC) + timedelta(days=200)
    assert app.verify("cremona", code)["reason"] == "expired"


def test_exempt_certificate_is_issued_at_once(app: AnprApplication, anpr_twin: AnprTwin) -> None:
    done = app.request_certificate("cremona", GIULIA, certificate_type=12, exemption=99,
                                   exemption_description="uso assegni familiari")
    assert done["status"] == "issued" and done["stamp_duty_cents"] == 0
    controls = anpr_twin.calls[-1]["body"]["datiControllo"]
    assert controls["bollo"] == "0" and controls["esenzioneBollo"] == "99"
    assert controls["descrizioneEsenzioneBollo"] == "uso assegni familiari"


def test_counter_issue_is_audited(app: AnprApplication) -> None:
    done = app.request_certificate("cremona", OPERATOR, certificate_type=9, subject=GIULIA.fiscal_code,
                                   exemption=10, at_counter=True, reason="sportello 3, prot. 77")
    assert done["status"] == "issued" and done["channel"] == "counter"
    actions = [(a["action"], a["subject"], a["actor"]) for a in app.audit_trail("cremona")]
    assert ("certificate.issue", GIULIA.fiscal_code, OPERATOR.fiscal_code) in actions
    assert ("certificate.request", GIULIA.fiscal_code, OPERATOR.fiscal_code) in actions


def test_not_certifiable_is_refused_before_any_payment(app: AnprApplication, anpr_twin: AnprTwin,
                                                        anpr_database: Database) -> None:
    blocked = next(r for r in anpr_twin.people.residents if r.certifiability == 0)
    with pytest.raises(NotCertifiable, match="NON CERTIFICABILE"):
        app.request_certificate("cremona", Actor(blocked.fiscal_code, "citizen"), certificate_type=8)
    partial = next(r for r in anpr_twin.people.residents if r.certifiability == 1)
    with pytest.raises(NotCertifiable, match="PARZIALE"):
        app.request_certificate("cremona", Actor(partial.fiscal_code, "citizen"), certificate_type=17)
    assert [c["eservice"] for c in anpr_twin.calls] == ["C001", "C001"]  # no 6001
    assert outbox_events(anpr_database) == []  # no stamp duty asked


class SilentOnCertifiability:
    """A ResidentRegistry whose C001 answers do not tell certifiability (then WS 6001 decides)."""

    def __init__(self, inner: AnprRestClient) -> None:
        self.inner = inner

    def e002(self, tenant: Any, service: Any, body: dict[str, Any], audit: Any) -> dict[str, Any]:
        answer = self.inner.e002(tenant, service, body, audit)
        for subject in answer["listaSoggetti"]["datiSoggetto"]:
            subject.pop("infoSoggettoEnte", None)
        return answer


def test_anpr_refusal_marks_the_request_failed(anpr_database: Database, registry: TenantRegistry,
                                               http: httpx.Client, anpr_twin: AnprTwin) -> None:
    app = AnprApplication(anpr_database, registry, SilentOnCertifiability(AnprRestClient(http, sleep=lambda s: None)),
                          Ws6001Client(http, sleep=lambda s: None))
    blocked = next(r for r in anpr_twin.people.residents if r.certifiability == 0)
    done = app.request_certificate("cremona", Actor(blocked.fiscal_code, "citizen"), certificate_type=8, exemption=1)
    assert done["status"] == "failed" and "EN080" in done["failure"]


def test_someone_else_at_the_counter_is_sent_as_generalita_richiedente(app: AnprApplication,
                                                                      anpr_twin: AnprTwin) -> None:
    done = app.request_certificate("cremona", OPERATOR, certificate_type=8, subject=GIULIA.fiscal_code, exemption=1,
                                   at_counter=True, reason="delega prot. 12",
                                   on_behalf_of={"fiscal_code": MARIO.fiscal_code, "surname": "Rossi",
                                                 "name": "Mario"})
    assert done["status"] == "issued"
    order = anpr_twin.calls[-1]["body"]
    assert order["datiControllo"]["tipoRichiedente"] == "1"
    assert order["generalitaRichiedente"]["generalita"]["codiceFiscale"]["codFiscale"] == MARIO.fiscal_code
    assert order["generalitaRichiedente"]["generalita"]["cognome"] == "ROSSI"
    assert order["soggettoIntestatario"]["generalita"]["codiceFiscale"]["codFiscale"] == GIULIA.fiscal_code
    assert app.status("cremona", done["request_id"], MARIO)["status"] == "issued"  # the requester follows it
    alone = app.request_certificate("cremona", OPERATOR, certificate_type=8, subject=GIULIA.fiscal_code, exemption=1,
                                    at_counter=True, reason="prot. 13")
    assert alone["status"] == "issued"
    order = anpr_twin.calls[-1]["body"]
    assert order["datiControllo"]["tipoRichiedente"] == "2" and "generalitaRichiedente" not in order
    with pytest.raises(ValidationFailed):
        app.request_certificate("cremona", MARIO, certificate_type=8, exemption=1,
                                on_behalf_of={"fiscal_code": GIULIA.fiscal_code, "surname": "B", "name": "G"})
    with pytest.raises(ValidationFailed):
        app.request_certificate("cremona", OPERATOR, certificate_type=8, subject=GIULIA.fiscal_code, exemption=1,
                                at_counter=True, on_behalf_of={"fiscal_code": "RSSMRA85T10A562X", "surname": "R",
                                                               "name": "M"})


def test_a_duplicate_payment_while_issuing_waits_instead_of_asking_anpr_twice(app: AnprApplication,
                                                                            anpr_twin: AnprTwin) -> None:
    started = app.request_certificate("cremona", MARIO, certificate_type=8)
    assert app._take_lease("cremona", started["request_id"])  # a first worker is at ANPR
    with pytest.raises(IssueInProgress):
        app.on_payment_completed(paid(started["request_id"]))
    app.clock = lambda: datetime.now(UTC) + timedelta(minutes=3)  # that worker died: its lease ran out
    app.on_payment_completed(paid(started["request_id"]))
    assert app.status("cremona", started["request_id"], MARIO)["status"] == "issued"
    assert [c["eservice"] for c in anpr_twin.calls].count("6001") == 1


def test_other_payments_are_ignored(app: AnprApplication) -> None:
    app.on_payment_completed(paid("nope", purpose="single"))
    app.on_payment_completed(paid("00000000-0000-0000-0000-000000000000"))


def test_verification_qr_encodes_the_public_verification_url(app: AnprApplication) -> None:
    done = app.request_certificate("cremona", GIULIA, certificate_type=8, exemption=1)
    code = done["certificate"]["verification_code"]
    qr = app.verification_qr("cremona", code.lower())
    assert qr["url"] == f"http://127.0.0.1:8080/v1/public/tenants/cremona/certificates/verify/{code}"
    assert qr["svg"].startswith("<svg") and qr["verification_code"] == code
    with pytest.raises(NotFound):
        app.verification_qr("cremona", "AAAA-BBBB-CCCC-DDDD")


class AwayOnce:
    """A CertificateAuthority that is unreachable on its first call, then answers (ANPR had an outage)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def issue(self, tenant: Any, order: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            from services.anpr.domain.errors import AnprUnavailable

            raise AnprUnavailable("ANPR did not answer")
        return self.inner.issue(tenant, order)


def test_an_exempt_certificate_caught_by_an_outage_is_issued_by_the_sweep(
        anpr_database: Database, registry: TenantRegistry, http: httpx.Client) -> None:
    authority = AwayOnce(Ws6001Client(http, sleep=lambda s: None))
    app = AnprApplication(anpr_database, registry, AnprRestClient(http, sleep=lambda s: None), authority)
    waiting = app.request_certificate("cremona", GIULIA, certificate_type=12, exemption=1)
    assert waiting["status"] == "issuing" and authority.calls == 1
    assert app.retry_stalled_issues() == 0  # the lease is still running: nobody retries yet
    app.clock = lambda: datetime.now(UTC) + timedelta(minutes=3)
    assert app.retry_stalled_issues() == 1
    assert app.status("cremona", waiting["request_id"], GIULIA)["status"] == "issued"
    assert app.retry_stalled_issues() == 0 and authority.calls == 2  # issued once, never again
