"""Dependency providers of the `spid` service."""

from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider

from sportello.edge.kernel import KernelContext
from sportello.tenants import SecretSource
from sportello.tokens import SigningKey, TokenIssuer

CURRENT_KEY = "GATEWAY_TOKEN_SIGNING_KEY"
PREVIOUS_KEY = "GATEWAY_TOKEN_SIGNING_KEY_PREVIOUS"  # set while rotating: still published, still accepted


class GatewayTokens(DependencyProvider):
    """The installation's token issuer, built once from its secrets (missing key: no start)."""

    kernel = KernelContext()

    def setup(self) -> None:
        source = SecretSource(secrets_dir=self.kernel.settings.secrets_dir)
        previous = source.find(PREVIOUS_KEY)
        self.issuer = TokenIssuer(SigningKey(source.get(CURRENT_KEY)),
                                  SigningKey(previous) if previous else None)

    def get_dependency(self, worker_ctx: Any) -> TokenIssuer:
        return self.issuer
