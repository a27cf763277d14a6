"""CIE login in-process: the RP (LoginApplication, SQLite) against the OP + trust anchor twin (WSGI).

The OidcHttp port is implemented by routing URLs to the twin's WSGI app and to the RP's own
Entity Configuration, so every JWS/JWE on the way is real. Then one thing at a time is broken.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from jose import jwt
from pydantic import SecretStr
from werkzeug.test import Client

from sandbox.cie_op.app import CieOpTwin
from sandbox.cie_op.provider import Federation
from services.spid.application import LoginApplication
from services.spid.domain.errors import (
    FederationError,
    InvalidGrant,
    LoginCancelled,
    ProviderUnavailable,
    ResponseRejected,
    UnknownRequest,
)
from services.spid.domain.federation import STATEMENT_MEDIA_TYPE, WELL_KNOWN, public_jwk, sign_statement
from sportello.db import Database
from sportello.migrate import upgrade
from sportello.tenants import CieConfig, SpidConfig, Tenant, TenantRegistry
from sportello.tokens import SigningKey, TokenIssuer, TokenVerifier
from tests.support.spid import key_and_cert

TWIN = "https://cie.twin.example.it"
CLIENT_ID = "https://cremona.example.it/v1/tenants/cremona/auth/cie"
CITIZEN = "BNCGLI90D45D150M"


class InProcess:
    """The OidcHttp port over the twin's WSGI app and the RP's own Entity Configuration."""

    def __init__(self, twin: CieOpTwin) -> None:
        self.client = Client(twin)
        self.entity_configurations: dict[str, Any] = {}
        self.calls: list[str] = []

    def _answer(self, response: Any) -> tuple[int, str, str]:
        if response.status_code == 429 or response.status_code >= 500:
            raise ProviderUnavailable(f"the CIE provider answered {response.status_code}")
        return response.status_code, response.headers.get("Content-Type", ""), response.get_data(as_text=True)

    def get(self, url: str, *, bearer: str | None = None) -> tuple[int, str, str]:
        self.calls.append(url)
        if url in self.entity_configurations:
            return 200, STATEMENT_MEDIA_TYPE, self.entity_configurations[url]()
        parts = urlsplit(url)
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return self._answer(self.client.get(parts.path, query_string=parts.query, headers=headers))

    def post_form(self, url: str, data: dict[str, str]) -> tuple[int, str, str]:
        self.calls.append(url)
        return self._answer(self.client.post(urlsplit(url).path, data=data))


def _tenant() -> Tenant:
    key, cert = key_and_cert("sp-cremona")
    cie = CieConfig(client_id=CLIENT_ID, provider=f"{TWIN}/op", trust_anchor=f"{TWIN}/ta",  # type: ignore[arg-type]
                    federation_key=SecretStr(key_and_cert("cie-fed")[0]),
                    signing_key=SecretStr(key_and_cert("cie-core")[0]),
                    encryption_key=SecretStr(key_and_cert("cie-enc")[0]))
    return Tenant(id="cremona", name="Comune di Cremona", fiscal_code="00297960197", istat_code="019036",
                  ipa_code="c_d150", operators={"VRDLGU70A01D150D": ("operator",)},
                  spid=SpidConfig(entity_id="https://cremona.example.it/spid",  # type: ignore[arg-type]
                                  signing_key=SecretStr(key), signing_certificate=cert, cie=cie))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[LoginApplication, CieOpTwin, InProcess]]:
    url = f"sqlite:///{tmp_path / 'spid.sqlite3'}"
    upgrade("spid", url)
    database = Database(url)
    federation = Federation(base=TWIN, ta_key=key_and_cert("ta")[0], op_federation_key=key_and_cert("op-fed")[0],
                            op_core_key=key_and_cert("op-core")[0], members=(CLIENT_ID,))
    http: InProcess
    twin = CieOpTwin(federation, lambda u: http.get(u)[2])
    http = InProcess(twin)

    class NoSaml:
        def fetch(self, location: str) -> bytes:
            raise OSError("no SAML here")

    app = LoginApplication(database, TenantRegistry({"cremona": _tenant()}),
                           TokenIssuer(SigningKey(key_and_cert("gateway")[0])), NoSaml(), oidc=http)
    http.entity_configurations[CLIENT_ID + WELL_KNOWN] = lambda: app.cie_entity_configuration("cremona")
    yield app, twin, http
    database.dispose()


def _to_callback(http: InProcess, url: str, *, fiscal_code: str = CITIZEN, action: str = "login",
                 level: int | None = None) -> dict[str, str]:
    parts = urlsplit(url)
    page = http.client.get(parts.path, query_string=parts.query)
    assert page.status_code == 200, page.get_data(as_text=True)
    form = {"ticket": page.headers["X-Cie-Ticket"], "fiscal_code": fiscal_code, "action": action}
    if level:
        form["level"] = str(level)
    back = http.client.post("/op/login", data=form)
    assert back.status_code == 302
    location = back.headers["Location"]
    assert location.startswith(CLIENT_ID + "/callback?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_cie_login_end_to_end_in_process(world: tuple[LoginApplication, CieOpTwin, InProcess]) -> None:
    app, _, http = world
    started = app.start_cie_login("cremona", level=2)
    callback = _to_callback(http, started["url"])
    done = app.complete_cie_login("cremona", state=callback["state"], code=callback["code"], issuer=callback["iss"])
    tokens = app.exchange_code("cremona", done["code"])
    principal = TokenVerifier(app.tokens.jwks()).verify(tokens["access_token"])
    assert (principal.subject, principal.level, principal.roles) == (CITIZEN, 2, ("citizen",))
    assert f"{TWIN}/op/token" in http.calls and f"{TWIN}/op/userinfo" in http.calls
    with pytest.raises(UnknownRequest):  # the state is single use
        app.complete_cie_login("cremona", state=callback["state"], code=callback["code"])


def test_the_authorization_request_follows_the_rules(world: tuple[LoginApplication, CieOpTwin, InProcess]) -> None:
    app, _, _ = world
    url = app.start_cie_login("cremona", level=3)["url"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{TWIN}/op/authorization?")
    assert query["scope"] == "openid" and query["code_challenge_method"] == "S256"
    header = jwt.get_unverified_header(query["request"])
    claims = jwt.get_unverified_claims(query["request"])
    assert header["alg"] == "RS256" and header["kid"] == public_jwk(key_and_cert("cie-core")[0])["kid"]
    assert claims["iss"] == claims["client_id"] == CLIENT_ID and f"{TWIN}/op" in claims["aud"]
    assert len(claims["state"]) >= 32 and claims["state"].isalnum()
    assert len(claims["nonce"]) >= 32 and claims["nonce"].isalnum()
    assert claims["code_challenge"] == query["code_challenge"] and claims["acr_values"].endswith("SpidL3")
    assert claims["redirect_uri"] == CLIENT_ID + "/callback"


def test_cancel_is_a_readable_error(world: tuple[LoginApplication, CieOpTwin, InProcess]) -> None:
    app, _, http = world
    callback = _to_callback(http, app.start_cie_login("cremona")["url"], action="cancel")
    assert callback["error"] == "access_denied"
    with pytest.raises(LoginCancelled):
        app.complete_cie_login("cremona", state=callback["state"], error=callback["error"])


def test_lower_level_than_requested_is_refused(world: tuple[LoginApplication, CieOpTwin, InProcess]) -> None:
    from services.spid.domain.errors import LevelTooLow
    app, _, http = world
    callback = _to_callback(http, app.start_cie_login("cremona", level=3)["url"], level=2)
    with pytest.raises(LevelTooLow):
        app.complete_cie_login("cremona", state=callback["state"], code=callback["code"])


def test_mix_up_and_forged_code_are_refused(world: tuple[LoginApplication, CieOpTwin, InProcess]) -> None:
    app, _, http = world
    callback = _to_callback(http, app.start_cie_login("cremona")["url"])
    with pytest.raises(ResponseRejected, match="mix-up"):
        app.complete_cie_login("cremona", state=callback["state"], code=callback["code"], issuer="https://evil.example")
    callback = _to_callback(http, app.start_cie_login("cremona")["url"])
    from services.spid.domain.errors import AuthenticationFailed
    with pytest.raises(AuthenticationFailed):
        app.complete_cie_login("cremona", state=callback["state"], code="forged-code")


def test_op_faults_are_typed(world: tuple[LoginApplication, CieOpTwin, InProcess]) -> None:
    app, twin, http = world
    callback = _to_callback(http, app.start_cie_login("cremona")["url"])
    twin.set_faults({"status": 429, "retry_after": 3})
    with pytest.raises(ProviderUnavailable):
        app.complete_cie_login("cremona", state=callback["state"], code=callback["code"])
    twin.set_faults({"malformed": True})
    callback = _to_callback(http, app.start_cie_login("cremona")["url"])
    with pytest.raises(ResponseRejected, match="JWE"):
        app.complete_cie_login("cremona", state=callback["state"], code=callback["code"])


def test_an_untrusted_provider_is_refused(world: tuple[LoginApplication, CieOpTwin, InProcess]) -> None:
    """The OP's configuration is signed with a key the trust anchor does not vouch for."""
    app, twin, _ = world
    vouched = key_and_cert("op-fed")[0]
    twin.federation.op_federation_key = key_and_cert("impostor")[0]

    def statement_with_the_vouched_key(subject: str, fetch: Any, now: int | None = None) -> str:
        issued = int(dt.datetime.now(dt.UTC).timestamp())
        return sign_statement({"iss": twin.federation.trust_anchor, "sub": subject, "iat": issued,
                               "exp": issued + 600, "jwks": {"keys": [public_jwk(vouched)]}}, twin.federation.ta_key)

    twin.federation.subordinate_statement = statement_with_the_vouched_key  # type: ignore[method-assign]
    with pytest.raises(FederationError, match="does not vouch"):
        app.start_cie_login("cremona")


