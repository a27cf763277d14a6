"""The spid service over real RPC (RabbitMQ, PostgreSQL, its own process), each entrypoint at least once.

The SAML step goes through the IdP twin as a real server: `start_login` gives the URL the browser
would follow, the twin answers with a signed Response, and `complete_login` consumes it.
Typed errors cross the wire as the same classes (the gateway maps them to problem+json).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from jose import jwt
from lxml import etree

from services.spid.domain.errors import InvalidGrant, ResponseRejected, UnknownIdentityProvider, UnknownRequest
from sportello.edge.rpc import register_remote_errors
from sportello.errors import Forbidden, ValidationFailed
from sportello.tokens import TokenVerifier
from tests.support.servers import Databases
from tests.support.spid_login import LoginPlatform, login_platform, post_form

pytestmark = pytest.mark.integration
CITIZEN = "RSSMRA85T10A562S"


@pytest.fixture(scope="module")
def platform(amqp_uri: str, databases: Databases, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[LoginPlatform]:
    register_remote_errors()
    with login_platform(tmp_path_factory.mktemp("spid-rpc"), amqp_uri, databases) as running:
        yield running


def saml_response_for(platform: LoginPlatform, url: str, fiscal_code: str) -> dict[str, str]:
    """The twin's signed Response for the request at `url` (what the browser would post to the ACS)."""
    sso = httpx.get(url, timeout=20)
    assert sso.status_code == 200, sso.text
    answer = httpx.post(f"{platform.idp}/login", timeout=20,
                        data={"ticket": sso.headers["X-Spid-Ticket"], "fiscal_code": fiscal_code})
    return post_form(answer.text)[1]


def test_every_entrypoint_over_rpc(platform: LoginPlatform) -> None:
    with platform.rpc() as cluster:
        spid = cluster.spid
        assert spid.health()["status"] == "ok"
        jwks = spid.jwks()
        assert [k["alg"] for k in jwks["keys"]] == ["RS256"]

        metadata = etree.fromstring(spid.sp_metadata("cremona").encode())
        assert metadata.get("entityID") == "https://sportello.comune.cremona.it/spid"

        idps = spid.identity_providers("cremona")
        assert [i["entity_id"] for i in idps] == [platform.idp] and all(i["name"] for i in idps)

        started = spid.start_login("cremona", platform.idp, level=2, binding="redirect")
        assert started["binding"] == "redirect" and started["url"].startswith(f"{platform.idp}/sso?")
        fields = saml_response_for(platform, started["url"], CITIZEN)

        done = spid.complete_login("cremona", fields["SAMLResponse"], fields["RelayState"])
        assert set(done) == {"code", "expires_in", "return_url"} and done["return_url"] is None

        tokens = spid.exchange_code("cremona", done["code"])
        principal = TokenVerifier(jwks).verify(tokens["access_token"])
        assert (principal.subject, principal.tenant, principal.level) == (CITIZEN, "cremona", 2)
        assert principal.roles == ("citizen", "operator")  # Mario Rossi is Cremona's operator

        refreshed = spid.refresh("cremona", tokens["refresh_token"])
        assert refreshed["refresh_token"] != tokens["refresh_token"]

        with pytest.raises(Forbidden):  # someone else's session
            spid.logout("cremona", "VRDLGU70A01D150D", refreshed["refresh_token"])
        out = spid.logout("cremona", CITIZEN, refreshed["refresh_token"])
        assert out["revoked"] is True and out["idp_logout"]["url"].startswith(f"{platform.idp}/slo?")
        with pytest.raises(InvalidGrant):
            spid.refresh("cremona", refreshed["refresh_token"])

        # the IdP confirms our LogoutRequest; its LogoutResponse (HTTP-Redirect) goes to single_logout
        at_idp = httpx.get(out["idp_logout"]["url"], timeout=20)
        assert at_idp.status_code == 302, at_idp.text
        confirmed = spid.single_logout("cremona", "redirect", query=urlsplit(at_idp.headers["Location"]).query)
        assert confirmed == {"kind": "logout_response", "status": "logged_out"}


def test_cie_entrypoints_over_rpc(platform: LoginPlatform) -> None:
    with platform.rpc() as cluster:
        spid = cluster.spid
        statement = spid.cie_entity_configuration("cremona")
        assert jwt.get_unverified_claims(statement)["sub"] == platform.url("/auth/cie")
        started = spid.start_cie_login("cremona", level=2)
        picker = httpx.get(started["url"], timeout=20)
        assert picker.status_code == 200, picker.text
        back = httpx.post(f"{platform.cie}/op/login", timeout=20,
                          data={"ticket": picker.headers["X-Cie-Ticket"], "fiscal_code": CITIZEN})
        callback = {k: v[0] for k, v in parse_qs(urlsplit(back.headers["Location"]).query).items()}
        done = spid.complete_cie_login("cremona", callback["state"], code=callback["code"], issuer=callback["iss"])
        principal = TokenVerifier(spid.jwks()).verify(spid.exchange_code("cremona", done["code"])["access_token"])
        assert (principal.subject, principal.level) == (CITIZEN, 2)
        with pytest.raises(UnknownRequest):
            spid.complete_cie_login("cremona", callback["state"], code=callback["code"])


def test_typed_errors_cross_the_wire(platform: LoginPlatform) -> None:
    with platform.rpc() as cluster:
        spid = cluster.spid
        with pytest.raises(ResponseRejected):
            spid.complete_login("cremona", "PHNhbWxwOlJlc3BvbnNlLz4=")  # <samlp:Response/>, no namespace
        with pytest.raises(UnknownIdentityProvider):
            spid.start_login("cremona", "https://idp.unknown.example.it", level=2)
        with pytest.raises(ValidationFailed):
            spid.start_login("cremona", platform.idp, level=2, binding="artifact")
        with pytest.raises(InvalidGrant):
            spid.exchange_code("cremona", "not-a-code")


def test_post_binding_and_level_one(platform: LoginPlatform) -> None:
    with platform.rpc() as cluster:
        started = cluster.spid.start_login("lodi", platform.idp, level=1, binding="post")
        assert started["binding"] == "post" and started["url"] == f"{platform.idp}/sso"
        assert "SAMLRequest" in started["form"] and 'onload="document.forms[0].submit()"' in started["html"]
        sso = httpx.post(started["url"], data=started["form"], timeout=20)
        assert sso.status_code == 200 and "livello 1" in sso.text
