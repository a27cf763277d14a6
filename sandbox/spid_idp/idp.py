"""The SPID test IdP's SAML logic: its metadata, reading AuthnRequests, signing Responses.

Why: the platform must log a citizen in end to end on one machine. This IdP speaks the SPID
SAML profile (signed Response and Assertion, transient NameID, SPID levels, `ErrorCode nrNN`
anomalies) for synthetic citizens with valid fiscal codes — and can be told to misbehave.
"""

from __future__ import annotations

import base64
import datetime as dt
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote_plus, urlencode

from lxml import etree

from services.spid.domain import saml
from services.spid.domain.xmlsig import NS, cert_to_pem, parse, pem_body, sign, verify, verify_query

MD = "{" + NS["md"] + "}"
SAMLP = "{" + NS["samlp"] + "}"
SAML = "{" + NS["saml"] + "}"

# Synthetic citizens (valid fiscal codes); the first two are Cremona's sandbox operators.
CITIZENS: dict[str, dict[str, str]] = {
    "RSSMRA85T10A562S": {"name": "Mario", "familyName": "Rossi", "email": "mario.rossi@example.invalid",
                         "spidCode": "SPID-TWIN-0001"},
    "VRDLGU70A01D150D": {"name": "Luigi", "familyName": "Verdi", "email": "luigi.verdi@example.invalid",
                         "spidCode": "SPID-TWIN-0002"},
    "BNCGLI90D45D150M": {"name": "Giulia", "familyName": "Bianchi", "email": "giulia.bianchi@example.invalid",
                         "spidCode": "SPID-TWIN-0003"},
}


@dataclass(frozen=True)
class Idp:
    entity_id: str
    base_url: str  # where the twin listens (SSO/SLO endpoints)
    key_pem: str = field(repr=False)
    cert_pem: str


@dataclass(frozen=True)
class ReadRequest:
    request_id: str
    issuer: str
    issue_instant: str
    level: int
    acs_index: str | None
    acs_url: str | None
    relay_state: str


def idp_metadata(idp: Idp) -> bytes:
    root = etree.Element(f"{MD}EntityDescriptor", nsmap={"md": NS["md"], "ds": NS["ds"]},
                         entityID=idp.entity_id, ID=saml.new_id())
    desc = etree.SubElement(root, f"{MD}IDPSSODescriptor", protocolSupportEnumeration=saml.PROTOCOL,
                            WantAuthnRequestsSigned="true")
    key = etree.SubElement(desc, f"{MD}KeyDescriptor", use="signing")
    x509 = etree.SubElement(etree.SubElement(key, "{" + NS["ds"] + "}KeyInfo"), "{" + NS["ds"] + "}X509Data")
    etree.SubElement(x509, "{" + NS["ds"] + "}X509Certificate").text = pem_body(idp.cert_pem)
    for binding in (saml.BINDING_POST, saml.BINDING_REDIRECT):
        etree.SubElement(desc, f"{MD}SingleLogoutService", Binding=binding, Location=f"{idp.base_url}/slo")
    etree.SubElement(desc, f"{MD}NameIDFormat").text = saml.NAMEID_TRANSIENT
    for binding in (saml.BINDING_POST, saml.BINDING_REDIRECT):
        etree.SubElement(desc, f"{MD}SingleSignOnService", Binding=binding, Location=f"{idp.base_url}/sso")
    org = etree.SubElement(root, f"{MD}Organization")
    for tag, text in (("OrganizationName", "Sportello SPID twin"), ("OrganizationDisplayName", "SPID twin"),
                      ("OrganizationURL", idp.base_url + "/")):
        etree.SubElement(org, f"{MD}{tag}", {"{http://www.w3.org/XML/1998/namespace}lang": "it"}).text = text
    sign(root, idp.key_pem, idp.cert_pem, position=0)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


@dataclass(frozen=True)
class RegisteredSp:
    """What the twin knows of an SP from its signed metadata."""

    entity_id: str
    acs: dict[str, str]  # index -> URL
    slo: dict[str, str]  # binding -> URL
    certs: list[str]


