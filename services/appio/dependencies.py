"""nameko edge of the App IO service: the delivery loop and the IO clients it uses.

Why: the loop is plain Python (`delivery.Deliverer`); this provider gives it a managed
greenthread, a pool of workers sized by `SPORTELLO_APPIO_CONCURRENCY`, the rate limiter (per key:
in the database, shared by every replica, on PostgreSQL; in process on SQLite — ADR 0011), and
a wake-up when a new message is recorded.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import eventlet
import structlog
from eventlet.greenpool import GreenPool
from nameko.extensions import DependencyProvider

from services.appio.adapters.io_http import IOClients, IOServicesClient
from services.appio.config import AppIOSettings
from services.appio.delivery import Deliverer
from services.appio.domain.delivery import RetryPolicy
from sportello.edge.kernel import KernelContext, ServiceDatabase
from sportello.metrics import observed_sleep
from sportello.ratelimit import CallLimiter, SlidingWindowLimiter
from sportello.ratelimit_db import PostgresWindowLimiter

log = structlog.get_logger("appio.dispatcher")


class DeliveryEngine(DependencyProvider):
    """Injects itself (workers call `wake()` after recording a message); runs the dispatcher."""

    kernel = KernelContext()

    def setup(self) -> None:
        self.config = AppIOSettings()
        config = self.config
        self.limiter = self._limiter(config)
        self.clients = IOClients(lambda base_url: IOServicesClient(
            base_url, limiter=self.limiter, timeout=config.http_timeout_seconds,
            connect_timeout=config.connect_timeout_seconds))
        policy = RetryPolicy(max_attempts=config.max_attempts, base_seconds=config.backoff_seconds,
                             cap_seconds=config.backoff_cap_seconds, status_poll_seconds=config.status_poll_seconds,
                             follow_seconds=config.follow_seconds)
        database = ServiceDatabase(self.kernel.database, self.kernel.wake_relay)
        self.deliverer = Deliverer(database, self.clients, self.kernel.tenants, policy=policy,
                                   lease_seconds=config.lease_seconds)
        self._wake = threading.Event()
        self._inflight: set[str] = set()
        self._pool = GreenPool(config.concurrency)
        self._running = False

    def _limiter(self, config: AppIOSettings) -> CallLimiter:
        window = config.rate_window_seconds + config.rate_margin_seconds
        sleep = observed_sleep("appio", eventlet.sleep)
        database = self.kernel.database
        self.shared_limiter = config.rate_limiter == "shared" or (
            config.rate_limiter == "auto" and not database.is_sqlite)
        if self.shared_limiter:
            return PostgresWindowLimiter(database.engine, config.rate_limit, window,
                                         max_call_seconds=config.max_call_seconds, sleep=sleep)
        return SlidingWindowLimiter(config.rate_limit, window, sleep=sleep)

    def start(self) -> None:
        self._running = True
        self._thread = self.container.spawn_managed_thread(self._loop, identifier="appio_dispatcher")

    def stop(self) -> None:
        self._running = False
        self._wake.set()
        self._thread.wait()
        self._pool.waitall()
        self.clients.close()

    def kill(self) -> None:
        self._running = False
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def get_dependency(self, worker_ctx: Any) -> DeliveryEngine:
        return self

    def _one(self, message_id: str) -> None:
        try:
            self.deliverer.process(message_id)
        except Exception as exc:  # noqa: BLE001 - the row keeps its lease and is retried when it expires
            log.error("appio_delivery_crashed", message_id=message_id, error=type(exc).__name__)
        finally:
            self._inflight.discard(message_id)
            self._wake.set()

    def _loop(self) -> None:
        poll = self.config.poll_seconds
        # A process that just (re)started with an in-process limiter cannot know what its predecessor
        # sent in the last window: waiting one window before the first call keeps a restart from
        # exceeding IO's limit (the shared limiter remembers, in the database). A plain sleep, not a
        # wait on `_wake`: a message recorded meanwhile must not cut the window short.
        quiet = 0.0 if self.shared_limiter else self.config.rate_window_seconds + self.config.rate_margin_seconds
        quiet_until = time.monotonic() + quiet
        while self._running and time.monotonic() < quiet_until:
            eventlet.sleep(min(0.1, max(0.0, quiet_until - time.monotonic())))
        while self._running:
            self._wake.clear()
            try:
                self.deliverer.resolve_abandoned()
                due = self.deliverer.due(limit=self.config.concurrency * 4, exclude=frozenset(self._inflight))
            except Exception as exc:  # noqa: BLE001 - database away: try again later
                log.warning("appio_dispatch_failed", error=type(exc).__name__)
                eventlet.sleep(min(5.0, poll * 4))
                continue
            for message_id in due:
                if not self._running:
                    break
                self._inflight.add(message_id)
                self._pool.spawn_n(self._one, message_id)  # blocks while the pool is full: back-pressure
            if not due:
                self._wake.wait(timeout=poll)
            else:
                eventlet.sleep(0)
