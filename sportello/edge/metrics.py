"""nameko wiring of the metrics: one provider times every worker of a service or the gateway.

Why a dependency provider: nameko calls `worker_setup` / `worker_result` around every RPC call,
event and HTTP request, whatever the entrypoint, so no route or handler has to remember to time
itself. The service's outbox and dead-letter gauges are read at scrape time from its database.
"""

from __future__ import annotations

import time
from typing import Any

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.web.handlers import HttpRequestHandler
from prometheus_client import REGISTRY

from sportello import metrics
from sportello.edge.kernel import KernelContext
from sportello.edge.messaging import DeadLetterRecorder, ReliableEventHandler
from sportello.errors import SportelloError

_collected: set[str] = set()  # services whose state collector is registered (once per process)


class MetricsProvider(DependencyProvider):
    """Times RPC, HTTP and event workers; `http_status` maps an escaped error to its HTTP status.

    The gateway uses this one (it has no database); services use `ServiceMetricsProvider`.
    """

    def __init__(self, *, http_status: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http_status = http_status
        self._started: dict[Any, float] = {}

    def get_dependency(self, worker_ctx: Any) -> Any:
        return metrics

    def worker_setup(self, worker_ctx: Any) -> None:
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        started = self._started.pop(worker_ctx, None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        entrypoint = worker_ctx.entrypoint
        service = self.container.service_name
        method = entrypoint.method_name
        if isinstance(entrypoint, Rpc):
            outcome = "ok" if exc_info is None else "error"
            metrics.RPC_DURATION.labels(service, method, outcome).observe(elapsed)
        elif isinstance(entrypoint, HttpRequestHandler):
            request = worker_ctx.args[0] if worker_ctx.args else None
            verb = getattr(request, "method", None) or entrypoint.method  # the catch-all route has many
            metrics.HTTP_DURATION.labels(verb, entrypoint.url, str(self._status(result, exc_info))).observe(elapsed)
        elif isinstance(entrypoint, ReliableEventHandler):
            handled = worker_ctx.args[0] if worker_ctx.args else None
            count = len(handled) if isinstance(handled, list) else 1  # a batch counts its events
            metrics.EVENTS_HANDLED.labels(service, method, "ok" if exc_info is None else "failed").inc(count)
            metrics.EVENT_DURATION.labels(service, method).observe(elapsed)
        elif isinstance(entrypoint, DeadLetterRecorder) and exc_info is None:
            metrics.DEAD_LETTERS_RECORDED.labels(service).inc()

    def worker_teardown(self, worker_ctx: Any) -> None:
        self._started.pop(worker_ctx, None)

    def _status(self, result: Any, exc_info: Any) -> int:
        """The status the caller got (gateway.http turns an escaped error into problem+json)."""
        if exc_info is None:
            return int(getattr(result, "status_code", 200))
        error = exc_info[1]
        if isinstance(error, SportelloError) and self.http_status is not None:
            return int(self.http_status(error))
        return 500


class ServiceMetricsProvider(MetricsProvider):
    """A service's metrics: worker timings plus its outbox and dead letters, read at scrape time."""

    kernel = KernelContext()

    def setup(self) -> None:
        service = self.container.service_name
        if service not in _collected:
            # a service that runs campaigns says how to count their items (`campaign_counts`)
            counts = getattr(self.container.service_cls, "campaign_counts", None)
            REGISTRY.register(metrics.ServiceStateCollector(service, self.kernel.database, counts))
            metrics.readiness.add("database", metrics.database_answers(self.kernel.database))
            _collected.add(service)
