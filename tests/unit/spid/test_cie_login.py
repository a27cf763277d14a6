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
from services.spid.domain.federation import STATEMENT_MEDIA_TYPE, WELL_KNOWN, public_jwk, sign_jwt, sign_statement
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


def pinned_anchor() -> str:
    return json.dumps({"keys": [public_jwk(key_and_cert("ta")[0])]})


def _tenant(**cie_options: Any) -> Tenant:
    key, cert = key_and_cert("sp-cremona")
    options: dict[str, Any] = {"trust_anchor_jwks": pinned_anchor(), **cie_options}
    cie = CieConfig(client_id=CLIENT_ID, provider=f"{TWIN}/op", trust_anchor=f"{TWIN}/ta",  # type: ignore[arg-type]
                    federation_key=SecretStr(key_and_cert("cie-fed")[0]),
                    signing_key=SecretStr(key_and_cert("cie-core")[0]),
                    encryption_key=SecretStr(key_and_cert("cie-enc")[0]), **options)
    return Tenant(id="cremona", name="Comune di Cremona", fiscal_code="00297960197", istat_code="019036",
                  ipa_code="c_d150", operators={"VRDLGU70A01D150D": ("operator",)},
                  spid=SpidConfig(entity_id="https://cremona.example.it/spid",  # type: ignore[arg-type]
                                  signing_key=SecretStr(key), signing_certificate=cert, cie=cie))


_MIGRATED: dict[str, bytes] = {}


def _database_url(tmp_path: Path, name: str) -> str:
    """A migrated SQLite file (migrations run once per test session, then the file is copied)."""
    if "spid" not in _MIGRATED:
        template = tmp_path / "template.sqlite3"
        upgrade("spid", f"sqlite:///{template}")
        _MIGRATED["spid"] = template.read_bytes()
    (tmp_path / name).write_bytes(_MIGRATED["spid"])
    return f"sqlite:///{tmp_path / name}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[LoginApplication, CieOpTwin, InProcess]]:
    url = _database_url(tmp_path, "spid.sqlite3")
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
    twin = world[1]
    assert len(twin.access) == 1 and not twin.refresh_tokens  # no offline_access asked: no OP refresh token
    out = app.logout("cremona", "VRDLGU70A01D150D", again["refresh_token"])
    assert out == {"revoked": True, "idp_logout": None, "provider_revoked": True}
    assert not twin.access and twin.revoked == 1  # the OP's access token was revoked at its revocation endpoint
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


# -- trust chains: intermediates, policies, expiry, trust marks, pinned anchor ------------------------
def _world(tmp_path: Path, federation_options: dict[str, Any] | None = None,
           tenant_options: dict[str, Any] | None = None) -> tuple[LoginApplication, CieOpTwin, InProcess]:
    url = _database_url(tmp_path, f"spid-{len(list(tmp_path.glob('spid-*')))}.sqlite3")
    federation = Federation(base=TWIN, ta_key=key_and_cert("ta")[0], op_federation_key=key_and_cert("op-fed")[0],
                            op_core_key=key_and_cert("op-core")[0], members=(CLIENT_ID,),
                            ia_key=key_and_cert("ia")[0], **(federation_options or {}))
    http: InProcess
    twin = CieOpTwin(federation, lambda u: http.get(u)[2])
    http = InProcess(twin)

    class NoSaml:
        def fetch(self, location: str) -> bytes:
            raise OSError("no SAML here")

    app = LoginApplication(Database(url), TenantRegistry({"cremona": _tenant(**(tenant_options or {}))}),
                           TokenIssuer(SigningKey(key_and_cert("gateway")[0])), NoSaml(), oidc=http)
    http.entity_configurations[CLIENT_ID + WELL_KNOWN] = lambda: app.cie_entity_configuration("cremona")
    return app, twin, http


def _exp(token: str) -> int:
    return int(jwt.get_unverified_claims(token)["exp"])


