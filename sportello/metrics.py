"""Prometheus metrics of a Sportello process, and the small HTTP server that exposes them.

Why: an operator must see, per service, how fast RPC and HTTP answer, how events fare, whether
the outbox keeps up, how many dead letters wait, how the national platforms answer and how long
their rate limits make us wait — without reading logs. Framework-free: the nameko wiring lives in
`sportello.edge.metrics`; adapters call `platform_call` / `observed_sleep` directly.

Each process serves `GET /metrics` (Prometheus text format), `GET /healthz` (the process answers:
liveness) and `GET /readyz` (its readiness checks pass, e.g. its database answers) on the address
of `SPORTELLO_METRICS_ADDRESS` (`host:port`; unset = no server, as under `make run`, where five
processes share one machine). Labels never carry personal data or tenant-supplied free text.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sportello.db import Database
from sportello.errors import ConfigurationError
from sportello.tables import dead_letters, outbox

METRICS_ADDRESS_ENV = "SPORTELLO_METRICS_ADDRESS"
_ADDRESS = re.compile(r"^(?P<host>[0-9A-Za-z.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")

# Latency buckets from 5 ms (a local RPC) to 30 s (a national platform at its worst).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

RPC_DURATION = Histogram(
    "sportello_rpc_duration_seconds", "Time to serve one RPC call, by service, method and outcome (ok|error)",
    ["service", "method", "outcome"], buckets=LATENCY_BUCKETS)
HTTP_DURATION = Histogram(
    "sportello_http_request_duration_seconds", "Time to answer one gateway HTTP request, by route and status",
    ["method", "route", "status"], buckets=LATENCY_BUCKETS)
EVENTS_HANDLED = Counter(
    "sportello_events_handled", "Events handled, by service, handler and outcome (ok|failed)",
    ["service", "handler", "outcome"])
EVENT_DURATION = Histogram(
    "sportello_event_handling_duration_seconds", "Time to handle one event, by service and handler",
    ["service", "handler"], buckets=LATENCY_BUCKETS)
DEAD_LETTERS_RECORDED = Counter(
    "sportello_dead_letters_recorded", "Dead letters recorded by this process", ["service"])
PLATFORM_CALLS = Counter(
    "sportello_platform_calls", "Calls to national platforms, by platform, operation and outcome",
    ["platform", "operation", "outcome"])
PLATFORM_DURATION = Histogram(
    "sportello_platform_call_duration_seconds", "Duration of a call to a national platform",
    ["platform", "operation"], buckets=LATENCY_BUCKETS)
LIMITER_WAITS = Counter(
    "sportello_limiter_waits", "Times a rate limiter made a caller wait, by limiter", ["limiter"])
LIMITER_WAIT_SECONDS = Counter(
    "sportello_limiter_wait_seconds", "Seconds spent waiting for a rate limiter, by limiter", ["limiter"])
BUILD_INFO = Gauge("sportello_build_info", "Always 1: the component and version of this process",
                   ["component", "version"])

# Outcomes of a national-platform call: a closed set, so dashboards and alerts can rely on it.
PLATFORM_OUTCOMES = ("ok", "client_error", "rate_limited", "server_error", "timeout", "unreachable", "malformed")


def outcome_of_status(status: int) -> str:
    """The outcome label of an HTTP answer from a national platform."""
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"


def record_platform_call(platform: str, operation: str, outcome: str, seconds: float) -> None:
    """Count one call to a national platform (outcome from PLATFORM_OUTCOMES) and its duration."""
    if outcome not in PLATFORM_OUTCOMES:
        raise ValueError(f"unknown platform call outcome {outcome!r}")
    PLATFORM_CALLS.labels(platform, operation, outcome).inc()
    PLATFORM_DURATION.labels(platform, operation).observe(max(0.0, seconds))


class PlatformCall:
    """What `platform_call` yields: the adapter reports the answer's status before leaving."""

    def __init__(self) -> None:
        self.outcome: str | None = None

    def answered(self, status: int) -> None:
        self.outcome = outcome_of_status(status)


@contextmanager
def platform_call(platform: str, operation: str) -> Iterator[PlatformCall]:
    """Time a call; an exception that escapes counts as `timeout`, `unreachable` or `malformed`."""
    call = PlatformCall()
    started = time.perf_counter()
    try:
        yield call
    except BaseException as exc:
        name = type(exc).__name__.lower()
        if call.outcome is None:
            call.outcome = ("timeout" if "timeout" in name else
                            "unreachable" if "connect" in name or isinstance(exc, OSError) else "malformed")
        raise
    finally:
        record_platform_call(platform, operation, call.outcome or "ok", time.perf_counter() - started)


