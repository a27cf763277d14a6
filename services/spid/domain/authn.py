"""Signed SPID AuthnRequests and LogoutRequests, for the HTTP-Redirect and HTTP-POST bindings.

Why the details: the SPID rules want `Issuer` with Format entity and NameQualifier, `NameIDPolicy`
transient without AllowCreate, no IsPassive, ForceAuthn above level 1, the ACS by index 0 and
the AttributeConsumingService index, the level as `RequestedAuthnContext` (minimum), RSA-SHA256.
The request id and instant are kept as a pending login so the response can be matched.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import zlib
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote_plus, urlencode

from lxml import etree

from services.spid.domain import saml
from services.spid.domain.metadata import IdentityProvider, ServiceProvider
from services.spid.domain.xmlsig import NS, sign, sign_query
from sportello.errors import ValidationFailed

SAMLP = "{" + NS["samlp"] + "}"
SAML = "{" + NS["saml"] + "}"
Binding = Literal["redirect", "post"]


@dataclass(frozen=True)
class PendingLogin:
    """What we remember about a request until its response arrives (for InResponseTo)."""

    request_id: str
    tenant: str
    idp_entity_id: str
    level: int
    issued_at: dt.datetime
    acs_url: str
    relay_state: str
    return_url: str | None


@dataclass(frozen=True)
class OutgoingMessage:
    """How the browser carries a message to the IdP: a redirect URL, or an auto-posting form."""

    binding: Binding
    url: str  # redirect: the full URL; post: the form action
    form: dict[str, str]

    def html_form(self) -> str:
        fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                         for k, v in self.form.items())
        return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>SPID</title></head>'
                f'<body onload="document.forms[0].submit()"><form method="post" action="{html.escape(self.url)}">'
                f'{fields}<noscript><button type="submit">Continua</button></noscript></form></body></html>')


def authn_request(sp: ServiceProvider, idp: IdentityProvider, *, level: int, binding: Binding,
                  now: dt.datetime) -> tuple[etree._Element, str]:
    """The unsigned AuthnRequest element and its id."""
    if level not in saml.LEVELS:
        raise ValidationFailed("SPID level must be 1, 2 or 3")
    destination = idp.sso.get(saml.BINDING_REDIRECT if binding == "redirect" else saml.BINDING_POST)
    if not destination:
        raise ValidationFailed(f"the identity provider has no {binding} single sign-on endpoint")
    request_id = saml.new_id()
    attrs = {"ID": request_id, "Version": "2.0", "IssueInstant": saml.instant(now), "Destination": destination,
             "AssertionConsumerServiceIndex": "0", "AttributeConsumingServiceIndex": "0"}
    if level > 1:
        attrs["ForceAuthn"] = "true"
    root = etree.Element(f"{SAMLP}AuthnRequest", nsmap={"samlp": NS["samlp"], "saml": NS["saml"]}, **attrs)
    issuer = etree.SubElement(root, f"{SAML}Issuer", Format=saml.NAMEID_ENTITY, NameQualifier=sp.entity_id)
    issuer.text = sp.entity_id
    etree.SubElement(root, f"{SAMLP}NameIDPolicy", Format=saml.NAMEID_TRANSIENT)
    context = etree.SubElement(root, f"{SAMLP}RequestedAuthnContext", Comparison="minimum")
    ref = etree.SubElement(context, f"{SAML}AuthnContextClassRef")
    ref.text = saml.LEVELS[level]
    return root, request_id


def logout_request(sp: ServiceProvider, idp: IdentityProvider, *, name_id: str, name_qualifier: str,
                   session_index: str | None, binding: Binding, now: dt.datetime) -> etree._Element:
    destination = idp.slo.get(saml.BINDING_REDIRECT if binding == "redirect" else saml.BINDING_POST)
    if not destination:
        raise ValidationFailed(f"the identity provider has no {binding} single logout endpoint")
    root = etree.Element(f"{SAMLP}LogoutRequest", nsmap={"samlp": NS["samlp"], "saml": NS["saml"]},
                         ID=saml.new_id(), Version="2.0", IssueInstant=saml.instant(now), Destination=destination)
    issuer = etree.SubElement(root, f"{SAML}Issuer", Format=saml.NAMEID_ENTITY, NameQualifier=sp.entity_id)
    issuer.text = sp.entity_id
    name = etree.SubElement(root, f"{SAML}NameID", Format=saml.NAMEID_TRANSIENT, NameQualifier=name_qualifier)
    name.text = name_id
    if session_index:
        etree.SubElement(root, f"{SAMLP}SessionIndex").text = session_index
    return root


def encode(element: etree._Element, *, key_pem: str, cert_pem: str, binding: Binding, relay_state: str,
           param: str = "SAMLRequest") -> OutgoingMessage:
    """Sign and encode a request for its binding (Redirect: query signature; POST: XML signature)."""
    destination = element.get("Destination", "")
    if binding == "post":
        sign(element, key_pem, cert_pem, position=1)  # after Issuer, as the schema orders it
        xml = etree.tostring(element, xml_declaration=False, encoding="UTF-8")
        return OutgoingMessage("post", destination, {param: base64.b64encode(xml).decode(),
                                                     "RelayState": relay_state})
    xml = etree.tostring(element, xml_declaration=False, encoding="UTF-8")
    deflated = zlib.compress(xml)[2:-4]  # raw DEFLATE
    query = urlencode({param: base64.b64encode(deflated).decode(), "RelayState": relay_state,
                       "SigAlg": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"}, quote_via=quote_plus)
    signature = sign_query(query, key_pem)
    url = f"{destination}{'&' if '?' in destination else '?'}{query}&Signature={quote_plus(signature)}"
    return OutgoingMessage("redirect", url, {})
