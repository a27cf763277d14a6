"""Single logout on a real SQLite database: IdP-initiated LogoutRequests and the IdP's LogoutResponse.

The IdP side is the twin's own SAML code (sandbox/spid_idp/idp.py) signing with its key, so each
check is exercised with genuinely signed messages and then with one thing wrong.
"""

from __future__ import annotations

import base64
import datetime as dt
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree
from pydantic import SecretStr

from sandbox.spid_idp import idp as twin
from services.spid.application import LoginApplication
from services.spid.domain import saml
from services.spid.domain.authn import encode
from services.spid.domain.errors import (
    InvalidGrant,
    ResponseRejected,
    SignatureInvalid,
    UnknownIdentityProvider,
    UnknownRequest,
)
from services.spid.domain.xmlsig import parse, verify
from sportello.db import Database
from sportello.migrate import upgrade
from sportello.tenants import SpidConfig, Tenant, TenantRegistry
from sportello.tokens import SigningKey, TokenIssuer
from tests.support.spid import IDP_ENTITY, key_and_cert, twin_idp

IDP = twin_idp()
CITIZEN = "RSSMRA85T10A562S"
SLO = "https://cremona.example.it/v1/tenants/cremona/auth/spid/slo"
ACS = "https://cremona.example.it/v1/tenants/cremona/auth/spid/acs"


class FakeMetadata:
    def fetch(self, location: str) -> bytes:
        return twin.idp_metadata(IDP)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LoginApplication]:
    url = f"sqlite:///{tmp_path / 'spid.sqlite3'}"
    upgrade("spid", url)
    database = Database(url)
    key, cert = key_and_cert("sp-cremona")
    tenant = Tenant(id="cremona", name="Comune di Cremona", fiscal_code="00297960197", istat_code="019036",
                    ipa_code="c_d150", spid=SpidConfig(entity_id="https://cremona.example.it/spid",  # type: ignore[arg-type]
                                                       signing_key=SecretStr(key), signing_certificate=cert,
                                                       idp_metadata=("twin",)))
    gateway_key, _ = key_and_cert("gateway")
    yield LoginApplication(database, TenantRegistry({"cremona": tenant}), TokenIssuer(SigningKey(gateway_key)),
                           FakeMetadata())
    database.dispose()


def _logged_in(app: LoginApplication) -> tuple[dict[str, object], tuple[str, str]]:
    """Log the citizen in; (tokens, (NameID, SessionIndex) the twin issued)."""
    started = app.start_login("cremona", IDP_ENTITY, level=2, binding="redirect")
    read = twin.read_redirect(urlsplit(started["url"]).query, [key_and_cert("sp-cremona")[1]])
    body = twin.response(IDP, read, acs_url=ACS, fiscal_code=CITIZEN, now=dt.datetime.now(dt.UTC))
    issued = twin.issued_session(body)
    assert issued is not None
    done = app.complete_login("cremona", body)
    return app.exchange_code("cremona", str(done["code"])), issued


def _idp_logout(name_id: str, session_index: str, *, binding: str = "post", destination: str = SLO,
                key: str = IDP.key_pem, now: dt.datetime | None = None) -> dict[str, str]:
    element = twin.logout_request(IDP, destination=destination, name_id=name_id, session_index=session_index,
                                  now=now or dt.datetime.now(dt.UTC))
    message = encode(element, key_pem=key, cert_pem=IDP.cert_pem, binding=binding,  # type: ignore[arg-type]
                     relay_state="relay-123")
    return message.form if binding == "post" else {"query": urlsplit(message.url).query}


def _call(app: LoginApplication, binding: str, message: dict[str, str]) -> dict[str, object]:
    if binding == "post":
        return app.single_logout("cremona", "post", form=message)
    return app.single_logout("cremona", "redirect", query=message["query"])


@pytest.mark.parametrize("binding", ["post", "redirect"])
def test_idp_initiated_logout_revokes_the_session_and_answers_signed(app: LoginApplication, binding: str) -> None:
    tokens, (name_id, session_index) = _logged_in(app)
    result = _call(app, binding, _idp_logout(name_id, session_index, binding=binding))
    assert result["kind"] == "logout_request" and result["revoked"] == 1
    with pytest.raises(InvalidGrant):
        app.refresh("cremona", str(tokens["refresh_token"]))
    reply = result["reply"]
    assert isinstance(reply, dict)
    if binding == "post":
        response = parse(base64.b64decode(reply["form"]["SAMLResponse"]))
        verify(response, [key_and_cert("sp-cremona")[1]], "LogoutResponse")
        assert reply["form"]["RelayState"] == "relay-123"
    else:
        query = parse_qs(urlsplit(reply["url"]).query)
        assert set(query) == {"SAMLResponse", "RelayState", "SigAlg", "Signature"}
        assert reply["url"].startswith(IDP.base_url + "/slo?")
        response = etree.fromstring(zlib.decompress(base64.b64decode(query["SAMLResponse"][0]), -15))
    assert response.tag.endswith("LogoutResponse")
    assert response.find(".//{urn:oasis:names:tc:SAML:2.0:protocol}StatusCode").get("Value") == saml.STATUS_SUCCESS
    assert response.get("InResponseTo")