def registered_sp(sp_metadata: bytes) -> RegisteredSp:
    root = parse(sp_metadata)
    desc = root.find(f"{MD}SPSSODescriptor")
    if desc is None:
        raise ValueError("no SPSSODescriptor")
    certs = [cert_to_pem(c.text or "") for c in desc.iter("{" + NS["ds"] + "}X509Certificate")]
    verify(root, certs, "SP metadata")
    acs = {a.get("index", ""): a.get("Location", "") for a in desc.findall(f"{MD}AssertionConsumerService")}
    slo = {s.get("Binding", ""): s.get("Location", "") for s in desc.findall(f"{MD}SingleLogoutService")}
    return RegisteredSp(root.get("entityID", ""), acs, slo, certs)


def sp_certificates(sp_metadata: bytes) -> tuple[str, dict[str, str], list[str]]:
    """(entity id, ACS index -> URL, signing certificates) of a registered SP."""
    sp = registered_sp(sp_metadata)
    return sp.entity_id, sp.acs, sp.certs


def logout_request(idp: Idp, *, destination: str, name_id: str, session_index: str,
                   now: dt.datetime) -> etree._Element:
    """An IdP-initiated LogoutRequest (unsigned; `authn.encode` signs it for its binding)."""
    root = etree.Element(f"{SAMLP}LogoutRequest", nsmap={"samlp": NS["samlp"], "saml": NS["saml"]},
                         ID=saml.new_id(), Version="2.0", IssueInstant=saml.instant(now), Destination=destination,
                         NotOnOrAfter=saml.instant(now + dt.timedelta(minutes=5)))
    etree.SubElement(root, f"{SAML}Issuer", Format=saml.NAMEID_ENTITY, NameQualifier=idp.entity_id).text = idp.entity_id
    etree.SubElement(root, f"{SAML}NameID", Format=saml.NAMEID_TRANSIENT, NameQualifier=idp.entity_id).text = name_id
    etree.SubElement(root, f"{SAMLP}SessionIndex").text = session_index
    return root


def logout_response(idp: Idp, *, destination: str, in_response_to: str, now: dt.datetime,
                    status: str = saml.STATUS_SUCCESS) -> etree._Element:
    """The IdP's LogoutResponse to an SP's LogoutRequest (unsigned; `authn.encode` signs it)."""
    root = etree.Element(f"{SAMLP}LogoutResponse", nsmap={"samlp": NS["samlp"], "saml": NS["saml"]},
                         ID=saml.new_id(), Version="2.0", IssueInstant=saml.instant(now), Destination=destination,
                         InResponseTo=in_response_to)
    etree.SubElement(root, f"{SAML}Issuer", Format=saml.NAMEID_ENTITY, NameQualifier=idp.entity_id).text = idp.entity_id
    etree.SubElement(etree.SubElement(root, f"{SAMLP}Status"), f"{SAMLP}StatusCode", Value=status)
    return root


def issued_session(response_b64: str) -> tuple[str, str] | None:
    """(NameID, SessionIndex) of a successful Response the twin issued, for a later logout."""
    root = parse(base64.b64decode(response_b64))
    name_id = root.findtext(f"{SAML}Assertion/{SAML}Subject/{SAML}NameID")
    statement = root.find(f"{SAML}Assertion/{SAML}AuthnStatement")
    if not name_id or statement is None:
        return None
    return name_id, statement.get("SessionIndex", "")


def read_redirect(query: str, sp_certs: list[str]) -> ReadRequest:
    """Decode and verify an HTTP-Redirect AuthnRequest (signature over the raw query)."""
    parts = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    signed = "&".join(f"{k}={parts[k]}" for k in ("SAMLRequest", "RelayState", "SigAlg") if k in parts)
    values = {k: v[0] for k, v in parse_qs(query).items()}
    if not verify_query(signed, values.get("Signature", ""), sp_certs):
        raise ValueError("AuthnRequest signature not valid")
    xml = zlib.decompress(base64.b64decode(values["SAMLRequest"]), -15)
    return _read(parse(xml), values.get("RelayState", ""))


def read_post(saml_request: str, relay_state: str, sp_certs: list[str]) -> ReadRequest:
    root = parse(base64.b64decode(saml_request))
    verify(root, sp_certs, "AuthnRequest")
    return _read(root, relay_state)


def _read(root: etree._Element, relay_state: str) -> ReadRequest:
    ref = root.findtext(f"{SAMLP}RequestedAuthnContext/{SAML}AuthnContextClassRef") or saml.LEVELS[1]
    return ReadRequest(request_id=root.get("ID", ""), issuer=(root.findtext(f"{SAML}Issuer") or "").strip(),
                       issue_instant=root.get("IssueInstant", ""), level=saml.LEVEL_OF.get(ref, 1),
                       acs_index=root.get("AssertionConsumerServiceIndex"),
                       acs_url=root.get("AssertionConsumerServiceURL"), relay_state=relay_state)


