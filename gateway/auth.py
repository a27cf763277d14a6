"""Who is calling: the gateway verifies tokens issued by `services/spid` against its JWKS.

Why: the gateway trusts only what `spid` vouches for. The JWKS is fetched over RPC and cached;
a token signed with a key id the cache does not know triggers one refresh (key rotation).
Routes ask `authenticate(request, roles=...)` and get a `Principal` or a typed error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request

from sportello.errors import Forbidden
from sportello.tokens import Principal, Role, TokenVerifier, Unauthenticated

JWKS_TTL_SECONDS = 300.0


class Authenticator:
    """Holds the cached verifier; `fetch_jwks` is a call to `spid.jwks` with a deadline."""

    def __init__(self) -> None:
        self._verifier: TokenVerifier | None = None
        self._fetched_at = 0.0

    def _verifier_for(self, fetch_jwks: Callable[[], dict[str, Any]], *, refresh: bool) -> TokenVerifier:
        stale = time.monotonic() - self._fetched_at > JWKS_TTL_SECONDS
        if self._verifier is None or stale or refresh:
            self._verifier = TokenVerifier(fetch_jwks())
            self._fetched_at = time.monotonic()
        return self._verifier

    def authenticate(self, request: Request, fetch_jwks: Callable[[], dict[str, Any]], *,
                     roles: tuple[Role, ...] = ("citizen", "operator", "admin")) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send 'Authorization: Bearer <token>'")
        token = token.strip()
        try:
            principal = self._verifier_for(fetch_jwks, refresh=False).verify(token)
        except Unauthenticated as exc:
            if exc.detail != "token signed with an unknown key":
                raise
            principal = self._verifier_for(fetch_jwks, refresh=True).verify(token)
        if not principal.has_role(*roles):
            raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
        return principal
