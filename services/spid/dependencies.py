"""Dependency providers of the `spid` service."""

from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider

from services.spid.adapters.metadata import HttpOrFileMetadata
from services.spid.adapters.oidc_http import HttpOidc
from services.spid.application import LoginApplication
from sportello.db import Database
from sportello.edge.kernel import KernelContext
from sportello.tenants import SecretSource
from sportello.tokens import SigningKey, TokenIssuer

CURRENT_KEY = "GATEWAY_TOKEN_SIGNING_KEY"
PREVIOUS_KEY = "GATEWAY_TOKEN_SIGNING_KEY_PREVIOUS"  # set while rotating: still published, still accepted


def build_issuer(source: SecretSource) -> TokenIssuer:
    previous = source.find(PREVIOUS_KEY)
    return TokenIssuer(SigningKey(source.get(CURRENT_KEY)), SigningKey(previous) if previous else None)


class GatewayTokens(DependencyProvider):
    """The installation's token issuer, built once from its secrets (missing key: no start)."""

    kernel = KernelContext()

    def setup(self) -> None:
        self.issuer = build_issuer(SecretSource(secrets_dir=self.kernel.settings.secrets_dir))

    def get_dependency(self, worker_ctx: Any) -> TokenIssuer:
        return self.issuer


class Logins(DependencyProvider):
    """The login use cases, sharing the kernel's database and tenants (one per process)."""

    kernel = KernelContext()

    def setup(self) -> None:
        issuer = build_issuer(SecretSource(secrets_dir=self.kernel.settings.secrets_dir))
        database: Database = self.kernel.database
        self.app = LoginApplication(database, self.kernel.tenants, issuer, HttpOrFileMetadata(), oidc=HttpOidc())

    def get_dependency(self, worker_ctx: Any) -> LoginApplication:
        return self.app
