"""The ACS rules: a SPID Response is accepted only when every check of the SPID rules passes.

Why so strict: a response is a bearer credential carried by the browser. Each check below maps
to a rule of the SPID technical rules (and a case of AgID's spid-sp-test); the first failure
rejects the whole response with a typed error whose detail names the rule, never the citizen.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field
from stdnum.it import codicefiscale

from services.spid.domain import saml
from services.spid.domain.authn import PendingLogin
from services.spid.domain.errors import (
    AuthenticationFailed,
    LevelTooLow,
    LoginCancelled,
    ResponseRejected,
    UnknownRequest,
)
from services.spid.domain.metadata import IdpRegistry, ServiceProvider
from services.spid.domain.xmlsig import NS, parse, verify

SAMLP = "{" + NS["samlp"] + "}"
SAML = "{" + NS["saml"] + "}"
MAX_RESPONSE_AGE = dt.timedelta(minutes=10)


class Citizen(BaseModel):
    """The identity SPID vouches for (typed; the fiscal code without the TINIT- prefix)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fiscal_code: str = Field(pattern=r"^[A-Z0-9]{16}$")
    name: str | None = None
    family_name: str | None = None
    email: str | None = None
    spid_code: str | None = None


@dataclass(frozen=True)
class SpidLogin:
    citizen: Citizen
    level: int
    idp_entity_id: str
    request_id: str
    assertion_id: str
    assertion_expires: dt.datetime
    name_id: str
    name_qualifier: str
    session_index: str | None
    return_url: str | None


def decode_saml(value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=False)
    except (binascii.Error, ValueError):
        raise ResponseRejected("SAMLResponse is not base64") from None


def _one(parent: etree._Element, tag: str, what: str) -> etree._Element:
    found = parent.findall(tag)
    if len(found) != 1:
        raise ResponseRejected(f"{what} {'missing' if not found else 'repeated'}")
    return found[0]


def _text(node: etree._Element, what: str) -> str:
    value = (node.text or "").strip()
    if not value or len(node):
        raise ResponseRejected(f"{what} is empty")
    return value


def _instant(value: str | None, what: str) -> dt.datetime:
    parsed = saml.parse_instant(value)
    if parsed is None:
        raise ResponseRejected(f"{what} missing or not a UTC xs:dateTime")
    return parsed


def _check_issuer(node: etree._Element, idp_entity_id: str, what: str, *, format_required: bool) -> None:
    if _text(node, what) != idp_entity_id:
        raise ResponseRejected(f"{what} is not the identity provider's entity id")
    fmt = node.get("Format")
    if fmt is None and format_required:
        raise ResponseRejected(f"{what} Format missing")
    if fmt is not None and fmt != saml.NAMEID_ENTITY:
        raise ResponseRejected(f"{what} Format must be {saml.NAMEID_ENTITY}")


