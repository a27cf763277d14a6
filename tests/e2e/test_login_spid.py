"""SPID login end to end: gateway → spid (PostgreSQL, RabbitMQ) → the SPID IdP twin, each its own process.

Covers the browser flow (Redirect and POST bindings) for a citizen and an operator, the one-time
code, `/v1/me`, user cancellation (nr22/nr25) as a readable 403, replay of a Response (409),
refresh rotation, logout revoking the refresh token, tenant isolation and the token attacks
(alg none, HS256 keyed with the public key, unknown kid, tampered payload, wrong audience,
expired) — each refused with problem+json 401 by the running gateway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jose import jwt

from sportello.tokens import AUDIENCE, ISSUER, SigningKey
from tests.support.spid import key_and_cert
from tests.support.spid_login import OTHER_TENANT, LoginPlatform, browser_login, isolated_login_platform, post_form

pytestmark = pytest.mark.e2e
CITIZEN = "BNCGLI90D45D150M"  # not an operator of Cremona
OPERATOR = "VRDLGU70A01D150D"  # operator and admin of Cremona (sandbox/tenants/cremona.yaml)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginPlatform]:
    with isolated_login_platform(tmp_path_factory.mktemp("login")) as running:
        yield running


def tokens_for(platform: LoginPlatform, fiscal_code: str, **kwargs: Any) -> dict[str, Any]:
    done = browser_login(platform, fiscal_code, **kwargs)
    assert done.acs.status_code == 200, done.acs.text
    assert done.acs.headers["Cache-Control"] == "no-store"
    code = done.acs.json()["code"]
    exchanged = httpx.post(platform.url("/auth/token", kwargs.get("tenant", "cremona")),
                           data={"grant_type": "authorization_code", "code": code}, timeout=20)
    assert exchanged.status_code == 200, exchanged.text
    again = httpx.post(platform.url("/auth/token", kwargs.get("tenant", "cremona")),
                       data={"grant_type": "authorization_code", "code": code}, timeout=20)
    assert again.status_code == 400 and again.json()["code"] == "auth.invalid_grant"  # one-time code
    return dict(exchanged.json())


def me(platform: LoginPlatform, access_token: str) -> httpx.Response:
    return httpx.get(f"{platform.gateway}/v1/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=20)


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_citizen_logs_in_through_the_twin_and_calls_me(platform: LoginPlatform, binding: str) -> None:
    tokens = tokens_for(platform, CITIZEN, binding=binding, level=2)
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
    reply = me(platform, tokens["access_token"])
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["subject"], body["tenant"], body["level"], body["roles"]) == (CITIZEN, "cremona", 2, ["citizen"])


def test_operator_gets_the_roles_the_tenant_grants(platform: LoginPlatform) -> None:
    tokens = tokens_for(platform, OPERATOR, level=3)
    body = me(platform, tokens["access_token"]).json()
    assert body["subject"] == OPERATOR and body["level"] == 3
    assert body["roles"] == ["admin", "citizen", "operator"]
    # the same person at another Comune, which grants nothing: a citizen only, of that Comune
    elsewhere = me(platform, tokens_for(platform, OPERATOR, tenant=OTHER_TENANT)["access_token"]).json()
    assert (elsewhere["tenant"], elsewhere["roles"]) == (OTHER_TENANT, ["citizen"])


@pytest.mark.parametrize(("error", "action"), [(22, "login"), (None, "cancel")])
def test_cancelled_login_is_a_readable_4xx(platform: LoginPlatform, error: int | None, action: str) -> None:
    done = browser_login(platform, CITIZEN, action=action, error=error)
    assert done.acs.status_code == 403
    assert done.acs.headers["content-type"].startswith("application/problem+json")
    problem = done.acs.json()
    assert problem["code"] == "spid.login_cancelled"
    assert f"nr{error or 25}" in problem["detail"] and CITIZEN not in done.acs.text


def test_a_response_is_accepted_once(platform: LoginPlatform) -> None:
    done = browser_login(platform, CITIZEN)
    assert done.acs.status_code == 200
    replayed = httpx.post(platform.url("/auth/spid/acs"), data=done.fields, timeout=20)
    assert replayed.status_code == 400 and replayed.json()["code"] == "spid.request_unknown"


def test_refresh_rotates_and_logout_revokes(platform: LoginPlatform) -> None:
    tokens = tokens_for(platform, CITIZEN)
    refreshed = httpx.post(platform.url("/auth/token"), timeout=20,
                           data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert me(platform, new["access_token"]).json()["subject"] == CITIZEN
    reused = httpx.post(platform.url("/auth/token"), timeout=20,
                        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 400 and reused.json()["code"] == "auth.invalid_grant"

    bearer = {"Authorization": f"Bearer {new['access_token']}"}
    out = httpx.post(platform.url("/auth/logout"), headers=bearer, data={"refresh_token": new["refresh_token"]},
                     timeout=20)
    assert out.status_code == 200, out.text
    assert out.json()["revoked"] is True
    idp_logout = out.json()["idp_logout"]
    assert idp_logout["binding"] == "redirect" and idp_logout["url"].startswith(f"{platform.idp}/slo?SAMLRequest=")
    after = httpx.post(platform.url("/auth/token"), timeout=20,
                       data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]})
    assert after.status_code == 400 and after.json()["code"] == "auth.invalid_grant"


def test_a_token_of_one_tenant_is_refused_on_another_tenants_routes(platform: LoginPlatform) -> None:
    tokens = tokens_for(platform, CITIZEN)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    refused = httpx.post(platform.url("/auth/logout", OTHER_TENANT), headers=bearer,
                         data={"refresh_token": tokens["refresh_token"]}, timeout=20)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "access.forbidden"
    # and the refresh token of one tenant is no grant at the other
    crossed = httpx.post(platform.url("/auth/token", OTHER_TENANT), timeout=20,
                         data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert crossed.status_code == 400 and crossed.json()["code"] == "auth.invalid_grant"


# -- token attacks ----------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": CITIZEN, "tenant": "cremona", "level": 2,
            "roles": ["admin", "citizen", "operator"], "iat": now, "nbf": now, "exp": now + 600,
            "jti": "0b0e7f5c-2d4f-4a8e-9c61-4d7f6c0a9e11", **overrides}


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def forged_tokens(platform: LoginPlatform) -> dict[str, str]:
    real = SigningKey((platform.secrets_dir / "GATEWAY_TOKEN_SIGNING_KEY").read_text())
    kid = real.kid
    public_pem = real.public_jwk  # the JWKS anyone can read
    from jose import jwk as jose_jwk
    public = jose_jwk.construct(public_pem, "RS256").to_pem()
    hs_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, _claims())
    hs_signature = _b64(hmac.new(public, hs_input.encode(), hashlib.sha256).digest())
    stranger, _ = key_and_cert("attacker")
    genuine = jwt.encode(_claims(roles=["citizen"]), real.private_pem, algorithm="RS256", headers={"kid": kid})
    head, _payload, signature = genuine.split(".")
    return {
        "alg none": _unsigned({"alg": "none", "typ": "JWT", "kid": kid}, _claims()) + ".",
        "HS256 keyed with the public key": f"{hs_input}.{hs_signature}",
        "unknown kid": jwt.encode(_claims(), stranger, algorithm="RS256", headers={"kid": "f00dfeedf00dfeed"}),
        "known kid, other key": jwt.encode(_claims(), stranger, algorithm="RS256", headers={"kid": kid}),
        "tampered payload": f"{head}.{_b64(json.dumps(_claims()).encode())}.{signature}",
        "wrong audience": jwt.encode(_claims(aud="urn:someone:else"), real.private_pem, algorithm="RS256",
                                     headers={"kid": kid}),
        "expired": jwt.encode(_claims(iat=int(time.time()) - 3600, nbf=int(time.time()) - 3600,
                                      exp=int(time.time()) - 600), real.private_pem, algorithm="RS256",
                              headers={"kid": kid}),
    }


def test_forged_and_stale_tokens_are_refused_with_401(platform: LoginPlatform) -> None:
    # a control: the same claims signed properly are accepted, so each refusal below is the attack's
    real = SigningKey((platform.secrets_dir / "GATEWAY_TOKEN_SIGNING_KEY").read_text())
    control = jwt.encode(_claims(), real.private_pem, algorithm="RS256", headers={"kid": real.kid})
    assert me(platform, control).status_code == 200
    for attack, token in forged_tokens(platform).items():
        reply = me(platform, token)
        assert reply.status_code == 401, (attack, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json"), attack
        assert reply.json()["code"] == "auth.unauthenticated", attack


# -- single logout ----------------------------------------------------------------------------------
CREMONA_SP = "https://sportello.comune.cremona.it/spid"


@pytest.mark.parametrize("binding", ["post", "redirect"])
def test_idp_initiated_single_logout_revokes_the_session(platform: LoginPlatform, binding: str) -> None:
    tokens = tokens_for(platform, CITIZEN)
    with httpx.Client(timeout=20, follow_redirects=False) as browser:
        order = browser.post(f"{platform.idp}/_logout",
                             json={"sp": CREMONA_SP, "fiscal_code": CITIZEN, "binding": binding})
        if binding == "post":
            assert order.status_code == 200, order.text
            slo_url, fields = post_form(order.text)
            assert slo_url == platform.url("/auth/spid/slo")
            at_sp = browser.post(slo_url, data=fields)
            assert at_sp.status_code == 200 and at_sp.headers["content-type"].startswith("text/html"), at_sp.text
            idp_url, answer = post_form(at_sp.text)
            back = browser.post(idp_url, data=answer)
        else:
            assert order.status_code == 302, order.text
            assert order.headers["Location"].startswith(platform.url("/auth/spid/slo") + "?SAMLRequest=")
            at_sp = browser.get(order.headers["Location"])
            assert at_sp.status_code == 302, at_sp.text
            assert at_sp.headers["Location"].startswith(f"{platform.idp}/slo?SAMLResponse=")
            back = browser.get(at_sp.headers["Location"])
    assert back.status_code == 200, back.text  # the twin verified our signed LogoutResponse
    assert back.json()["status"] == "logged_out"
    after = httpx.post(platform.url("/auth/token"), timeout=20,
                       data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert after.status_code == 400 and after.json()["code"] == "auth.invalid_grant"


def test_sp_initiated_logout_is_confirmed_by_the_idps_logout_response(platform: LoginPlatform) -> None:
    tokens = tokens_for(platform, CITIZEN)
    out = httpx.post(platform.url("/auth/logout"), headers={"Authorization": f"Bearer {tokens['access_token']}"},
                     data={"refresh_token": tokens["refresh_token"]}, timeout=20).json()
    with httpx.Client(timeout=20, follow_redirects=False) as browser:
        at_idp = browser.get(out["idp_logout"]["url"])
        assert at_idp.status_code == 302, at_idp.text
        assert at_idp.headers["Location"].startswith(platform.url("/auth/spid/slo") + "?SAMLResponse=")
        confirmed = browser.get(at_idp.headers["Location"])
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json() == {"status": "logged_out", "tenant": "cremona"}
        replayed = browser.get(at_idp.headers["Location"])  # a LogoutResponse answers one request only
    assert replayed.status_code == 400 and replayed.json()["code"] == "spid.request_unknown"


def test_slo_without_a_saml_message_is_a_400(platform: LoginPlatform) -> None:
    reply = httpx.get(platform.url("/auth/spid/slo"), timeout=20)
    assert reply.status_code == 400 and reply.headers["content-type"].startswith("application/problem+json")


# -- twin faults ------------------------------------------------------------------------------------
def test_idp_twin_faults_429_with_retry_after_and_malformed_response(platform: LoginPlatform) -> None:
    faults = f"{platform.idp}/_faults"
    try:
        assert httpx.post(faults, json={"status": 429, "retry_after": 7}, timeout=5).status_code == 200
        start = httpx.get(platform.url("/auth/spid/login"), params={"idp": platform.idp}, timeout=20)
        busy = httpx.get(start.headers["Location"], timeout=20)
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "7"
        assert httpx.post(faults, json={"explode": True}, timeout=5).status_code == 400

        assert httpx.post(faults, json={"malformed": True}, timeout=5).status_code == 200
        done = browser_login(platform, CITIZEN)
        assert done.acs.status_code == 400, done.acs.text
        assert done.acs.json()["code"] == "spid.response_rejected"
    finally:
        httpx.post(faults, json={}, timeout=5)
