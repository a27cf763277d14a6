"""ModI headers and the E002 e-services: our client makes none of the mistakes the ANPR twin catches."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from jose import jws, jwt

from sandbox.anpr.app import AnprTwin
from sandbox.pdnd.app import PdndTwin
from services.anpr.adapters.anpr_rest import AnprRestClient
from services.anpr.adapters.pdnd import PdndVoucherClient
from services.anpr.application import Actor, AnprApplication
from services.anpr.domain import eservices, modi
from services.anpr.domain.errors import (
    AnprUnavailable,
    QuotaExhausted,
    ReasonRequired,
    ResidentNotFound,
    UpstreamRateLimited,
)
from services.anpr.domain.modi import AuditContext
from sportello.db import Database
from sportello.tenants import Tenant, TenantRegistry

AUDIT = AuditContext("a1b2c3d4e5f60718", "sportello-backoffice", "SPID_L2")
MARIO = "RSSMRA85T10A562S"
OPERATOR = Actor("VRDLGU70A01D150D", "operator")


def body(code: str, operation: str = "SPT1", fiscal_code: str = MARIO) -> dict[str, Any]:
    return eservices.build_request(eservices.eservice(code), operation=operation, fiscal_code=fiscal_code,
                                   reason="prot. 123/2026", reference_date=datetime(2026, 1, 2).date())


def test_digest_and_signature_headers(tenant: Tenant) -> None:
    assert tenant.pdnd is not None
    payload = b'{"a":1}'
    digest, signature = modi.signature_header(payload, client_id="cid", key_id="kid-1",
                                              private_key_pem=tenant.pdnd.private_key.get_secret_value(),
                                              audience="aud-x", now=1000)
    assert digest == "SHA-256=" + base64.b64encode(hashlib.sha256(payload).digest()).decode()
    claims = jwt.get_unverified_claims(signature)
    assert jws.get_unverified_header(signature) == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
    assert claims["aud"] == "aud-x" and claims["exp"] - claims["iat"] == 60
    assert claims["signed_headers"] == [{"digest": digest}, {"content-type": "application/json"}]


def test_tracking_evidence_carries_the_audit_claims(tenant: Tenant) -> None:
    assert tenant.pdnd is not None
    token = modi.tracking_evidence(AUDIT, client_id="cid", key_id="k", audience="aud-x", purpose_id="p",
                                   private_key_pem=tenant.pdnd.private_key.get_secret_value(), now=1000)
    claims = jwt.get_unverified_claims(token)
    assert (claims["userID"], claims["userLocation"], claims["LoA"]) == ("a1b2c3d4e5f60718", "sportello-backoffice",
                                                                         "SPID_L2")
    assert claims["aud"] == "aud-x" and claims["exp"] - claims["iat"] == 300 and claims["purposeId"] == "p"


def test_audience_is_the_card_name_not_the_url(tenant: Tenant) -> None:
    assert tenant.pdnd is not None
    c030 = eservices.eservice("C030")
    assert eservices.audience(tenant.pdnd.anpr_audience_base, c030) == (
        "https://modipa-val.anpr.interno.it/govway/rest/in/MinInternoPortaANPR/"
        "C030-servizioAccertamentoIdUnicoNazionale/v1")
    assert eservices.endpoint(str(tenant.pdnd.anpr_base_url), c030).endswith(
        "/MinInternoPortaANPR-PDND/C030-servizioAccertamentoIdUnicoNazionale/v1/anpr-service-e002")


def test_operation_ids() -> None:
    assert eservices.operation_id(eservices.eservice("C001"), last_numeric=41) == "42"
    assert eservices.operation_id(eservices.eservice("C030"), now=1.5).isalnum()
    with pytest.raises(ReasonRequired):
        eservices.check_reason("   ")


@pytest.mark.parametrize("code, check", [
    ("C030", lambda a: eservices.parse_c030(a).isdigit()),
    ("C001", lambda a: eservices.parse_c001(a).surname == "ROSSI"),
])
def test_client_calls_each_eservice_through_the_twin(http: httpx.Client, tenant: Tenant, code: str,
                                                     check: Any) -> None:
    client = AnprRestClient(http, sleep=lambda s: None)
    assert check(client.e002(tenant, eservices.eservice(code), body(code, "7" if code == "C001" else "SPT1"), AUDIT))


def test_c003_verifies_declared_data(http: httpx.Client, tenant: Tenant) -> None:
    request = body("C003")
    request["verifica"] = {"generalita": {"cognome": "ROSSI", "nome": "LUCA"}}
    answer = AnprRestClient(http, sleep=lambda s: None).e002(tenant, eservices.eservice("C003"), request, AUDIT)
    assert eservices.parse_c003(answer) == {"cognome": "S", "nome": "N"}


def test_unknown_person_is_a_typed_not_found(http: httpx.Client, tenant: Tenant) -> None:
    with pytest.raises(ResidentNotFound):
        AnprRestClient(http, sleep=lambda s: None).e002(
            tenant, eservices.eservice("C030"), body("C030", fiscal_code="ZZZZZZ80A01D150Q"), AUDIT)


# -- each ModI/PDND mistake is caught by the twin with GovWay's error --------------------------


def signed_call(http: httpx.Client, tenant: Tenant, pdnd_twin: PdndTwin, *, audience: str | None = None,
                voucher_for: str = "C030", drop: str | None = None, digest_of: str | None = "same",
                tamper_body: bool = False, evidence_claims: dict[str, Any] | None = None) -> httpx.Response:
    """A C030 call built by hand from our domain functions, with one thing changed."""
    assert tenant.pdnd is not None
    pdnd = tenant.pdnd
    service = eservices.eservice("C030")
    aud = audience or eservices.audience(pdnd.anpr_audience_base, service)
    key = pdnd.private_key.get_secret_value()
    evidence = modi.tracking_evidence(AUDIT, client_id=pdnd.client_id, key_id=pdnd.key_id, private_key_pem=key,
                                      audience=aud, purpose_id=pdnd.purposes["C030"])
    if evidence_claims is not None:
        claims = {**jwt.get_unverified_claims(evidence), **evidence_claims}
        claims = {k: v for k, v in claims.items() if v is not None}
        evidence = jwt.encode(claims, key, algorithm="RS256", headers={"kid": pdnd.key_id})
    voucher = PdndVoucherClient(http).voucher(tenant, voucher_for,
                                              tracking_evidence=evidence if digest_of == "same" else digest_of)
    payload = json.dumps(body("C030")).encode()
    digest, signature = modi.signature_header(payload, client_id=pdnd.client_id, key_id=pdnd.key_id,
                                              private_key_pem=key, audience=aud)
    headers = {"Authorization": f"Bearer {voucher}", "Content-Type": "application/json", "Digest": digest,
               "Agid-JWT-Signature": signature, "Agid-JWT-TrackingEvidence": evidence}
    if drop:
        headers.pop(drop)
    if tamper_body:
        payload = payload.replace(b"prot. 123", b"prot. 999")
    return http.post(eservices.endpoint(str(pdnd.anpr_base_url), service), content=payload, headers=headers)


def test_the_hand_built_call_passes(http: httpx.Client, tenant: Tenant, pdnd_twin: PdndTwin) -> None:
    assert signed_call(http, tenant, pdnd_twin).status_code == 200


@pytest.mark.parametrize("change, status, title, detail", [
    (dict(audience="https://modipa-val.anpr.interno.it/govway/rest/in/MinInternoPortaANPR-PDND/"
                   "C030-servizioAccertamentoIdUnicoNazionale/v1"), 400, "InteroperabilityInvalidRequest", "audience"),
    (dict(drop="Digest"), 400, "InteroperabilityInvalidRequest", "Digest"),
    (dict(drop="Agid-JWT-Signature"), 400, "InteroperabilityInvalidRequest", "Agid-JWT-Signature"),
    (dict(drop="Agid-JWT-TrackingEvidence"), 400, "InteroperabilityInvalidRequest", "TrackingEvidence"),
    (dict(drop="Authorization"), 401, "TokenAuthenticationRequired", "token"),
    (dict(tamper_body=True), 400, "InteroperabilityInvalidRequest", "Digest"),
    (dict(digest_of=None), 400, "InteroperabilityInvalidRequest", "digest del voucher"),
    (dict(digest_of="another.evidence.jws"), 400, "InteroperabilityInvalidRequest", "digest del voucher"),
    (dict(voucher_for="C001"), 401, "TokenAuthenticationFailed", "audience"),
    (dict(evidence_claims={"LoA": None}), 400, "InteroperabilityInvalidRequest", "LoA"),
])
def test_twin_catches_each_modi_mistake(http: httpx.Client, tenant: Tenant, pdnd_twin: PdndTwin,
                                        change: dict[str, Any], status: int, title: str, detail: str) -> None:
    response = signed_call(http, tenant, pdnd_twin, **change)
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["title"] == title and detail in problem["detail"]


def test_twin_rejects_an_expired_voucher(http: httpx.Client, tenant: Tenant, pdnd_twin: PdndTwin,
                                         anpr_twin: AnprTwin) -> None:
    import time as _time
    anpr_twin.clock = lambda: _time.time() + 601
    response = signed_call(http, tenant, pdnd_twin)
    assert response.status_code == 401 and response.json()["detail"] == "token scaduto"


# -- quotas, operation ids and faults through the application ----------------------------------


@pytest.fixture
def app(anpr_database: Database, registry: TenantRegistry, http: httpx.Client) -> AnprApplication:
    from services.anpr.adapters.ws6001 import Ws6001Client
    return AnprApplication(anpr_database, registry, AnprRestClient(http, sleep=lambda s: None),
                           Ws6001Client(http, sleep=lambda s: None))


def test_lookup_sends_increasing_numeric_ids_for_c001_and_audits(app: AnprApplication, anpr_twin: AnprTwin) -> None:
    first = app.lookup_resident("cremona", OPERATOR, MARIO, "prot. 1/2026")
    app.lookup_resident("cremona", OPERATOR, MARIO.lower(), "prot. 2/2026")
    assert first["surname"] == "ROSSI" and first["municipality"] == "CREMONA"
    ids = [int(c["body"]["idOperazioneClient"]) for c in anpr_twin.calls if c["eservice"] == "C001"]
    assert len(ids) == 2 and ids[1] == ids[0] + 1
    assert [c["body"]["datiRichiesta"]["motivoRichiesta"] for c in anpr_twin.calls] == ["prot. 1/2026",
                                                                                       "prot. 2/2026"]
    trail = app.audit_trail("cremona")
    assert [(t["action"], t["reason"], t["actor"]) for t in trail][:2] == [
        ("lookup.C001", "prot. 2/2026", OPERATOR.fiscal_code), ("lookup.C001", "prot. 1/2026", OPERATOR.fiscal_code)]
    with pytest.raises(ReasonRequired):
        app.lookup_resident("cremona", OPERATOR, MARIO, " ")


def test_daily_quota_is_refused_before_anpr(app: AnprApplication, registry: TenantRegistry,
                                            anpr_twin: AnprTwin) -> None:
    tenant = registry.get("cremona")
    app.tenants = TenantRegistry({"cremona": tenant.model_copy(update={"pdnd": tenant.pdnd.model_copy(  # type: ignore[union-attr]
        update={"daily_quotas": {"C030": 2}})})})
    app.national_id("cremona", OPERATOR, MARIO, "prot. 3")
    app.national_id("cremona", OPERATOR, MARIO, "prot. 4")
    with pytest.raises(QuotaExhausted):
        app.national_id("cremona", OPERATOR, MARIO, "prot. 5")
    assert len(anpr_twin.calls) == 2
    app.clock = lambda: datetime.now(UTC).replace(year=2099)  # another day, a fresh quota
    assert app.national_id("cremona", OPERATOR, MARIO, "prot. 6")


def test_twin_keeps_its_own_daily_quota(http: httpx.Client, tenant: Tenant, anpr_twin: AnprTwin) -> None:
    anpr_twin.quotas["C030"] = 1
    client = AnprRestClient(http, sleep=lambda s: None)
    client.e002(tenant, eservices.eservice("C030"), body("C030"), AUDIT)
    with pytest.raises(UpstreamRateLimited):
        client.e002(tenant, eservices.eservice("C030"), body("C030", "SPT2"), AUDIT)


def test_429_and_5xx_are_retried_then_typed(http: httpx.Client, tenant: Tenant, anpr_twin: AnprTwin) -> None:
    sleeps: list[float] = []
    client = AnprRestClient(http, sleep=sleeps.append)
    anpr_twin.faults.arm({"status": 503, "count": 2})
    assert client.e002(tenant, eservices.eservice("C030"), body("C030", "SPT3"), AUDIT)
    assert sleeps == [0.2, 0.4]
    anpr_twin.faults.arm({"status": 500, "count": 3})
    with pytest.raises(AnprUnavailable):
        client.e002(tenant, eservices.eservice("C030"), body("C030", "SPT4"), AUDIT)
    anpr_twin.faults.arm({"malformed": True, "count": 1})
    with pytest.raises(AnprUnavailable, match="not JSON"):
        client.e002(tenant, eservices.eservice("C030"), body("C030", "SPT5"), AUDIT)


def test_c001_twin_answers_a_repeated_id_with_the_earlier_answer_and_refuses_a_lower_one(
        http: httpx.Client, tenant: Tenant) -> None:
    client = AnprRestClient(http, sleep=lambda s: None)
    c001 = eservices.eservice("C001")
    first = client.e002(tenant, c001, body("C001", "100"), AUDIT)
    assert client.e002(tenant, c001, body("C001", "100"), AUDIT) == first
    with pytest.raises(Exception, match="EN007"):
        client.e002(tenant, c001, body("C001", "99"), AUDIT)