def test_two_hop_chain_through_an_intermediate_logs_in(tmp_path: Path) -> None:
    app, twin, http = _world(tmp_path, {"intermediate": True})
    chain = app.cie_chain("cremona")
    assert chain.authorities == (f"{TWIN}/ia",) and len(chain.statements) == 4  # OP EC, IA->OP, TA->IA, TA EC
    issuers = [jwt.get_unverified_claims(t)["iss"] for t in chain.statements]
    assert issuers == [f"{TWIN}/op", f"{TWIN}/ia", f"{TWIN}/ta", f"{TWIN}/ta"]
    assert f"{TWIN}/ia/fetch?sub=" + f"{TWIN}/op".replace(":", "%3A").replace("/", "%2F") in http.calls
    assert chain.expires_at == min(_exp(t) for t in chain.statements)
    op = chain.metadata["openid_provider"]  # the anchor's and the intermediate's policies, combined
    assert op["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert op["code_challenge_methods_supported"] == ["S256"] and op["response_types_supported"] == ["code"]
    assert chain.trust_marks == (twin.federation.op_mark,)
    callback = _to_callback(http, app.start_cie_login("cremona", level=2)["url"])
    done = app.complete_cie_login("cremona", state=callback["state"], code=callback["code"], issuer=callback["iss"])
    principal = TokenVerifier(app.tokens.jwks()).verify(app.exchange_code("cremona", done["code"])["access_token"])
    assert principal.subject == CITIZEN


@pytest.mark.parametrize(("intermediate", "fault", "reason"), [
    (True, "intermediate_bad_signature", "subordinate statement by .*/ia: JWTError"),
    (True, "expired_statement", "expired"),
    (False, "expired_statement", "expired"),
    (True, "foreign_anchor", "no trust chain"),
    (False, "foreign_anchor", "no trust chain"),
    (True, "policy_violation", "token_endpoint_auth_methods_supported"),
    (False, "policy_violation", "token_endpoint_auth_methods_supported"),
])
def test_a_broken_chain_is_refused(tmp_path: Path, intermediate: bool, fault: str, reason: str) -> None:
    app, _, _ = _world(tmp_path, {"intermediate": intermediate, "chain_faults": {fault}})
    with pytest.raises(FederationError, match=reason):
        app.start_cie_login("cremona")


def test_the_chain_is_cached_until_its_earliest_expiry(tmp_path: Path) -> None:
    moment = [dt.datetime.now(dt.UTC)]
    app, _, http = _world(tmp_path, {"intermediate": True})
    app.clock = lambda: moment[0]
    first = app.cie_chain("cremona")
    fetches = len(http.calls)
    assert app.cie_chain("cremona") is first and len(http.calls) == fetches  # served from the cache
    moment[0] = dt.datetime.fromtimestamp(first.expires_at - 30, dt.UTC)  # about to expire: resolved again
    assert app.cie_chain("cremona") is not first and len(http.calls) > fetches
    moment[0] = dt.datetime.fromtimestamp(first.expires_at + 10 ** 6, dt.UTC)  # past every statement's exp
    with pytest.raises(FederationError, match=r"expired|ExpiredSignature"):
        app.cie_chain("cremona")


def test_the_anchor_keys_are_pinned(tmp_path: Path) -> None:
    impostor = json.dumps({"keys": [public_jwk(key_and_cert("impostor")[0])]})
    app, _, _ = _world(tmp_path, tenant_options={"trust_anchor_jwks": impostor})
    with pytest.raises(FederationError, match="trust anchor configuration"):
        app.start_cie_login("cremona")
    discovered, _, _ = _world(tmp_path, tenant_options={"trust_anchor_jwks": None, "trust_anchor_discovery": True})
    assert discovered.cie_chain("cremona").trust_anchor == f"{TWIN}/ta"  # sandbox: explicit opt-in only


def test_production_configuration_must_pin_the_anchor() -> None:
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="pin the trust anchor"):
        _tenant(trust_anchor_jwks=None)
    with pytest.raises(ValidationError, match="JWKS of public RSA keys"):
        _tenant(trust_anchor_jwks=json.dumps({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}))


