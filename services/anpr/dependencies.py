"""Dependency provider of the `anpr` service: the real adapters, built once per process."""

from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider

from services.anpr.adapters.anpr_rest import AnprRestClient
from services.anpr.adapters.ws6001 import Ws6001Client
from services.anpr.application import AnprApplication
from sportello.edge.kernel import KernelContext, ServiceDatabase


class AnprPorts(DependencyProvider):
    """One PDND/ANPR client (with its voucher cache) and one WS 6001 client per process."""

    kernel = KernelContext()

    def setup(self) -> None:
        self.registry = AnprRestClient()
        self.authority = Ws6001Client()

    def get_dependency(self, worker_ctx: Any) -> AnprApplication:
        correlation = worker_ctx.data.get("correlation_id")
        database = ServiceDatabase(self.kernel.database, self.kernel.wake_relay)  # commits wake the relay
        return AnprApplication(database, self.kernel.tenants, self.registry, self.authority,
                               correlation_id=lambda: correlation)
