"""Runs the outbox relay inside a service's container, in its own managed greenthread.

Why: the relay core (`sportello.outbox.OutboxRelay`) is plain Python; this extension only gives
it a loop: relay whenever a transaction commits or the poll interval passes, back off while the
broker is unreachable, and report its state to the health check.
"""

from __future__ import annotations

import time
from typing import Any

import eventlet
import structlog
from nameko.extensions import DependencyProvider

from sportello.bus import ConfirmingPublisher
from sportello.edge.kernel import KernelContext
from sportello.outbox import OutboxRelay

log = structlog.get_logger("sportello.relay")


class OutboxRelayProvider(DependencyProvider):
    """Injects the relay's status (for health checks); runs the relay loop while the service runs."""

    kernel = KernelContext()

    def setup(self) -> None:
        settings = self.kernel.settings
        self.publisher = ConfirmingPublisher(settings.amqp_uri)
        self.relay = OutboxRelay(self.kernel.database, self.publisher, batch_size=settings.outbox_batch_size)
        self.last_error: str | None = None
        self.last_success: float | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self._thread = self.container.spawn_managed_thread(self._loop, identifier="outbox_relay")

    def stop(self) -> None:
        self._running = False
        self.kernel.wake_relay.set()
        self._thread.wait()
        self.publisher.close()

    def kill(self) -> None:
        self._running = False
        self.publisher.close()

    def _loop(self) -> None:
        poll = self.kernel.settings.outbox_poll_seconds
        backoff = poll
        wake = self.kernel.wake_relay
        while self._running:
            wake.clear()  # cleared before reading, so a commit racing with this round wakes the next
            try:
                moved = self.relay.relay_once()
            except Exception as exc:  # noqa: BLE001 - the broker or database is away: try again later
                if self.last_error != type(exc).__name__:
                    log.warning("outbox_relay_failed", error=type(exc).__name__)
                self.last_error = type(exc).__name__
                backoff = min(backoff * 2, 5.0)
                eventlet.sleep(backoff)
                continue
            if self.last_error is not None:
                log.info("outbox_relay_recovered")
            self.last_error, self.last_success, backoff = None, time.time(), poll
            if moved:
                eventlet.sleep(0)  # more may be waiting: go again at once, yielding to workers
                continue
            # threading.Event is green under eventlet's monkey patching: waits without blocking workers
            wake.wait(timeout=poll)

    def status(self) -> dict[str, Any]:
        lag = self.relay.lag()
        return {**lag, "last_error": self.last_error}

    def get_dependency(self, worker_ctx: Any) -> OutboxRelayProvider:
        return self
