"""SAML/SPID constants and small value helpers (levels, instants, ids)."""

from __future__ import annotations

import datetime as dt
import re
import secrets

BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
NAMEID_ENTITY = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
STATUS_REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
STATUS_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
ATTRNAME_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

LEVELS = {1: "https://www.spid.gov.it/SpidL1", 2: "https://www.spid.gov.it/SpidL2", 3: "https://www.spid.gov.it/SpidL3"}
LEVEL_OF = {uri: level for level, uri in LEVELS.items()}

# SPID "anomalie" reported by IdPs as StatusMessage "ErrorCode nrNN" (Tabella messaggi di anomalia).
IDP_ERRORS: dict[int, tuple[str, str]] = {
    19: ("failed", "authentication failed after repeated wrong credentials"),
    20: ("failed", "the citizen has no credentials of the requested level"),
    21: ("failed", "the authentication timed out"),
    22: ("cancelled", "the citizen refused consent to send their data"),
    23: ("failed", "the citizen's identity is suspended or revoked, or the credentials are blocked"),
    25: ("cancelled", "the citizen cancelled the login"),
    30: ("failed", "the identity is not a SPID identity of the expected kind"),
}
_ERROR_CODE = re.compile(r"ErrorCode nr(\d{2})")
# xs:dateTime in UTC as SAML requires (Z), with optional fractional seconds.
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


def new_id() -> str:
    """An xs:ID (must not start with a digit) with 160 bits of randomness."""
    return "_" + secrets.token_hex(20)


def instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(value: str | None) -> dt.datetime | None:
    """A SAML instant, or None when missing, empty or not UTC xs:dateTime."""
    if not value or not _INSTANT.match(value):
        return None
    base, _, fraction = value[:-1].partition(".")
    parsed = dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    if fraction:
        parsed += dt.timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return parsed


def idp_error(status_message: str | None) -> tuple[int, str, str] | None:
    """(code, kind, readable reason) for a SPID 'ErrorCode nrNN' status message."""
    match = _ERROR_CODE.search(status_message or "")
    if not match:
        return None
    code = int(match.group(1))
    kind, reason = IDP_ERRORS.get(code, ("failed", "the identity provider reported an error"))
    return code, kind, reason