def test_required_trust_marks_are_verified(tmp_path: Path) -> None:
    op_mark = f"{TWIN}/ta/openid_provider/public/"
    app, twin, _ = _world(tmp_path, {"intermediate": True}, {"required_trust_marks": (op_mark,)})
    assert app.cie_chain("cremona").trust_marks == (op_mark,)
    missing, _, _ = _world(tmp_path, tenant_options={"required_trust_marks": (f"{TWIN}/ta/other/",)})
    with pytest.raises(FederationError, match="lacks a valid trust mark"):
        missing.start_cie_login("cremona")
    forged, twin, _ = _world(tmp_path, tenant_options={"required_trust_marks": (op_mark,)})
    twin.federation.trust_mark = lambda mark_id, subject, now=None: sign_jwt(  # type: ignore[method-assign]
        {"iss": f"{TWIN}/op", "sub": subject, "id": mark_id, "iat": 1}, key_and_cert("op-fed")[0])
    with pytest.raises(FederationError, match="lacks a valid trust mark"):  # self-issued: not accredited
        forged.start_cie_login("cremona")


def test_the_rp_advertises_its_trust_marks_and_hints_and_the_op_requires_them(tmp_path: Path) -> None:
    app, twin, http = _world(tmp_path, {"require_rp_trust_mark": True})
    refused = http.client.get(urlsplit(app.start_cie_login("cremona")["url"]).path,
                              query_string=urlsplit(app.start_cie_login("cremona")["url"]).query)
    assert refused.status_code == 401 and "trust mark" in refused.get_data(as_text=True)
    mark = twin.federation.trust_mark(twin.federation.rp_mark, CLIENT_ID)
    app, twin, http = _world(tmp_path, {"require_rp_trust_mark": True}, {
        "trust_marks": ({"id": twin.federation.rp_mark, "trust_mark": mark},),
        "authority_hints": (f"{TWIN}/ta",)})
    claims = jwt.get_unverified_claims(app.cie_entity_configuration("cremona"))
    assert claims["authority_hints"] == [f"{TWIN}/ta"]
    assert claims["trust_marks"] == [{"id": twin.federation.rp_mark, "trust_mark": mark}]
    callback = _to_callback(http, app.start_cie_login("cremona")["url"])
    assert app.complete_cie_login("cremona", state=callback["state"], code=callback["code"])["code"]


def test_the_twin_resolve_endpoint_answers_the_verified_chain(tmp_path: Path) -> None:
    app, _, http = _world(tmp_path, {"intermediate": True})
    answer = http.client.get("/ta/resolve", query_string={"sub": f"{TWIN}/op", "anchor": f"{TWIN}/ta"})
    assert answer.status_code == 200 and answer.mimetype == "application/resolve-response+jwt"
    claims = jwt.decode(answer.get_data(as_text=True), public_jwk(key_and_cert("ta")[0]), algorithms=["RS256"],
                        options={"verify_aud": False})
    assert claims["sub"] == f"{TWIN}/op" and len(claims["trust_chain"]) == 4
    assert claims["metadata"] == app.cie_chain("cremona").metadata


# -- offline_access: the OP's refresh token, refresh at the OP, revocation at logout --------------------
def _offline_login(tmp_path: Path) -> tuple[LoginApplication, CieOpTwin, InProcess, dict[str, Any]]:
    app, twin, http = _world(tmp_path, tenant_options={"offline_access": True})
    url = app.start_cie_login("cremona", level=1)["url"]  # refresh tokens are for L1-capable logins
    request = jwt.get_unverified_claims(parse_qs(urlsplit(url).query)["request"][0])
    assert request["scope"] == "openid offline_access" and "consent" in request["prompt"].split()
    assert "sub" not in request  # a request object must not double as a client assertion
    callback = _to_callback(http, url)
    done = app.complete_cie_login("cremona", state=callback["state"], code=callback["code"])
    return app, twin, http, app.exchange_code("cremona", done["code"])