def observed_sleep(limiter: str, sleep: Callable[[float], None]) -> Callable[[float], None]:
    """Wrap the `sleep` given to a `SlidingWindowLimiter` so its waits are counted and summed."""

    def _sleep(seconds: float) -> None:
        LIMITER_WAITS.labels(limiter).inc()
        LIMITER_WAIT_SECONDS.labels(limiter).inc(max(0.0, seconds))
        sleep(seconds)

    return _sleep


CampaignCounts = Callable[[Session], Iterable[tuple[str, str, int]]]


class ServiceStateCollector(Collector):
    """Read at scrape time from the service's own database: outbox lag and pending dead letters,
    and — for a service that runs campaigns — how many campaign items are in each state."""

    def __init__(self, service: str, database: Database, campaign_counts: CampaignCounts | None = None) -> None:
        self.service = service
        self.database = database
        self.campaign_counts = campaign_counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("sportello_database_up", "1 when the service's database answered the scrape",
                               labels=["service"])
        pending = GaugeMetricFamily("sportello_outbox_pending", "Outbox events not yet published",
                                    labels=["service"])
        oldest = GaugeMetricFamily("sportello_outbox_lag_seconds", "Age of the oldest unpublished outbox event",
                                   labels=["service"])
        letters = GaugeMetricFamily("sportello_dead_letters_pending", "Recorded dead letters not yet replayed",
                                    labels=["service"])
        campaign = GaugeMetricFamily("sportello_campaign_items", "Campaign items (messages, positions) by state",
                                     labels=["service", "tenant", "state"])
        progress: list[tuple[str, str, int]] = []
        try:
            with self.database.transaction() as session:
                if self.campaign_counts is not None:
                    progress = list(self.campaign_counts(session))
                count, first = session.execute(
                    select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.published_at.is_(None))
                ).one()
                waiting = session.execute(
                    select(func.count()).select_from(dead_letters).where(dead_letters.c.replayed_at.is_(None))
                ).scalar_one()
        except Exception:  # noqa: BLE001 - a scrape reports the database down, it never fails
            up.add_metric([self.service], 0)
            yield up
            return
        age = 0.0
        if first is not None:
            first = first if first.tzinfo is not None else first.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - first).total_seconds())
        up.add_metric([self.service], 1)
        pending.add_metric([self.service], int(count))
        oldest.add_metric([self.service], age)
        letters.add_metric([self.service], int(waiting))
        for tenant, state, count in progress:
            campaign.add_metric([self.service, tenant, state], int(count))
        yield from (up, pending, oldest, letters)
        if self.campaign_counts is not None:
            yield campaign


def parse_address(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) -> (host, port); a typed start-up error otherwise."""
    match = _ADDRESS.match(value.strip())
    port = int(match.group("port")) if match else 0
    if not match or not 0 < port < 65536:
        raise ConfigurationError(f"invalid settings: {METRICS_ADDRESS_ENV}: {value!r} is not host:port")
    return match.group("host").strip("[]"), port


def metrics_address(environ: dict[str, str] | None = None) -> tuple[str, int] | None:
    """The configured metrics address, or None when metrics are not served."""
    value = (os.environ if environ is None else environ).get(METRICS_ADDRESS_ENV, "").strip()
    return parse_address(value) if value else None


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class MetricsServer:
    """/metrics, /healthz and /readyz on their own port, in a daemon thread (green under eventlet)."""

    def __init__(self, host: str, port: int, *, registry: CollectorRegistry = REGISTRY,
                 ready: Callable[[], dict[str, bool]] | None = None) -> None:
        self._metrics = make_wsgi_app(registry)
        self._ready = ready or (lambda: {})
        self._server = make_server(host, port, self._app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="sportello-metrics", daemon=True)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            try:
                checks = self._ready()
            except Exception:  # noqa: BLE001 - not ready, whatever the reason
                checks = {"readiness": False}
            failed = sorted(name for name, ok in checks.items() if not ok)
            status = "503 Service Unavailable" if failed else "200 OK"
            start_response(status, [("Content-Type", "text/plain")])
            return [("not ready: " + ", ".join(failed) + "\n").encode() if failed else b"ready\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics, /healthz, /readyz\n"]

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Readiness:
    """Named readiness checks a process registers (its database, its container running)."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], bool]] = {}

    def add(self, name: str, check: Callable[[], bool]) -> None:
        self._checks[name] = check

    def __call__(self) -> dict[str, bool]:
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                results[name] = bool(check())
            except Exception:  # noqa: BLE001
                results[name] = False
        return results


readiness = Readiness()


def database_answers(database: Database) -> Callable[[], bool]:
    def _check() -> bool:
        with database.transaction() as session:
            session.connection().exec_driver_sql("SELECT 1")
        return True

    return _check


def serve(host: str, port: int, component: str, version: str) -> MetricsServer:
    """Start the metrics server of this process (call once, after the service has started)."""
    BUILD_INFO.labels(component, version).set(1)
    return MetricsServer(host, port, ready=readiness).start()
