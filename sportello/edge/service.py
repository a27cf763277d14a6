"""What every Sportello service has: health, readiness and dead-letter operations over RPC.

Why: the gateway's health endpoint, the operator CLI and the back office treat all services
alike. Subclasses add their own entrypoints; these stay thin and delegate to the kernel.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from nameko.timer import timer

import sportello.contracts  # noqa: F401 - registers every event type this service may receive
from sportello.deadletters import DeadLetterStore, IncomingDeadLetter
from sportello.edge.kernel import DatabaseProvider, DeadLettersProvider, RequestContextProvider, TenantsProvider
from sportello.edge.messaging import BrokerProvider, dead_letter_recorder
from sportello.edge.metrics import ServiceMetricsProvider
from sportello.edge.relay import OutboxRelayProvider
from sportello.edge.rpc import rpc
from sportello.edge.tracing import TracingProvider
from sportello.version import __version__

log = structlog.get_logger("sportello.service")


class PlatformService:
    """Base class of the four services: kernel dependencies and the operations they share."""

    name = "platform"

    db = DatabaseProvider()
    tenants = TenantsProvider()
    request = RequestContextProvider()
    relay = OutboxRelayProvider()
    dead_letters: DeadLetterStore = DeadLettersProvider()  # type: ignore[assignment]
    broker = BrokerProvider()
    metrics = ServiceMetricsProvider()
    tracing = TracingProvider()

    @rpc
    def health(self) -> dict[str, Any]:
        """Liveness and readiness in one answer: database reachable, relay keeping up."""
        started = time.perf_counter()
        checks: dict[str, Any] = {}
        status = "ok"
        try:
            with self.db.transaction() as session:
                session.connection().exec_driver_sql("SELECT 1")
            checks["database"] = {"status": "ok"}
        except Exception as exc:  # noqa: BLE001 - reported, not raised: health must answer
            checks["database"] = {"status": "down", "error": type(exc).__name__}
            status = "down"
        if status == "ok":
            outbox = self.relay.status()
            checks["outbox"] = outbox
            checks["dead_letters"] = {"pending": self.dead_letters.count_pending()}
            if outbox["last_error"] is not None:
                status = "degraded"
        checks["tenants"] = len(self.tenants)
        return {
            "service": self.name,
            "status": status,
            "version": __version__,
            "checks": checks,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
        }

    @rpc
    def list_dead_letters(self, tenant: str | None = None, pending_only: bool = True,
                          limit: int = 100) -> list[dict[str, Any]]:
        self.request.bind(tenant=tenant)
        return [letter.as_dict() for letter in self.dead_letters.list(tenant=tenant, pending_only=pending_only,
                                                                       limit=limit)]

    @rpc
    def replay_dead_letter(self, letter_id: int, tenant: str | None = None) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        letter = self.dead_letters.replay(int(letter_id), self.broker, tenant=tenant)
        log.info("dead_letter_replayed", dead_letter=letter.id, queue=letter.queue)
        return letter.as_dict()

    @rpc
    def prune_history(self) -> dict[str, int]:
        """Delete published outbox rows, old inbox claims and old replayed dead letters now."""
        removed = self.db.prune_history()
        log.info("history_pruned", **removed)
        return removed

    @timer(interval=3600)
    def prune_history_hourly(self) -> None:
        self.prune_history()

    @dead_letter_recorder
    def record_dead_letter(self, letter: IncomingDeadLetter) -> None:
        if self.dead_letters.record(letter):
            log.error("dead_letter_recorded", queue=letter.queue, event_type=letter.event_type,
                      attempts=letter.attempts)