def test_offline_access_refreshes_at_the_provider_and_rotates_its_token(tmp_path: Path) -> None:
    app, twin, http, tokens = _offline_login(tmp_path)
    first_op_refresh = set(twin.refresh_tokens)
    assert len(first_op_refresh) == 1
    stored = app.db.engine.connect().execute(__import__("sqlalchemy").text(
        "select provider_tokens from spid_sessions")).scalar_one()
    assert next(iter(first_op_refresh)) not in stored  # sealed (JWE to our key), not in clear
    again = app.refresh("cremona", tokens["refresh_token"])
    assert http.calls.count(f"{TWIN}/op/token") == 2  # the code, then the refresh_token grant
    assert set(twin.refresh_tokens) and set(twin.refresh_tokens).isdisjoint(first_op_refresh)  # rotated at the OP
    assert TokenVerifier(app.tokens.jwks()).verify(again["access_token"]).subject == CITIZEN
    out = app.logout("cremona", CITIZEN, again["refresh_token"])
    assert http.calls.count(f"{TWIN}/op/revocation") == 2  # the access token, then the refresh token
    assert out["provider_revoked"] is True and not twin.refresh_tokens and not twin.access


def test_a_grant_ended_at_the_provider_ends_our_session(tmp_path: Path) -> None:
    app, twin, _, tokens = _offline_login(tmp_path)
    twin.refresh_tokens.clear()  # the citizen revoked the consent at the OP
    with pytest.raises(InvalidGrant, match="provider ended"):
        app.refresh("cremona", tokens["refresh_token"])
    with pytest.raises(InvalidGrant):  # and our session is gone for good
        app.refresh("cremona", tokens["refresh_token"])


def test_the_twin_refuses_refresh_and_revocation_without_our_key(tmp_path: Path) -> None:
    _, twin, http, _ = _offline_login(tmp_path)
    op_refresh = next(iter(twin.refresh_tokens))
    forged = {"grant_type": "refresh_token", "refresh_token": op_refresh, "client_id": CLIENT_ID,
              "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
              "client_assertion": sign_jwt({"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": f"{TWIN}/op/token",
                                            "iat": 1, "exp": 2 ** 31}, key_and_cert("impostor")[0])}
    assert http.client.post("/op/token", data=forged).status_code == 401
    forged_revocation = {**forged, "token": op_refresh}
    assert http.client.post("/op/revocation", data=forged_revocation).status_code == 401
    assert op_refresh not in twin.refresh_tokens  # single use: the forged attempt consumed it at the OP


def test_no_provider_refresh_token_above_l1(tmp_path: Path) -> None:
    app, twin, http = _world(tmp_path, tenant_options={"offline_access": True})
    callback = _to_callback(http, app.start_cie_login("cremona", level=2)["url"])
    done = app.complete_cie_login("cremona", state=callback["state"], code=callback["code"])
    tokens = app.exchange_code("cremona", done["code"])
    assert not twin.refresh_tokens
    app.refresh("cremona", tokens["refresh_token"])  # our own refresh still works, without the OP
    assert http.calls.count(f"{TWIN}/op/token") == 1


def test_a_trust_mark_from_an_issuer_the_anchor_accredits(tmp_path: Path) -> None:
    """The OP's mark is issued by the intermediate: its keys come from the intermediate's own chain."""
    op_mark = f"{TWIN}/ta/openid_provider/public/"
    app, twin, http = _world(tmp_path, {"intermediate": True, "intermediate_marks": True},
                             {"required_trust_marks": (op_mark,)})
    mark = twin.federation.provider_configuration()
    assert jwt.get_unverified_claims(jwt.get_unverified_claims(mark)["trust_marks"][0]["trust_mark"])["iss"] == (
        f"{TWIN}/ia")
    assert app.cie_chain("cremona").trust_marks == (op_mark,)
    assert http.calls.count(f"{TWIN}/ia" + WELL_KNOWN) >= 2  # the OP's chain, then the issuer's own chain
    twin.federation.intermediate_marks = False  # the anchor no longer lists the intermediate ...
    twin.federation.trust_mark = lambda mark_id, subject, now=None: sign_jwt(  # type: ignore[method-assign]
        {"iss": f"{TWIN}/ia", "sub": subject, "id": mark_id, "iat": 1}, key_and_cert("ia")[0])
    with pytest.raises(FederationError, match="lacks a valid trust mark"):  # ... so its mark is not accepted
        app.cie_chain("cremona", refresh=True)
