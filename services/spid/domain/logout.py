"""Single logout: the IdP's LogoutRequest (IdP-initiated) and its LogoutResponse (to our request).

Why strict: a LogoutRequest ends a citizen's sessions, so it must come from a registered IdP
(signature against its metadata keys — XML-DSig for HTTP-POST, the query signature for
HTTP-Redirect), be addressed to our SingleLogoutService, be fresh, and name a NameID the IdP
gave us. A LogoutResponse is accepted only for a logout request we sent (InResponseTo).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from lxml import etree

from services.spid.domain import saml
from services.spid.domain.authn import Binding
from services.spid.domain.errors import ResponseRejected, SignatureInvalid, UnknownRequest
from services.spid.domain.metadata import IdentityProvider, IdpRegistry, ServiceProvider
from services.spid.domain.xmlsig import MAX_XML_BYTES, NS, RSA_SHA256, parse, verify, verify_query

SAMLP = "{" + NS["samlp"] + "}"
SAML = "{" + NS["saml"] + "}"
MAX_MESSAGE_AGE = dt.timedelta(minutes=5)
STATUS_PARTIAL_LOGOUT = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"


@dataclass(frozen=True)
class IncomingMessage:
    """A SAML message as the browser carried it (the raw Redirect query is kept for its signature)."""

    binding: Binding
    param: str  # SAMLRequest or SAMLResponse
    root: etree._Element
    relay_state: str | None
    signed_query: str | None = None
    signature: str | None = None
    signature_algorithm: str | None = None


@dataclass(frozen=True)
class LogoutOrder:
    """What an IdP-initiated LogoutRequest asks: end the sessions of this NameID."""

    request_id: str
    idp_entity_id: str
    name_id: str
    session_indexes: tuple[str, ...]
    relay_state: str | None


@dataclass(frozen=True)
class PendingLogout:
    request_id: str
    idp_entity_id: str


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        xml = inflater.decompress(data, MAX_XML_BYTES + 1)
    except zlib.error:
        raise ResponseRejected("SAML message is not DEFLATE-encoded") from None
    if len(xml) > MAX_XML_BYTES or inflater.unconsumed_tail:
        raise ResponseRejected("XML document too large")
    return xml


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=False)
    except (binascii.Error, ValueError):
        raise ResponseRejected("SAML message is not base64") from None


def read_message(binding: Binding, *, form: Mapping[str, str] | None = None,
                 query: str | None = None) -> IncomingMessage:
    """Decode a LogoutRequest/LogoutResponse from a POST form or a raw Redirect query string."""
    if binding == "post":
        fields = dict(form or {})
        param = "SAMLRequest" if "SAMLRequest" in fields else "SAMLResponse"
        if not fields.get(param):
            raise ResponseRejected("neither SAMLRequest nor SAMLResponse was sent")
        return IncomingMessage("post", param, parse(_b64(fields[param])), fields.get("RelayState"))
    raw = query or ""
    parts = dict(p.split("=", 1) for p in raw.split("&") if "=" in p)
    values = {k: v[0] for k, v in parse_qs(raw).items()}
    param = "SAMLRequest" if "SAMLRequest" in parts else "SAMLResponse"
    if not values.get(param):
        raise ResponseRejected("neither SAMLRequest nor SAMLResponse was sent")
    # SAML bindings 3.4.4.1: the signature covers the parameters as they were URL-encoded
    signed = "&".join(f"{k}={parts[k]}" for k in (param, "RelayState", "SigAlg") if k in parts)
    return IncomingMessage("redirect", param, parse(_inflate(_b64(values[param]))), values.get("RelayState"),
                           signed_query=signed, signature=values.get("Signature"),
                           signature_algorithm=values.get("SigAlg"))


def _verify(message: IncomingMessage, idp: IdentityProvider, what: str) -> None:
    if message.binding == "post":
        verify(message.root, idp.certificates, what)
        return
    if not message.signature or message.signature_algorithm != RSA_SHA256:
        raise SignatureInvalid(f"{what} is not signed with RSA-SHA256 over the query string")
    if not verify_query(message.signed_query or "", message.signature, idp.certificates):
        raise SignatureInvalid(f"{what}: signature not valid for the identity provider's registered keys")


def _common(message: IncomingMessage, sp: ServiceProvider, idps: IdpRegistry, now: dt.datetime,
            tag: str, what: str) -> IdentityProvider:
    root = message.root
    if root.tag != f"{SAMLP}{tag}":
        raise ResponseRejected(f"not a SAML {tag}")
    if not root.get("ID") or root.get("Version") != "2.0":
        raise ResponseRejected(f"{what} ID missing or Version not 2.0")
    issued = saml.parse_instant(root.get("IssueInstant"))
    skew = dt.timedelta(seconds=sp.clock_skew_seconds)
    if issued is None or not now - MAX_MESSAGE_AGE - skew <= issued <= now + skew:
        raise ResponseRejected(f"{what} IssueInstant missing or not fresh")
    if root.get("Destination") != sp.slo_url:
        raise ResponseRejected(f"{what} Destination is not our SingleLogoutService")
    issuer = root.find(f"{SAML}Issuer")
    if issuer is None or not (issuer.text or "").strip():
        raise ResponseRejected(f"{what} Issuer missing")
    if issuer.get("Format") not in (None, saml.NAMEID_ENTITY):
        raise ResponseRejected(f"{what} Issuer Format must be {saml.NAMEID_ENTITY}")
    idp = idps.get((issuer.text or "").strip())
    _verify(message, idp, what)
    return idp


def read_logout_request(message: IncomingMessage, sp: ServiceProvider, idps: IdpRegistry,
                        now: dt.datetime) -> LogoutOrder:
    idp = _common(message, sp, idps, now, "LogoutRequest", "LogoutRequest")
    root = message.root
    not_after = root.get("NotOnOrAfter")
    if not_after is not None:
        limit = saml.parse_instant(not_after)
        if limit is None or limit + dt.timedelta(seconds=sp.clock_skew_seconds) <= now:
            raise ResponseRejected("LogoutRequest expired (NotOnOrAfter)")
    names = root.findall(f"{SAML}NameID")
    if len(names) != 1 or not (names[0].text or "").strip():
        raise ResponseRejected("LogoutRequest must carry exactly one NameID")
    return LogoutOrder(request_id=root.get("ID", ""), idp_entity_id=idp.entity_id,
                       name_id=(names[0].text or "").strip(),
                       session_indexes=tuple((s.text or "").strip() for s in root.findall(f"{SAMLP}SessionIndex")
                                             if (s.text or "").strip()),
                       relay_state=message.relay_state)


def read_logout_response(message: IncomingMessage, sp: ServiceProvider, idps: IdpRegistry, now: dt.datetime,
                         take_pending: Callable[[str], PendingLogout | None]) -> bool:
    """Validate the IdP's answer to our LogoutRequest; True when the logout was complete."""
    idp = _common(message, sp, idps, now, "LogoutResponse", "LogoutResponse")
    in_response_to = message.root.get("InResponseTo") or ""
    pending = take_pending(in_response_to) if in_response_to else None
    if pending is None or pending.idp_entity_id != idp.entity_id:
        raise UnknownRequest("LogoutResponse InResponseTo matches no logout request of ours")
    code = message.root.find(f"{SAMLP}Status/{SAMLP}StatusCode")
    if code is None or not code.get("Value"):
        raise ResponseRejected("LogoutResponse StatusCode missing")
    if code.get("Value") == saml.STATUS_SUCCESS:
        return True
    inner = code.find(f"{SAMLP}StatusCode")
    if inner is not None and inner.get("Value") == STATUS_PARTIAL_LOGOUT:
        return False
    raise ResponseRejected("the identity provider reports the single logout failed")


def logout_response(sp: ServiceProvider, idp: IdentityProvider, *, in_response_to: str, binding: Binding,
                    now: dt.datetime) -> etree._Element:
    """Our (unsigned) LogoutResponse to an IdP-initiated logout; `encode(..., param="SAMLResponse")` signs it."""
    destination = idp.slo.get(saml.BINDING_REDIRECT if binding == "redirect" else saml.BINDING_POST)
    if not destination:
        raise ResponseRejected(f"the identity provider has no {binding} single logout endpoint")
    root = etree.Element(f"{SAMLP}LogoutResponse", nsmap={"samlp": NS["samlp"], "saml": NS["saml"]},
                         ID=saml.new_id(), Version="2.0", IssueInstant=saml.instant(now), Destination=destination,
                         InResponseTo=in_response_to)
    issuer = etree.SubElement(root, f"{SAML}Issuer", Format=saml.NAMEID_ENTITY, NameQualifier=sp.entity_id)
    issuer.text = sp.entity_id
    etree.SubElement(etree.SubElement(root, f"{SAMLP}Status"), f"{SAMLP}StatusCode", Value=saml.STATUS_SUCCESS)
    return root