def response(idp: Idp, request: ReadRequest, *, acs_url: str, fiscal_code: str | None, now: dt.datetime,
             level: int | None = None, error_code: int | None = None, attributes: list[str] | None = None,
             sign_assertion: bool = True, sign_response: bool = True) -> str:
    """A base64 SAML Response: success for `fiscal_code`, or the SPID anomaly `error_code`."""
    issued = saml.instant(now)
    root = etree.Element(f"{SAMLP}Response", nsmap={"samlp": NS["samlp"], "saml": NS["saml"]},
                         ID=saml.new_id(), Version="2.0", IssueInstant=issued, Destination=acs_url,
                         InResponseTo=request.request_id)
    etree.SubElement(root, f"{SAML}Issuer", Format=saml.NAMEID_ENTITY).text = idp.entity_id
    status = etree.SubElement(root, f"{SAMLP}Status")
    if error_code is not None:
        top = etree.SubElement(status, f"{SAMLP}StatusCode", Value=saml.STATUS_RESPONDER)
        etree.SubElement(top, f"{SAMLP}StatusCode", Value=saml.STATUS_AUTHN_FAILED)
        etree.SubElement(status, f"{SAMLP}StatusMessage").text = f"ErrorCode nr{error_code}"
        return base64.b64encode(etree.tostring(root)).decode()
    etree.SubElement(status, f"{SAMLP}StatusCode", Value=saml.STATUS_SUCCESS)
    expires = saml.instant(now + dt.timedelta(minutes=5))
    assertion = etree.SubElement(root, f"{SAML}Assertion", ID=saml.new_id(), Version="2.0", IssueInstant=issued)
    etree.SubElement(assertion, f"{SAML}Issuer", Format=saml.NAMEID_ENTITY).text = idp.entity_id
    subject = etree.SubElement(assertion, f"{SAML}Subject")
    etree.SubElement(subject, f"{SAML}NameID", Format=saml.NAMEID_TRANSIENT,
                     NameQualifier=idp.entity_id).text = saml.new_id()
    confirmation = etree.SubElement(subject, f"{SAML}SubjectConfirmation", Method=saml.CM_BEARER)
    etree.SubElement(confirmation, f"{SAML}SubjectConfirmationData", InResponseTo=request.request_id,
                     NotOnOrAfter=expires, Recipient=acs_url)
    conditions = etree.SubElement(assertion, f"{SAML}Conditions", NotBefore=issued, NotOnOrAfter=expires)
    etree.SubElement(etree.SubElement(conditions, f"{SAML}AudienceRestriction"), f"{SAML}Audience").text = request.issuer  # noqa: E501
    statement = etree.SubElement(assertion, f"{SAML}AuthnStatement", AuthnInstant=issued, SessionIndex=saml.new_id())
    etree.SubElement(etree.SubElement(statement, f"{SAML}AuthnContext"),
                     f"{SAML}AuthnContextClassRef").text = saml.LEVELS[level or request.level]
    values = {"fiscalNumber": f"TINIT-{fiscal_code}", **CITIZENS.get(fiscal_code or "", {})}
    attr_statement = etree.SubElement(assertion, f"{SAML}AttributeStatement")
    for name in attributes or ["fiscalNumber", "name", "familyName", "email"]:
        if name in values:
            attr = etree.SubElement(attr_statement, f"{SAML}Attribute", Name=name)
            etree.SubElement(attr, f"{SAML}AttributeValue").text = values[name]
    if sign_assertion:
        sign(assertion, idp.key_pem, idp.cert_pem, position=1)
    if sign_response:
        sign(root, idp.key_pem, idp.cert_pem, position=1)
    return base64.b64encode(etree.tostring(root)).decode()


def post_form(url: str, fields: dict[str, str]) -> str:
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}"/>' for k, v in fields.items())
    return (f'<!DOCTYPE html><html><body onload="document.forms[0].submit()"><form method="post" '
            f'action="{url}">{inputs}<noscript><button>Continua</button></noscript></form></body></html>')


def redirect_query(params: dict[str, str]) -> str:
    return urlencode(params, quote_via=quote_plus)
