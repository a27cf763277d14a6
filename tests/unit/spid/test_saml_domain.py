"""SPID SP rules: metadata, AuthnRequests and every ACS check, against the twin IdP's responses."""

from __future__ import annotations

import base64
import datetime as dt
import zlib
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree

from sandbox.spid_idp import idp as twin
from services.spid.domain import saml
from services.spid.domain.authn import PendingLogin, authn_request, encode
from services.spid.domain.errors import (
    AuthenticationFailed,
    LevelTooLow,
    LoginCancelled,
    ResponseRejected,
    SignatureInvalid,
    UnknownRequest,
)
from services.spid.domain.metadata import IdpRegistry, parse_idp_metadata, sp_metadata
from services.spid.domain.response import ResponseValidator
from services.spid.domain.xmlsig import NS, parse, verify
from tests.support.spid import IDP_ENTITY, key_and_cert, service_provider, twin_idp

NOW = dt.datetime(2026, 11, 21, 10, 0, 0, tzinfo=dt.UTC)
SP = service_provider()
IDP = twin_idp()
REGISTRY = IdpRegistry(parse_idp_metadata(twin.idp_metadata(IDP)))


def _request(level: int = 2, binding: str = "post") -> tuple[PendingLogin, twin.ReadRequest]:
    element, request_id = authn_request(SP, REGISTRY.get(IDP_ENTITY), level=level, binding=binding,  # type: ignore[arg-type]
                                        now=NOW)
    message = encode(element, key_pem=SP.key_pem, cert_pem=SP.cert_pem, binding=binding,  # type: ignore[arg-type]
                     relay_state="rs")
    if binding == "post":
        read = twin.read_post(message.form["SAMLRequest"], "rs", [SP.cert_pem])
    else:
        read = twin.read_redirect(urlsplit(message.url).query, [SP.cert_pem])
    pending = PendingLogin(request_id=request_id, tenant="cremona", idp_entity_id=IDP_ENTITY, level=level,
                           issued_at=NOW, acs_url=SP.acs_url, relay_state="rs", return_url=None)
    return pending, read


def _validate(response_b64: str, pending: PendingLogin, now: dt.datetime = NOW) -> object:
    store = {pending.request_id: pending}
    return ResponseValidator(SP, REGISTRY).validate(response_b64, take_pending=lambda rid: store.pop(rid, None),
                                                    now=now)


def _response(read: twin.ReadRequest, **kwargs: object) -> str:
    return twin.response(IDP, read, acs_url=SP.acs_url, fiscal_code=kwargs.pop("fiscal_code", "RSSMRA85T10A562S"),  # type: ignore[arg-type]
                         now=NOW + dt.timedelta(seconds=2), **kwargs)  # type: ignore[arg-type]


def _mutate(response_b64: str, change: Callable[[etree._Element], None], resign: bool = True) -> str:
    """Change the XML, then re-sign like a misbehaving IdP would (so only the changed rule fails)."""
    root = etree.fromstring(base64.b64decode(response_b64))
    for sig in root.iter("{" + NS["ds"] + "}Signature"):
        sig.getparent().remove(sig)
    change(root)
    if resign:
        from services.spid.domain.xmlsig import sign
        assertion = root.find("{" + NS["saml"] + "}Assertion")
        if assertion is not None and assertion.get("ID"):
            sign(assertion, IDP.key_pem, IDP.cert_pem)
        if root.get("ID"):
            sign(root, IDP.key_pem, IDP.cert_pem)
    return base64.b64encode(etree.tostring(root)).decode()


# -- metadata and requests ------------------------------------------------------------------------
def test_sp_metadata_is_signed_and_has_the_spid_public_sector_shape() -> None:
    xml = sp_metadata(SP)
    root = parse(xml)
    verify(root, [SP.cert_pem], "metadata")
    ns = NS
    assert root.get("entityID") == SP.entity_id
    sso = root.find("md:SPSSODescriptor", ns)
    assert sso.get("AuthnRequestsSigned") == "true"
    assert sso.findtext("md:NameIDFormat", namespaces=ns) == saml.NAMEID_TRANSIENT
    acs = sso.findall("md:AssertionConsumerService", ns)
    assert [(a.get("index"), a.get("isDefault"), a.get("Location")) for a in acs] == [("0", "true", SP.acs_url)]
    names = [a.get("Name") for a in sso.findall("md:AttributeConsumingService/md:RequestedAttribute", ns)]
    assert names == ["fiscalNumber", "name", "familyName", "email"]
    contact = root.find("md:ContactPerson", ns)
    assert contact.get("contactType") == "other"
    assert contact.findtext("md:Extensions/spid:IPACode", namespaces=ns) == "c_d150"
    assert contact.find("md:Extensions/spid:Public", ns) is not None


