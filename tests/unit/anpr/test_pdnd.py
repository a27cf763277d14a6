"""PDND vouchers: our client assertion is exactly what PDND wants, and the twin catches every mistake."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from jose import jws, jwt

from sandbox.pdnd.app import AUDIENCE, PdndTwin
from services.anpr.adapters.pdnd import PdndVoucherClient
from services.anpr.domain.errors import PdndRejected, PdndUnauthorized, UpstreamRateLimited
from services.anpr.domain.pdnd import CLIENT_ASSERTION_TYPE, VoucherCache, client_assertion, sha256_hex, token_form
from sportello.tenants import Tenant


def assertion(tenant: Tenant, **overrides: Any) -> str:
    assert tenant.pdnd is not None
    return client_assertion(client_id=tenant.pdnd.client_id, key_id=tenant.pdnd.key_id,
                            private_key_pem=tenant.pdnd.private_key.get_secret_value(),
                            audience=overrides.pop("audience", tenant.pdnd.assertion_audience),
                            purpose_id=overrides.pop("purpose_id", tenant.pdnd.purposes["C030"]), **overrides)


def forged(tenant: Tenant, claims: dict[str, Any], headers: dict[str, Any], algorithm: str = "RS256",
           key: str | None = None) -> str:
    assert tenant.pdnd is not None
    return str(jws.sign(claims, key or tenant.pdnd.private_key.get_secret_value(), headers=headers,
                        algorithm=algorithm))


def good_claims(tenant: Tenant) -> dict[str, Any]:
    assert tenant.pdnd is not None
    now = int(time.time())
    return {"iss": tenant.pdnd.client_id, "sub": tenant.pdnd.client_id, "aud": AUDIENCE, "jti": str(uuid.uuid4()),
            "iat": now, "exp": now + 60, "purposeId": tenant.pdnd.purposes["C030"]}


def post(twin: PdndTwin, tenant: Tenant, token: str) -> httpx.Response:
    assert tenant.pdnd is not None
    with httpx.Client(transport=httpx.WSGITransport(app=twin)) as client:
        return client.post("http://127.0.0.1:8104/token.oauth2", data=token_form(tenant.pdnd.client_id, token))


# -- the assertion we build ----------------------------------------------------------------------


def test_assertion_header_and_claims_are_exactly_what_pdnd_wants(tenant: Tenant) -> None:
    assert tenant.pdnd is not None
    token = assertion(tenant, now=1_700_000_000, jti="j-1")
    header = jws.get_unverified_header(token)
    claims = jwt.get_unverified_claims(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": tenant.pdnd.key_id}
    assert claims == {"iss": tenant.pdnd.client_id, "sub": tenant.pdnd.client_id,
                      "aud": "auth.sandbox.interop.pagopa.it/client-assertion", "jti": "j-1",
                      "iat": 1_700_000_000, "exp": 1_700_000_120, "purposeId": tenant.pdnd.purposes["C030"]}
    assert "nbf" not in claims


def test_assertion_digest_binds_the_tracking_evidence(tenant: Tenant) -> None:
    claims = jwt.get_unverified_claims(assertion(tenant, digest_of="a.b.c"))
    assert claims["digest"] == {"alg": "SHA256", "value": sha256_hex("a.b.c")}
    assert len(claims["digest"]["value"]) == 64


def test_token_form_is_the_contract_form(tenant: Tenant) -> None:
    form = token_form("cid", "tok")
    assert form == {"client_id": "cid", "client_assertion": "tok", "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "grant_type": "client_credentials"}


# -- the twin validates exactly ------------------------------------------------------------------


def test_twin_issues_a_voucher_shaped_as_pdnd_does(pdnd_twin: PdndTwin, tenant: Tenant) -> None:
    response = post(pdnd_twin, tenant, assertion(tenant, digest_of="x.y.z"))
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    assert response.headers["X-Rate-Limit-Limit"]
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    header = jws.get_unverified_header(body["access_token"])
    claims = jwt.get_unverified_claims(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    assert claims["aud"].endswith("/MinInternoPortaANPR/C030-servizioAccertamentoIdUnicoNazionale/v1")
    assert claims["nbf"] == claims["iat"] and claims["digest"]["value"] == sha256_hex("x.y.z")
    assert {"purposeId", "producerId", "consumerId", "eserviceId", "descriptorId", "client_id", "jti"} <= set(claims)
    jws.verify(body["access_token"], pdnd_twin.authority.jwks(), algorithms=["RS256"])


@pytest.mark.parametrize("mutate, status, detail", [
    (lambda c, h: c.update(nbf=c["iat"]), 400, "nbf"),
    (lambda c, h: c.update(aud="auth.interop.pagopa.it/client-assertion"), 401, "aud"),
    (lambda c, h: c.update(aud="https://auth.sandbox.interop.pagopa.it/token.oauth2"), 401, "aud"),
    (lambda c, h: c.pop("purposeId"), 400, "purposeId"),
    (lambda c, h: c.update(purposeId=str(uuid.uuid4())), 401, "purposeId"),
    (lambda c, h: c.update(sub="someone-else"), 400, "iss and sub"),
    (lambda c, h: c.update(exp=c["iat"] - 10), 401, "expired"),
    (lambda c, h: c.update(extra="x"), 400, "unexpected"),
    (lambda c, h: c.update(digest={"alg": "SHA1", "value": "ab"}), 400, "digest"),
    (lambda c, h: c.update(exp=str(c["exp"])), 400, "numeric"),
    (lambda c, h: h.update(kid="unknown-kid"), 401, "kid"),
    (lambda c, h: h.update(x5c=["MIIB"]), 400, "exactly kid, alg, typ"),
    (lambda c, h: h.update(typ="at+jwt"), 400, "typ"),
])
def test_twin_rejects_each_assertion_mistake(pdnd_twin: PdndTwin, tenant: Tenant, mutate: Any, status: int,
                                             detail: str) -> None:
    claims, headers = good_claims(tenant), {"kid": tenant.pdnd.key_id, "typ": "JWT"}  # type: ignore[union-attr]
    mutate(claims, headers)
    response = post(pdnd_twin, tenant, forged(tenant, claims, headers))
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert detail in response.json()["detail"]


def test_twin_rejects_a_foreign_signature_and_other_algorithms(pdnd_twin: PdndTwin, tenant: Tenant,
                                                               registry: Any) -> None:
    claims, headers = good_claims(tenant), {"kid": tenant.pdnd.key_id, "typ": "JWT"}  # type: ignore[union-attr]
    other_key = registry.get("cremona").spid.signing_key.get_secret_value()
    assert post(pdnd_twin, tenant, forged(tenant, claims, headers, key=other_key)).status_code == 401
    hs = forged(tenant, good_claims(tenant), headers, algorithm="HS256", key="secret")
    response = post(pdnd_twin, tenant, hs)
    assert response.status_code == 400 and "RS256" in response.json()["detail"]


def test_twin_rejects_a_replayed_jti(pdnd_twin: PdndTwin, tenant: Tenant) -> None:
    token = assertion(tenant)
    assert post(pdnd_twin, tenant, token).status_code == 200
    replay = post(pdnd_twin, tenant, token)
    assert replay.status_code == 401 and "jti" in replay.json()["detail"]


def test_twin_wants_a_form_body(pdnd_twin: PdndTwin, tenant: Tenant) -> None:
    assert tenant.pdnd is not None
    with httpx.Client(transport=httpx.WSGITransport(app=pdnd_twin)) as client:
        response = client.post("http://127.0.0.1:8104/token.oauth2",
                               json=token_form(tenant.pdnd.client_id, assertion(tenant)))
    assert response.status_code == 400


# -- the client: cache, renewal and typed errors ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_client_caches_vouchers_per_tenant_purpose_and_digest_until_shortly_before_expiry(
        http: httpx.Client, pdnd_twin: PdndTwin, tenant: Tenant) -> None:
    clock = Clock()
    pdnd_twin.authority.clock = clock
    client = PdndVoucherClient(http, clock=clock, sleep=lambda s: None, cache=VoucherCache(clock=clock))
    first = client.voucher(tenant, "C030", tracking_evidence="e1")
    assert client.voucher(tenant, "C030", tracking_evidence="e1") == first
    assert client.requests == 1
    client.voucher(tenant, "C001", tracking_evidence="e1")
    client.voucher(tenant, "C030", tracking_evidence="e2")
    assert client.requests == 3
    clock.now += 600 - 31  # 10-minute voucher, 30-second margin: still fine
    assert client.voucher(tenant, "C030", tracking_evidence="e1") == first
    clock.now += 2
    assert client.voucher(tenant, "C030", tracking_evidence="e1") != first
    assert client.requests == 4


def test_client_maps_pdnd_errors_to_typed_errors(http: httpx.Client, pdnd_twin: PdndTwin, tenant: Tenant) -> None:
    sleeps: list[float] = []
    client = PdndVoucherClient(http, sleep=sleeps.append)
    pdnd_twin.faults.arm({"status": 429, "retry_after": 2, "count": 3})
    with pytest.raises(UpstreamRateLimited):
        client.voucher(tenant, "C030", tracking_evidence=None)
    assert sleeps == [2.0, 2.0]
    pdnd_twin.faults.arm({"status": 429, "retry_after": 1, "count": 1})
    assert client.voucher(tenant, "C030", tracking_evidence=None)  # one 429, then a voucher
    pdnd_twin.faults.arm({"status": 400, "count": 1})
    with pytest.raises(PdndRejected):
        client.voucher(tenant, "C003", tracking_evidence=None)
    wrong_aud = tenant.model_copy(update={"pdnd": tenant.pdnd.model_copy(  # type: ignore[union-attr]
        update={"assertion_audience": "auth.interop.pagopa.it/client-assertion"})})
    with pytest.raises(PdndUnauthorized, match="aud"):
        client.voucher(wrong_aud, "C001", tracking_evidence=None)
