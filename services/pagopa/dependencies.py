"""nameko dependency: the `Positions` use cases wired to the kernel database and one GPD client.

Why: one HTTP client and one rate limiter per process, so every worker shares GPD's 100 calls /
10 s per key instead of each counting on its own.
"""

from __future__ import annotations

import time
from typing import Any

from nameko.extensions import DependencyProvider

from services.pagopa.adapters.checkout import HttpCheckout
from services.pagopa.adapters.gpd import HttpGpd, gpd_limiter
from services.pagopa.adapters.nodo import HttpNodoReporting
from services.pagopa.application import Positions
from services.pagopa.config import settings
from sportello.edge.kernel import KernelContext, ServiceDatabase
from sportello.metrics import observed_sleep


class PositionsProvider(DependencyProvider):
    kernel = KernelContext()

    def setup(self) -> None:
        self.config = settings()  # a bad value stops the start-up here
        self.gpd = HttpGpd(limiter=gpd_limiter(self.config.gpd_rate_limit, self.config.gpd_rate_window_seconds,
                                               sleep=observed_sleep("gpd", time.sleep)))
        self.checkout = HttpCheckout()
        self.nodo = HttpNodoReporting()

    def stop(self) -> None:
        self.gpd.client.close()
        self.checkout.client.close()
        self.nodo.client.close()

    def get_dependency(self, worker_ctx: Any) -> Positions:
        # the same client (and limiter) serves GPD's receipts API
        return Positions(ServiceDatabase(self.kernel.database, self.kernel.wake_relay), self.kernel.tenants,
                         self.gpd, correlation_id=worker_ctx.data.get("correlation_id"), gpd_receipts=self.gpd,
                         checkout=self.checkout, nodo_reporting=self.nodo)
