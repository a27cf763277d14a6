"""CIE login end to end: gateway -> spid (PostgreSQL, RabbitMQ) -> the CIE OP + trust anchor twin, as processes.

The twin's OP resolves the Comune's trust chain over HTTP (the gateway's Entity Configuration,
the anchor's statement), checks the signed request object, PKCE and private_key_jwt; the RP
resolves the OP's two-hop chain (OP -> intermediate -> anchor), validates the ID token and
decrypts the userinfo. Then a protected route, and a logout that also revokes the OP's tokens.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from jose import jwt

from tests.support.spid_login import LoginPlatform, cie_browser_login, isolated_login_platform

pytestmark = pytest.mark.e2e
CITIZEN = "BNCGLI90D45D150M"
OPERATOR = "RSSMRA85T10A562S"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginPlatform]:
    with isolated_login_platform(tmp_path_factory.mktemp("cie")) as running:
        yield running


def test_entity_configuration_is_served_as_the_rules_want(platform: LoginPlatform) -> None:
    reply = httpx.get(platform.url("/auth/cie/.well-known/openid-federation"), timeout=20)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/entity-statement+jwt")
    assert jwt.get_unverified_header(reply.text)["typ"] == "entity-statement+jwt"
    claims = jwt.get_unverified_claims(reply.text)
    assert claims["iss"] == claims["sub"] == platform.url("/auth/cie")
    assert claims["authority_hints"] == [f"{platform.cie}/ta"]


@pytest.mark.parametrize(("fiscal_code", "roles"), [(CITIZEN, ["citizen"]), (OPERATOR, ["citizen", "operator"])])
def test_cie_login_through_the_gateway_and_a_protected_route(platform: LoginPlatform, fiscal_code: str,
                                                             roles: list[str]) -> None:
    back = cie_browser_login(platform, fiscal_code, level=2)
    assert back.status_code == 200, back.text
    code = back.json()["code"]
    tokens = httpx.post(platform.url("/auth/token"), data={"grant_type": "authorization_code", "code": code},
                        timeout=20)
    assert tokens.status_code == 200, tokens.text
    me = httpx.get(f"{platform.gateway}/v1/me", timeout=20,
                   headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    assert me.status_code == 200, me.text
    body = me.json()
    assert (body["subject"], body["tenant"], body["level"], body["roles"]) == (fiscal_code, "cremona", 2, roles)


def test_cancelled_cie_login_is_a_readable_403(platform: LoginPlatform) -> None:
    back = cie_browser_login(platform, CITIZEN, action="cancel")
    assert back.status_code == 403 and back.headers["content-type"].startswith("application/problem+json")
    assert back.json()["code"] == "spid.login_cancelled"


def test_busy_provider_is_a_503_and_the_state_cannot_be_replayed(platform: LoginPlatform) -> None:
    faults = f"{platform.cie}/_faults"
    try:
        assert httpx.post(faults, json={"status": 429, "retry_after": 4}, timeout=5).status_code == 200
        back = cie_browser_login(platform, CITIZEN)
        assert back.status_code == 503, back.text
        assert back.json()["code"] == "cie.provider_unavailable" and "retry after 4" in back.json()["detail"]
    finally:
        httpx.post(faults, json={}, timeout=5)
    again = httpx.get(str(back.request.url), timeout=20)  # the same callback once more
    assert again.status_code == 400 and again.json()["code"] == "spid.request_unknown"


def test_the_rp_resolved_the_two_hop_chain_and_logout_revokes_at_the_op(platform: LoginPlatform) -> None:
    back = cie_browser_login(platform, CITIZEN, level=2)
    assert back.status_code == 200, back.text
    tokens = httpx.post(platform.url("/auth/token"), data={"grant_type": "authorization_code",
                                                           "code": back.json()["code"]}, timeout=20).json()
    spid_log = platform.processes[0].log()
    assert '"event": "cie_trust_chain_resolved"' in spid_log and '"hops": 2' in spid_log, spid_log[-2000:]
    out = httpx.post(platform.url("/auth/logout"), data={"refresh_token": tokens["refresh_token"]}, timeout=20,
                     headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert out.status_code == 200, out.text
    assert out.json()["revoked"] is True and out.json()["provider_revoked"] is True
