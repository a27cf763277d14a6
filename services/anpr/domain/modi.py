"""AgID ModI headers that ANPR's PDND e-services require on every call.

Why: ANPR declares INTEGRITY_REST_02 and AUDIT_REST_02 (specs/modi). So each request carries
- `Digest: SHA-256=<base64 sha256 of the body>` and `Agid-JWT-Signature`, a JWS (header `kid` of the
  key registered on PDND) whose `signed_headers` repeat the digest and content type;
- `Agid-JWT-TrackingEvidence`, a JWS with `userID`, `userLocation`, `LoA` of the operator (or flow)
  that caused the call; its SHA-256 is bound into the PDND voucher (`digest` claim).
Both use the e-service's *audience* (as on the PDND card — not the URL called), and live briefly.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from jose import jwt

ALGORITHM = "RS256"
SIGNATURE_LIFETIME_SECONDS = 60
TRACKING_LIFETIME_SECONDS = 300
CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class AuditContext:
    """Who, from where and how strongly authenticated, caused the call (AUDIT_REST_02)."""

    user_id: str  # an internal id, never a fiscal code
    user_location: str  # the workstation / channel
    loa: str  # e.g. "SPID_L2", "CIE_L3", "SYSTEM"

    def key(self) -> tuple[str, str, str]:
        return (self.user_id, self.user_location, self.loa)


def digest_header(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def _sign(claims: dict[str, Any], *, key_id: str, private_key_pem: str) -> str:
    return str(jwt.encode(claims, private_key_pem, algorithm=ALGORITHM, headers={"kid": key_id, "typ": "JWT"}))


def signature_header(body: bytes, *, client_id: str, key_id: str, private_key_pem: str, audience: str,
                     now: float | None = None) -> tuple[str, str]:
    """(`Digest`, `Agid-JWT-Signature`) for one request body (INTEGRITY_REST_02)."""
    issued = int(now if now is not None else time.time())
    digest = digest_header(body)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + SIGNATURE_LIFETIME_SECONDS,
        "jti": str(uuid.uuid4()),
        "signed_headers": [{"digest": digest}, {"content-type": CONTENT_TYPE}],
    }
    return digest, _sign(claims, key_id=key_id, private_key_pem=private_key_pem)


def tracking_evidence(audit: AuditContext, *, client_id: str, key_id: str, private_key_pem: str, audience: str,
                      purpose_id: str, now: float | None = None) -> str:
    """`Agid-JWT-TrackingEvidence` (AUDIT_REST_02); reused while its voucher lives, so it is cached with it."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": client_id,
        "aud": audience,
        "purposeId": purpose_id,
        "dnonce": secrets.randbelow(9 * 10**12) + 10**12,
        "jti": str(uuid.uuid4()),
        "iat": issued,
        "nbf": issued,
        "exp": issued + TRACKING_LIFETIME_SECONDS,
        "userID": audit.user_id,
        "userLocation": audit.user_location,
        "LoA": audit.loa,
    }
    return _sign(claims, key_id=key_id, private_key_pem=private_key_pem)
