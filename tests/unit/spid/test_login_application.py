"""Login use cases on a real SQLite database: ACS -> code -> tokens, refresh rotation, logout, replay."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from sandbox.spid_idp import idp as twin
from services.spid.application import LoginApplication
from services.spid.domain.errors import AssertionReplayed, InvalidGrant, UnknownRequest
from sportello.db import Database
from sportello.errors import Forbidden, ValidationFailed
from sportello.migrate import upgrade
from sportello.tenants import SpidConfig, Tenant, TenantRegistry
from sportello.tokens import SigningKey, TokenIssuer, TokenVerifier
from tests.support.spid import IDP_ENTITY, key_and_cert, twin_idp

IDP = twin_idp()


class FakeMetadata:
    """The MetadataSource port, answering with the twin's metadata."""

    def fetch(self, location: str) -> bytes:
        return twin.idp_metadata(IDP)


def _tenant(tenant_id: str, operators: dict[str, tuple[str, ...]] | None = None) -> Tenant:
    key, cert = key_and_cert("sp-" + tenant_id)
    return Tenant(id=tenant_id, name=f"Comune di {tenant_id.title()}", fiscal_code="00297960197",
                  istat_code="019036", ipa_code="c_d150", operators=operators or {},
                  spid=SpidConfig(entity_id=f"https://{tenant_id}.example.it/spid",  # type: ignore[arg-type]
                                  signing_key=SecretStr(key), signing_certificate=cert,
                                  idp_metadata=("twin",)))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LoginApplication]:
    url = f"sqlite:///{tmp_path / 'spid.sqlite3'}"
    upgrade("spid", url)
    database = Database(url)
    tenants = TenantRegistry({"cremona": _tenant("cremona", {"VRDLGU70A01D150D": ("operator", "admin")}),
                              "lodi": _tenant("lodi")})
    key, _ = key_and_cert("gateway")
    yield LoginApplication(database, tenants, TokenIssuer(SigningKey(key)), FakeMetadata())
    database.dispose()


def _login(app: LoginApplication, tenant: str = "cremona", fiscal_code: str = "RSSMRA85T10A562S",
           **kwargs: object) -> tuple[str, dict[str, object]]:
    started = app.start_login(tenant, IDP_ENTITY, level=2, binding="redirect")
    read = twin.read_redirect(urlsplit(started["url"]).query,
                              [app.tenants.get(tenant).spid.signing_certificate])  # type: ignore[union-attr]
    acs = f"https://{tenant}.example.it/v1/tenants/{tenant}/auth/spid/acs"
    body = twin.response(IDP, read, acs_url=acs, fiscal_code=fiscal_code, now=dt.datetime.now(dt.UTC),
                         **kwargs)  # type: ignore[arg-type]
    return body, app.complete_login(tenant, body)


def test_login_code_gives_tokens_with_roles_from_the_tenant(app: LoginApplication) -> None:
    _, done = _login(app, fiscal_code="VRDLGU70A01D150D")
    tokens = app.exchange_code("cremona", str(done["code"]))
    principal = TokenVerifier(app.tokens.jwks()).verify(tokens["access_token"])
    assert (principal.subject, principal.tenant, principal.level) == ("VRDLGU70A01D150D", "cremona", 2)
    assert set(principal.roles) == {"citizen", "operator", "admin"}
    with pytest.raises(InvalidGrant):
        app.exchange_code("cremona", str(done["code"]))  # single use


def test_plain_citizen_gets_only_the_citizen_role(app: LoginApplication) -> None:
    _, done = _login(app)
    tokens = app.exchange_code("cremona", str(done["code"]))
    assert TokenVerifier(app.tokens.jwks()).verify(tokens["access_token"]).roles == ("citizen",)


def test_refresh_rotates_and_logout_revokes(app: LoginApplication) -> None:
    _, done = _login(app)
    first = app.exchange_code("cremona", str(done["code"]))
    second = app.refresh("cremona", first["refresh_token"])
    with pytest.raises(InvalidGrant):
        app.refresh("cremona", first["refresh_token"])  # rotated away
    with pytest.raises(Forbidden):
        app.logout("cremona", "VRDLGU70A01D150D", second["refresh_token"])  # not their session
    result = app.logout("cremona", "RSSMRA85T10A562S", second["refresh_token"])
    assert result["revoked"] is True
    assert result["idp_logout"]["url"].startswith(IDP.base_url + "/slo?SAMLRequest=")
    with pytest.raises(InvalidGrant):
        app.refresh("cremona", second["refresh_token"])


def test_codes_and_refresh_tokens_of_one_tenant_do_not_work_on_another(app: LoginApplication) -> None:
    _, done = _login(app)
    with pytest.raises(InvalidGrant):
        app.exchange_code("lodi", str(done["code"]))
    tokens = app.exchange_code("cremona", str(done["code"]))
    with pytest.raises(InvalidGrant):
        app.refresh("lodi", tokens["refresh_token"])


def test_response_for_one_tenant_is_refused_by_another_tenants_acs(app: LoginApplication) -> None:
    started = app.start_login("cremona", IDP_ENTITY, level=2, binding="post")
    read = twin.read_post(started["form"]["SAMLRequest"], "", [app.tenants.get("cremona").spid.signing_certificate])  # type: ignore[union-attr]
    body = twin.response(IDP, read, acs_url="https://cremona.example.it/v1/tenants/cremona/auth/spid/acs",
                         fiscal_code="RSSMRA85T10A562S", now=dt.datetime.now(dt.UTC))
    with pytest.raises(UnknownRequest):
        app.complete_login("lodi", body)


def test_replayed_response_is_refused(app: LoginApplication) -> None:
    body, _ = _login(app)
    with pytest.raises((UnknownRequest, AssertionReplayed)):
        app.complete_login("cremona", body)


def test_return_url_must_be_registered(app: LoginApplication) -> None:
    with pytest.raises(ValidationFailed, match="return_url"):
        app.start_login("cremona", IDP_ENTITY, return_url="https://evil.example.com/")