def test_logout_of_another_session_index_leaves_this_one(app: LoginApplication) -> None:
    tokens, (name_id, _) = _logged_in(app)
    assert _call(app, "post", _idp_logout(name_id, "_other-session"))["revoked"] == 0
    app.refresh("cremona", str(tokens["refresh_token"]))  # still works


def test_logout_request_signed_by_someone_else_is_refused(app: LoginApplication) -> None:
    tokens, (name_id, session_index) = _logged_in(app)
    forged_key, _ = key_and_cert("attacker")
    for binding in ("post", "redirect"):
        with pytest.raises(SignatureInvalid):
            _call(app, binding, _idp_logout(name_id, session_index, binding=binding, key=forged_key))
    app.refresh("cremona", str(tokens["refresh_token"]))  # nothing was revoked


def test_logout_request_to_another_destination_or_stale_is_refused(app: LoginApplication) -> None:
    _, (name_id, session_index) = _logged_in(app)
    with pytest.raises(ResponseRejected, match="Destination"):
        _call(app, "post", _idp_logout(name_id, session_index, destination="https://elsewhere.example.it/slo"))
    with pytest.raises(ResponseRejected, match=r"IssueInstant|expired"):
        _call(app, "post", _idp_logout(name_id, session_index, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))


def test_logout_request_of_an_unregistered_idp_is_refused(app: LoginApplication) -> None:
    _, (name_id, session_index) = _logged_in(app)
    stranger = twin.Idp(entity_id="https://idp.stranger.example.it", base_url="https://idp.stranger.example.it",
                        key_pem=IDP.key_pem, cert_pem=IDP.cert_pem)
    element = twin.logout_request(stranger, destination=SLO, name_id=name_id, session_index=session_index,
                                  now=dt.datetime.now(dt.UTC))
    message = encode(element, key_pem=IDP.key_pem, cert_pem=IDP.cert_pem, binding="post", relay_state="r")
    with pytest.raises(UnknownIdentityProvider):
        app.single_logout("cremona", "post", form=message.form)


def _idp_answer(app: LoginApplication, in_response_to: str, *, status: str = saml.STATUS_SUCCESS) -> dict[str, str]:
    element = twin.logout_response(IDP, destination=SLO, in_response_to=in_response_to, now=dt.datetime.now(dt.UTC),
                                   status=status)
    return encode(element, key_pem=IDP.key_pem, cert_pem=IDP.cert_pem, binding="post", relay_state="r",
                  param="SAMLResponse").form


def test_sp_initiated_logout_accepts_the_idps_answer_once(app: LoginApplication) -> None:
    tokens, _ = _logged_in(app)
    out = app.logout("cremona", CITIZEN, str(tokens["refresh_token"]))
    sent = etree.fromstring(zlib.decompress(base64.b64decode(
        parse_qs(urlsplit(out["idp_logout"]["url"]).query)["SAMLRequest"][0]), -15))
    answer = _idp_answer(app, sent.get("ID", ""))
    assert app.single_logout("cremona", "post", form=answer) == {"kind": "logout_response", "status": "logged_out"}
    with pytest.raises(UnknownRequest):
        app.single_logout("cremona", "post", form=answer)  # once
    with pytest.raises(UnknownRequest):
        app.single_logout("cremona", "post", form=_idp_answer(app, "_never-sent"))


def test_a_failed_logout_at_the_idp_is_reported(app: LoginApplication) -> None:
    tokens, _ = _logged_in(app)
    out = app.logout("cremona", CITIZEN, str(tokens["refresh_token"]))
    sent = etree.fromstring(zlib.decompress(base64.b64decode(
        parse_qs(urlsplit(out["idp_logout"]["url"]).query)["SAMLRequest"][0]), -15))
    with pytest.raises(ResponseRejected, match="failed"):
        app.single_logout("cremona", "post", form=_idp_answer(app, sent.get("ID", ""), status=saml.STATUS_REQUESTER))


def test_nothing_to_read_is_a_typed_error(app: LoginApplication) -> None:
    with pytest.raises(ResponseRejected):
        app.single_logout("cremona", "post", form={"RelayState": "x"})
    with pytest.raises(ResponseRejected):
        app.single_logout("cremona", "redirect", query="SAMLRequest=%%%")
