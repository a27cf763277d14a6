"""nameko dependency providers: the kernel handed to a service as narrow, domain-shaped objects.

Why: nameko and eventlet stay here, at the edge. Each provider builds its client once in
`setup()`, hands out a small wrapper per worker, and cleans up after the worker.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from nameko.extensions import DependencyProvider, SharedExtension
from sqlalchemy.orm import Session

from sportello.db import Database
from sportello.deadletters import DeadLetterStore
from sportello.outbox import OUTBOX_WRITTEN
from sportello.retention import RetentionPolicy, prune
from sportello.settings import Settings, load_settings
from sportello.tenants import SecretSource, TenantRegistry, load_tenants

SETTINGS_CONFIG_KEY = "SPORTELLO_SETTINGS"
_SAFE_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def safe_correlation_id(value: Any) -> str:
    """A caller-supplied id if it is short and plain, else a fresh one (ids end up in logs)."""
    if isinstance(value, str) and 8 <= len(value) <= 128 and set(value) <= _SAFE_ID:
        return value
    return str(uuid.uuid4())


class KernelContext(SharedExtension):
    """Per-container: settings, tenants and the service's own database, built once.

    Built lazily on first use because nameko sets extensions up in no fixed order.
    """

    _settings: Settings | None = None

    def setup(self) -> None:
        self._build()

    def _build(self) -> None:
        if self._settings is not None:
            return
        settings = self.container.config.get(SETTINGS_CONFIG_KEY)
        settings = settings if isinstance(settings, Settings) else load_settings()
        self._tenants = load_tenants(settings.tenants_dir, SecretSource(secrets_dir=settings.secrets_dir))
        self._database = Database(settings.database_url_for(self.container.service_name))
        self._wake_relay = threading.Event()
        self._settings = settings

    @property
    def settings(self) -> Settings:
        self._build()
        assert self._settings is not None
        return self._settings

    @property
    def tenants(self) -> TenantRegistry:
        self._build()
        return self._tenants

    @property
    def database(self) -> Database:
        self._build()
        return self._database

    @property
    def wake_relay(self) -> threading.Event:
        """Set after a commit through `ServiceDatabase` that wrote an outbox event: the relay publishes at once."""
        self._build()
        return self._wake_relay

    def stop(self) -> None:
        if self._settings is not None:
            self._database.dispose()


class ServiceDatabase:
    """What a worker sees of the database: `transaction()`, and `prune_history()` for retention."""

    def __init__(self, database: Database, on_commit: threading.Event,
                 retention: RetentionPolicy = RetentionPolicy()) -> None:
        self._database = database
        self._on_commit = on_commit
        self._retention = retention

    def prune_history(self) -> dict[str, int]:
        return prune(self._database, self._retention)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._database.transaction() as session:
            yield session
            wrote_events = bool(session.info.get(OUTBOX_WRITTEN))
        if wrote_events:  # an outbox row is waiting: wake the relay now, not at its next poll
            self._on_commit.set()


class DatabaseProvider(DependencyProvider):
    kernel = KernelContext()

    def get_dependency(self, worker_ctx: Any) -> ServiceDatabase:
        settings = self.kernel.settings
        retention = RetentionPolicy(outbox_days=settings.retention_outbox_days,
                                    inbox_days=settings.retention_inbox_days,
                                    dead_letters_days=settings.retention_dead_letters_days)
        return ServiceDatabase(self.kernel.database, self.kernel.wake_relay, retention)


class TenantsProvider(DependencyProvider):
    kernel = KernelContext()

    def get_dependency(self, worker_ctx: Any) -> TenantRegistry:
        return self.kernel.tenants


class DeadLettersProvider(DependencyProvider):
    kernel = KernelContext()

    def get_dependency(self, worker_ctx: Any) -> DeadLetterStore:
        return DeadLetterStore(self.kernel.database)


class RequestContext:
    """The worker's correlation id and tenant; `bind()` also propagates them over RPC and events."""

    def __init__(self, worker_ctx: Any) -> None:
        self._worker_ctx = worker_ctx

    @property
    def correlation_id(self) -> str:
        return str(self._worker_ctx.data["correlation_id"])

    @property
    def tenant(self) -> str | None:
        value = self._worker_ctx.data.get("tenant")
        return str(value) if value else None

    def bind(self, *, correlation_id: str | None = None, tenant: str | None = None) -> None:
        if correlation_id is not None:
            self._worker_ctx.data["correlation_id"] = safe_correlation_id(correlation_id)
        if tenant is not None:
            self._worker_ctx.data["tenant"] = tenant
        structlog.contextvars.bind_contextvars(
            correlation_id=self._worker_ctx.data["correlation_id"], tenant=self._worker_ctx.data.get("tenant")
        )


class RequestContextProvider(DependencyProvider):
    """Binds correlation id, tenant and entrypoint into every log line of the worker."""

    def worker_setup(self, worker_ctx: Any) -> None:
        worker_ctx.data["correlation_id"] = safe_correlation_id(worker_ctx.data.get("correlation_id"))
        structlog.contextvars.bind_contextvars(
            correlation_id=worker_ctx.data["correlation_id"],
            tenant=worker_ctx.data.get("tenant"),
            entrypoint=worker_ctx.entrypoint.method_name,
            call_id=worker_ctx.call_id,
        )

    def get_dependency(self, worker_ctx: Any) -> RequestContext:
        return RequestContext(worker_ctx)

    def worker_teardown(self, worker_ctx: Any) -> None:
        structlog.contextvars.unbind_contextvars("correlation_id", "tenant", "entrypoint", "call_id")
