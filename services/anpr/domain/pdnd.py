"""PDND Interoperabilità: the client assertion and the voucher cache.

Why: PDND is strict and its errors are terse. The assertion's header carries exactly `kid`, `alg`
(RS256, the only accepted value) and `typ`; its claims exactly `iss` = `sub` = client id, `aud`,
`jti`, `iat`, `exp`, `purposeId` and, for AUDIT_REST_02, `digest` — and never `nbf`
(specs/pdnd, README section 4). Vouchers are reused until shortly before they expire, per tenant,
purpose and (for AUDIT_REST_02) the tracking evidence they are bound to.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jose import jwt

ALGORITHM = "RS256"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_TYPE = "client_credentials"
ASSERTION_LIFETIME_SECONDS = 120  # PDND only needs it valid while it answers
REFRESH_MARGIN_SECONDS = 30  # a voucher is renewed this long before its expiry


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


def client_assertion(*, client_id: str, key_id: str, private_key_pem: str, audience: str, purpose_id: str,
                     digest_of: str | None = None, now: float | None = None, jti: str | None = None) -> str:
    """The signed client assertion; `digest_of` is the Agid-JWT-TrackingEvidence to bind (AUDIT_REST_02)."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": jti or str(uuid.uuid4()),
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_SECONDS,
        "purposeId": purpose_id,
    }
    if digest_of is not None:
        claims["digest"] = {"alg": "SHA256", "value": sha256_hex(digest_of)}
    # python-jose builds the header from `alg` and `typ`; `kid` is the only one we add.
    return str(jwt.encode(claims, private_key_pem, algorithm=ALGORITHM, headers={"kid": key_id, "typ": "JWT"}))


def token_form(client_id: str, assertion: str) -> dict[str, str]:
    """The form body of POST /token.oauth2 (application/x-www-form-urlencoded)."""
    return {
        "client_id": client_id,
        "client_assertion": assertion,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "grant_type": GRANT_TYPE,
    }


@dataclass(frozen=True)
class Voucher:
    access_token: str
    token_type: str
    expires_at: float

    def usable(self, now: float, margin: float = REFRESH_MARGIN_SECONDS) -> bool:
        return now < self.expires_at - margin


class VoucherCache:
    """Vouchers by key (tenant, purpose, bound digest); thread-safe, renewed shortly before expiry."""

    def __init__(self, *, clock: Callable[[], float] = time.time, margin: float = REFRESH_MARGIN_SECONDS) -> None:
        self._clock = clock
        self._margin = margin
        self._vouchers: dict[tuple[str, ...], Voucher] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], obtain: Callable[[], tuple[str, str, int]]) -> Voucher:
        """The cached voucher for `key`, or a new one from `obtain()` -> (token, type, expires_in)."""
        now = self._clock()
        with self._lock:
            cached = self._vouchers.get(key)
            if cached is not None and cached.usable(now, self._margin):
                return cached
        token, token_type, expires_in = obtain()
        voucher = Voucher(token, token_type, now + expires_in)
        with self._lock:
            self._vouchers = {k: v for k, v in self._vouchers.items() if v.usable(now, self._margin)}
            self._vouchers[key] = voucher
        return voucher

    def forget(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._vouchers.pop(key, None)

    def __len__(self) -> int:
        return len(self._vouchers)