def test_the_refresh_of_a_cie_session_works_like_spid(world: tuple[LoginApplication, CieOpTwin, InProcess]) -> None:
    app, _, http = world
    callback = _to_callback(http, app.start_cie_login("cremona")["url"], fiscal_code="VRDLGU70A01D150D")
    done = app.complete_cie_login("cremona", state=callback["state"], code=callback["code"])
    tokens = app.exchange_code("cremona", done["code"])
    again = app.refresh("cremona", tokens["refresh_token"])
    assert TokenVerifier(app.tokens.jwks()).verify(again["access_token"]).roles == ("citizen", "operator")
    out = app.logout("cremona", "VRDLGU70A01D150D", again["refresh_token"])
    assert out == {"revoked": True, "idp_logout": None}
    with pytest.raises(InvalidGrant):
        app.refresh("cremona", again["refresh_token"])


def test_entity_configuration_is_self_signed_with_the_rp_metadata(
        world: tuple[LoginApplication, CieOpTwin, InProcess]) -> None:
    app, _, _ = world
    token = app.cie_entity_configuration("cremona")
    assert jwt.get_unverified_header(token)["typ"] == "entity-statement+jwt"
    claims = jwt.decode(token, public_jwk(key_and_cert("cie-fed")[0]), algorithms=["RS256"],
                        options={"verify_aud": False})
    rp = claims["metadata"]["openid_relying_party"]
    assert claims["iss"] == claims["sub"] == CLIENT_ID == rp["client_id"]
    assert {k["use"] for k in rp["jwks"]["keys"]} == {"sig", "enc"}
    assert json.dumps(claims).count("PRIVATE") == 0 and "d" not in rp["jwks"]["keys"][0]