@pytest.mark.parametrize("level", [1, 2, 3])
def test_authn_request_follows_the_spid_rules(level: int) -> None:
    element, request_id = authn_request(SP, REGISTRY.get(IDP_ENTITY), level=level, binding="post", now=NOW)
    assert element.get("ID") == request_id and element.get("Version") == "2.0"
    assert element.get("ForceAuthn") == ("true" if level > 1 else None)
    assert element.get("IsPassive") is None
    assert element.get("AssertionConsumerServiceIndex") == "0"
    issuer = element.find("saml:Issuer", NS)
    assert issuer.text == SP.entity_id and issuer.get("NameQualifier") == SP.entity_id
    assert issuer.get("Format") == saml.NAMEID_ENTITY
    policy = element.find("samlp:NameIDPolicy", NS)
    assert policy.get("Format") == saml.NAMEID_TRANSIENT and policy.get("AllowCreate") is None
    assert element.findtext("samlp:RequestedAuthnContext/saml:AuthnContextClassRef", namespaces=NS) == saml.LEVELS[level]  # noqa: E501


def test_redirect_binding_signs_the_query_and_post_binding_signs_the_xml() -> None:
    _, read_redirect = _request(binding="redirect")
    _, read_post = _request(binding="post")
    assert read_redirect.level == read_post.level == 2
    element, _ = authn_request(SP, REGISTRY.get(IDP_ENTITY), level=2, binding="redirect", now=NOW)
    message = encode(element, key_pem=SP.key_pem, cert_pem=SP.cert_pem, binding="redirect", relay_state="x")
    query = parse_qs(urlsplit(message.url).query)
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
    assert b"Signature" not in xml
    _, other_cert = key_and_cert("someone-else")
    with pytest.raises(ValueError, match="signature"):
        twin.read_redirect(urlsplit(message.url).query, [other_cert])


# -- the ACS ----------------------------------------------------------------------------------------
def test_valid_response_gives_a_typed_citizen_without_tinit() -> None:
    pending, read = _request()
    login = _validate(_response(read), pending)
    assert login.citizen.fiscal_code == "RSSMRA85T10A562S"  # type: ignore[attr-defined]
    assert login.citizen.name == "Mario" and login.citizen.family_name == "Rossi"  # type: ignore[attr-defined]
    assert login.level == 2  # type: ignore[attr-defined]


def test_higher_level_than_requested_is_accepted_lower_is_not() -> None:
    pending, read = _request(level=2)
    assert _validate(_response(read, level=3), pending).level == 3  # type: ignore[attr-defined]
    pending, read = _request(level=2)
    with pytest.raises(LevelTooLow):
        _validate(_response(read, level=1), pending)


def test_pending_request_is_single_use() -> None:
    pending, read = _request()
    store = {pending.request_id: pending}
    validator = ResponseValidator(SP, REGISTRY)
    body = _response(read)
    validator.validate(body, take_pending=lambda rid: store.pop(rid, None), now=NOW)
    with pytest.raises(UnknownRequest):
        validator.validate(body, take_pending=lambda rid: store.pop(rid, None), now=NOW)


@pytest.mark.parametrize("code, error, words", [
    (22, LoginCancelled, "refused consent"), (25, LoginCancelled, "cancelled"),
    (19, AuthenticationFailed, "wrong credentials"), (20, AuthenticationFailed, "level"),
    (23, AuthenticationFailed, "suspended"),
])
def test_spid_error_codes_become_readable_errors(code: int, error: type, words: str) -> None:
    pending, read = _request()
    with pytest.raises(error, match=words):
        _validate(_response(read, error_code=code), pending)


def _set(path: str, attr: str | None, value: str | None) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        node = root if path == "." else root.find(path, NS)
        if attr is None:
            if value is None:
                node.getparent().remove(node)
            else:
                node.text = value
        elif value is None:
            del node.attrib[attr]
        else:
            node.set(attr, value)
    return change


