"""nameko entrypoints of the `spid` service (thin: they translate and delegate)."""

from __future__ import annotations

from typing import Any

from services.spid.dependencies import GatewayTokens
from sportello.edge.rpc import rpc
from sportello.edge.service import PlatformService
from sportello.tokens import TokenIssuer


class SpidService(PlatformService):
    """SPID and CIE login, gateway tokens."""

    name = "spid"
    tokens: TokenIssuer = GatewayTokens()  # type: ignore[assignment]

    @rpc
    def jwks(self) -> dict[str, Any]:
        """The public keys that verify gateway tokens (current and, while rotating, previous)."""
        return self.tokens.jwks()
