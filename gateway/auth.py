"""Who is calling: the gateway verifies tokens issued by `services/spid` against its JWKS.

Why: the gateway trusts only what `spid` vouches for. The JWKS is fetched over RPC and cached;
a token signed with a key id the cache does not know triggers one refresh (key rotation).
Routes ask `authenticate(request, roles=...)` and get a `Principal` or a typed error.

Verified tokens are remembered until they expire (ADR 0012): an RS256 check per request would cost
more than the rest of a cached read. A remembered token is still refused once expired, and all are
forgotten when the key set changes (a key withdrawn from the JWKS stops its tokens at once).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request

from sportello.errors import Forbidden
from sportello.tokens import Principal, Role, TokenVerifier, Unauthenticated

JWKS_TTL_SECONDS = 300.0
VERIFIED_TOKENS = 20_000  # remembered at most (least recently used forgotten first)
LEEWAY_SECONDS = 30  # as TokenVerifier's default


class Authenticator:
    """Holds the cached verifier; `fetch_jwks` is a call to `spid.jwks` with a deadline."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._verifier: TokenVerifier | None = None
        self._fetched_at = 0.0
        self._kids: frozenset[str] = frozenset()
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        self._clock = clock

    def _verifier_for(self, fetch_jwks: Callable[[], dict[str, Any]], *, refresh: bool) -> TokenVerifier:
        stale = time.monotonic() - self._fetched_at > JWKS_TTL_SECONDS
        if self._verifier is None or stale or refresh:
            jwks = fetch_jwks()
            self._verifier = TokenVerifier(jwks)
            self._fetched_at = time.monotonic()
            kids = frozenset(str(key.get("kid")) for key in jwks.get("keys", []))
            if kids != self._kids:
                self._verified.clear()
                self._kids = kids
        return self._verifier

    def _verify(self, token: str, fetch_jwks: Callable[[], dict[str, Any]]) -> Principal:
        if time.monotonic() - self._fetched_at > JWKS_TTL_SECONDS:
            self._verifier_for(fetch_jwks, refresh=True)  # notices a withdrawn key even on remembered tokens
        known = self._verified.get(token)
        if known is not None:
            if self._clock() < known.expires_at + LEEWAY_SECONDS:
                self._verified.move_to_end(token)
                return known
            del self._verified[token]
        try:
            principal = self._verifier_for(fetch_jwks, refresh=False).verify(token)
        except Unauthenticated as exc:
            if exc.detail != "token signed with an unknown key":
                raise
            principal = self._verifier_for(fetch_jwks, refresh=True).verify(token)
        self._verified[token] = principal
        while len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return principal

    def authenticate(self, request: Request, fetch_jwks: Callable[[], dict[str, Any]], *,
                     roles: tuple[Role, ...] = ("citizen", "operator", "admin")) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send 'Authorization: Bearer <token>'")
        principal = self._verify(token.strip(), fetch_jwks)
        if not principal.has_role(*roles):
            raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
        return principal