A = "saml:Assertion"
CASES = {
    "response version": (".", "Version", "1.0"),
    "response id missing": (".", "ID", None),
    "issue instant format": (".", "IssueInstant", "21/11/2026"),
    "issue instant before request": (".", "IssueInstant", "2018-01-01T00:00:00Z"),
    "issue instant future": (".", "IssueInstant", "2099-01-01T00:00:00Z"),
    "destination": (".", "Destination", "https://evil.example.it/acs"),
    "destination missing": (".", "Destination", None),
    "issuer other": ("saml:Issuer", None, "https://evil.example.it"),
    "issuer format": ("saml:Issuer", "Format", "urn:oasis:names:tc:SAML:2.0:nameid-format:unspecified"),
    "status missing": ("samlp:Status", None, None),
    "status not success": ("samlp:Status/samlp:StatusCode", "Value", saml.STATUS_REQUESTER),
    "assertion missing": (A, None, None),
    "assertion version": (A, "Version", "1.0"),
    "assertion instant": (A, "IssueInstant", "2099-01-01T00:00:00Z"),
    "assertion issuer format missing": (f"{A}/saml:Issuer", "Format", None),
    "assertion issuer other": (f"{A}/saml:Issuer", None, "https://evil.example.it"),
    "nameid format": (f"{A}/saml:Subject/saml:NameID", "Format", "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),  # noqa: E501
    "nameid qualifier": (f"{A}/saml:Subject/saml:NameID", "NameQualifier", None),
    "nameid empty": (f"{A}/saml:Subject/saml:NameID", None, " "),
    "confirmation method": (f"{A}/saml:Subject/saml:SubjectConfirmation", "Method", "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"),  # noqa: E501
    "recipient": (f"{A}/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "Recipient", "https://evil.example.it"),
    "confirmation inresponseto": (f"{A}/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "InResponseTo", "_other"),  # noqa: E501
    "confirmation expired": (f"{A}/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "NotOnOrAfter", "2026-11-21T09:00:00Z"),  # noqa: E501
    "conditions missing": (f"{A}/saml:Conditions", None, None),
    "not before future": (f"{A}/saml:Conditions", "NotBefore", "2026-11-21T11:00:00Z"),
    "not on or after past": (f"{A}/saml:Conditions", "NotOnOrAfter", "2026-11-21T09:00:00Z"),
    "audience other": (f"{A}/saml:Conditions/saml:AudienceRestriction/saml:Audience", None, "https://other.sp.it"),
    "audience missing": (f"{A}/saml:Conditions/saml:AudienceRestriction", None, None),
    "authn statement missing": (f"{A}/saml:AuthnStatement", None, None),
    "acr unknown": (f"{A}/saml:AuthnStatement/saml:AuthnContext/saml:AuthnContextClassRef", None,
                    "urn:oasis:names:tc:SAML:2.0:ac:classes:SpidL1"),
    "fiscal number invalid": (f"{A}/saml:AttributeStatement/saml:Attribute[@Name='fiscalNumber']/saml:AttributeValue",
                              None, "TINIT-RSSMRA85T10A562X"),
    "fiscal number missing": (f"{A}/saml:AttributeStatement/saml:Attribute[@Name='fiscalNumber']", None, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_spid_rule_rejects_a_response_that_breaks_it(case: str) -> None:
    pending, read = _request()
    body = _mutate(_response(read), _set(*CASES[case]))
    with pytest.raises((ResponseRejected, UnknownRequest, AuthenticationFailed)):
        _validate(body, pending)


def test_unmutated_resigned_response_is_accepted_so_the_cases_above_test_one_rule_each() -> None:
    pending, read = _request()
    assert _validate(_mutate(_response(read), lambda root: None), pending).level == 2  # type: ignore[attr-defined]


def test_unsigned_assertion_is_rejected_even_with_a_signed_response() -> None:
    pending, read = _request()
    with pytest.raises(SignatureInvalid, match="Assertion is not signed"):
        _validate(_response(read, sign_assertion=False), pending)


def test_signature_by_an_unregistered_key_is_rejected() -> None:
    pending, read = _request()
    key, cert = key_and_cert("impostor")
    impostor = twin.Idp(entity_id=IDP_ENTITY, base_url=IDP.base_url, key_pem=key, cert_pem=cert)
    body = twin.response(impostor, read, acs_url=SP.acs_url, fiscal_code="RSSMRA85T10A562S", now=NOW)
    with pytest.raises(SignatureInvalid, match="registered keys"):
        _validate(body, pending)


def test_tampered_attribute_after_signing_is_rejected() -> None:
    pending, read = _request()
    root = etree.fromstring(base64.b64decode(_response(read)))
    # keep the original signatures but change the fiscal number: the digest no longer matches
    value = root.find(f"{A}/saml:AttributeStatement/saml:Attribute[@Name='fiscalNumber']/saml:AttributeValue", NS)
    value.text = "TINIT-VRDLGU70A01D150D"
    body = base64.b64encode(etree.tostring(root)).decode()
    with pytest.raises(SignatureInvalid):
        _validate(body, pending)


def test_wrapped_second_assertion_is_rejected() -> None:
    pending, read = _request()
    root = etree.fromstring(base64.b64decode(_response(read)))
    evil = etree.fromstring(etree.tostring(root.find(A, NS)))
    evil.set("ID", "_evil")
    root.find("samlp:Status", NS).append(evil)
    with pytest.raises((ResponseRejected, SignatureInvalid)):
        _validate(base64.b64encode(etree.tostring(root)).decode(), pending)


def test_dtd_and_garbage_are_rejected() -> None:
    pending, _ = _request()
    xxe = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    for body in (base64.b64encode(xxe).decode(), "!!!notbase64", base64.b64encode(b"<a>").decode()):
        with pytest.raises(ResponseRejected):
            _validate(body, pending)