class ResponseValidator:
    """Validates one Response for one tenant's SP against the IdPs it trusts."""

    def __init__(self, sp: ServiceProvider, idps: IdpRegistry) -> None:
        self.sp = sp
        self.idps = idps

    def validate(self, saml_response: str, *, take_pending: Callable[[str], PendingLogin | None],
                 now: dt.datetime) -> SpidLogin:
        """`take_pending(request_id)` returns and forgets the pending login (single use)."""
        skew = dt.timedelta(seconds=self.sp.clock_skew_seconds)
        root = parse(decode_saml(saml_response))
        if root.tag != f"{SAMLP}Response":
            raise ResponseRejected("not a SAML Response")
        ids = Counter(node.get("ID") for node in root.iter(etree.Element) if node.get("ID") is not None)
        if any(count > 1 for count in ids.values()):
            raise ResponseRejected("duplicate ID attributes (signature wrapping)")
        if not root.get("ID"):
            raise ResponseRejected("Response ID missing")
        if root.get("Version") != "2.0":
            raise ResponseRejected("Response Version must be 2.0")
        issued = _instant(root.get("IssueInstant"), "Response IssueInstant")
        in_response_to = root.get("InResponseTo")
        if not in_response_to:
            raise ResponseRejected("Response InResponseTo missing")
        pending = take_pending(in_response_to)
        if pending is None or pending.tenant != self.sp.tenant:
            raise UnknownRequest("InResponseTo matches no pending login (expired, used or never sent)")
        if issued < pending.issued_at - skew or issued > now + skew or now - issued > MAX_RESPONSE_AGE:
            raise ResponseRejected("Response IssueInstant outside the request's lifetime")
        if not root.get("Destination"):
            raise ResponseRejected("Response Destination missing")
        if root.get("Destination") != pending.acs_url:
            raise ResponseRejected("Response Destination is not our AssertionConsumerService")
        idp = self.idps.get(pending.idp_entity_id)
        _check_issuer(_one(root, f"{SAML}Issuer", "Response Issuer"), idp.entity_id, "Response Issuer",
                      format_required=False)
        status = _one(root, f"{SAMLP}Status", "Status")
        code = _one(status, f"{SAMLP}StatusCode", "StatusCode")
        if not code.get("Value"):
            raise ResponseRejected("StatusCode Value missing")
        if code.get("Value") != saml.STATUS_SUCCESS:
            message = status.findtext(f"{SAMLP}StatusMessage")
            error = saml.idp_error(message)
            if error is None:
                raise AuthenticationFailed("the identity provider did not authenticate the citizen")
            number, kind, reason = error
            raise (LoginCancelled if kind == "cancelled" else AuthenticationFailed)(f"{reason} (SPID ErrorCode nr{number})")  # noqa: E501
        if root.find(f"{SAML}EncryptedAssertion") is not None:
            raise ResponseRejected("encrypted assertions are not used by SPID")
        if root.find("{" + NS["ds"] + "}Signature") is not None:
            verify(root, idp.certificates, "Response")
        assertion = _one(root, f"{SAML}Assertion", "Assertion")
        if len(root.findall(f".//{SAML}Assertion")) != 1:
            raise ResponseRejected("more than one Assertion (signature wrapping)")
        return self._assertion(assertion, pending, idp.entity_id, idp.certificates, now, skew)

    def _assertion(self, assertion: etree._Element, pending: PendingLogin, idp_entity_id: str,
                   certificates: tuple[str, ...], now: dt.datetime, skew: dt.timedelta) -> SpidLogin:
        if not assertion.get("ID"):
            raise ResponseRejected("Assertion ID missing")
        if assertion.get("Version") != "2.0":
            raise ResponseRejected("Assertion Version must be 2.0")
        issued = _instant(assertion.get("IssueInstant"), "Assertion IssueInstant")
        if issued < pending.issued_at - skew or issued > now + skew:
            raise ResponseRejected("Assertion IssueInstant outside the request's lifetime")
        verify(assertion, certificates, "Assertion")
        if any(True for _ in assertion.iter(etree.Comment)):
            raise ResponseRejected("comments inside the Assertion are not accepted")
        _check_issuer(_one(assertion, f"{SAML}Issuer", "Assertion Issuer"), idp_entity_id, "Assertion Issuer",
                      format_required=True)
        subject = _one(assertion, f"{SAML}Subject", "Subject")
        name_id = _one(subject, f"{SAML}NameID", "NameID")
        name_value = _text(name_id, "NameID")
        if name_id.get("Format") != saml.NAMEID_TRANSIENT:
            raise ResponseRejected(f"NameID Format must be {saml.NAMEID_TRANSIENT}")
        if not name_id.get("NameQualifier"):
            raise ResponseRejected("NameID NameQualifier missing")
        confirmation = _one(subject, f"{SAML}SubjectConfirmation", "SubjectConfirmation")
        if confirmation.get("Method") != saml.CM_BEARER:
            raise ResponseRejected(f"SubjectConfirmation Method must be {saml.CM_BEARER}")
        data = _one(confirmation, f"{SAML}SubjectConfirmationData", "SubjectConfirmationData")
        if data.get("Recipient") != pending.acs_url:
            raise ResponseRejected("SubjectConfirmationData Recipient is not our AssertionConsumerService")
        if data.get("InResponseTo") != pending.request_id:
            raise ResponseRejected("SubjectConfirmationData InResponseTo is not our request")
        confirm_until = _instant(data.get("NotOnOrAfter"), "SubjectConfirmationData NotOnOrAfter")
        if now >= confirm_until + skew:
            raise ResponseRejected("SubjectConfirmationData expired")
        conditions = _one(assertion, f"{SAML}Conditions", "Conditions")
        not_before = _instant(conditions.get("NotBefore"), "Conditions NotBefore")
        not_after = _instant(conditions.get("NotOnOrAfter"), "Conditions NotOnOrAfter")
        if now + skew < not_before:
            raise ResponseRejected("Assertion not yet valid (Conditions NotBefore)")
        if now >= not_after + skew:
            raise ResponseRejected("Assertion expired (Conditions NotOnOrAfter)")
        restriction = _one(conditions, f"{SAML}AudienceRestriction", "AudienceRestriction")
        audience = _one(restriction, f"{SAML}Audience", "Audience")
        if _text(audience, "Audience") != self.sp.entity_id:
            raise ResponseRejected("Audience is not our entity id")
        statement = _one(assertion, f"{SAML}AuthnStatement", "AuthnStatement")
        context = _one(statement, f"{SAML}AuthnContext", "AuthnContext")
        class_ref = _text(_one(context, f"{SAML}AuthnContextClassRef", "AuthnContextClassRef"), "AuthnContextClassRef")
        level = saml.LEVEL_OF.get(class_ref)
        if level is None:
            raise ResponseRejected("AuthnContextClassRef is not a SPID level")
        if level < pending.level:
            raise LevelTooLow(f"SPID level {level} received, {pending.level} requested")
        citizen = self._citizen(assertion)
        return SpidLogin(citizen=citizen, level=level, idp_entity_id=idp_entity_id, request_id=pending.request_id,
                         assertion_id=assertion.get("ID", ""), assertion_expires=max(not_after, confirm_until),
                         name_id=name_value, name_qualifier=name_id.get("NameQualifier", ""),
                         session_index=statement.get("SessionIndex"), return_url=pending.return_url)

    def _citizen(self, assertion: etree._Element) -> Citizen:
        statements = assertion.findall(f"{SAML}AttributeStatement")
        if len(statements) != 1:
            raise ResponseRejected("AttributeStatement missing or repeated")
        attributes: dict[str, str] = {}
        for attribute in statements[0].findall(f"{SAML}Attribute"):
            name = attribute.get("Name")
            values = attribute.findall(f"{SAML}AttributeValue")
            if not name or len(values) != 1:
                raise ResponseRejected("an Attribute has no name or not exactly one value")
            attributes[name] = (values[0].text or "").strip()
        if not attributes:
            raise ResponseRejected("AttributeStatement without attributes")
        missing = [n for n in ("fiscalNumber",) if not attributes.get(n)]
        if missing:
            raise ResponseRejected(f"requested attributes missing: {', '.join(missing)}")
        raw = attributes["fiscalNumber"].upper()
        if not raw.startswith("TINIT-"):
            raise ResponseRejected("fiscalNumber must be TINIT-<fiscal code>")
        fiscal_code = raw.removeprefix("TINIT-")
        if not codicefiscale.is_valid(fiscal_code):
            raise ResponseRejected("fiscalNumber is not a valid Italian fiscal code")
        return Citizen(fiscal_code=fiscal_code, name=attributes.get("name") or None,
                       family_name=attributes.get("familyName") or None, email=attributes.get("email") or None,
                       spid_code=attributes.get("spidCode") or None)
