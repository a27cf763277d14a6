"""Prometheus metrics scraped from real processes (anpr and the gateway), with real values.

The service is driven over RPC, through its event queue (one good event, one malformed) and the
gateway over HTTP; then /metrics must show those very calls, events and dead letters.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sportello import metrics
from sportello.bus import EVENTS_EXCHANGE, ConfirmingPublisher
from sportello.contracts.pagopa import PaymentCompleted
from sportello.errors import ConfigurationError
from sportello.events import new_event
from tests.deploy.conftest import Running
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = httpx.get(f"{url}/metrics", timeout=5)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_service_metrics_count_real_rpc_events_and_dead_letters(running: Running) -> None:
    before = scrape(running.metrics["anpr"])
    assert value(before, "sportello_build_info", component="anpr", version="0.1.0") == 1
    assert value(before, "sportello_database_up", service="anpr") == 1
    with ClusterRpcProxy({"AMQP_URI": running.amqp_uri}, timeout=20) as cluster:
        for _ in range(3):
            assert cluster.anpr.health()["status"] == "ok"
    paid = PaymentCompleted(position_id="p-1", iuv="01234567890123456", notice_number="301234567890123456",
                            amount_cents=1600, paid_at=datetime.now(UTC), receipt_id="r-1", purpose="single")
    event = new_event(paid, service="pagopa", tenant="cremona")
    publisher = ConfirmingPublisher(running.amqp_uri)
    try:
        publisher.publish_event(json.dumps(event.to_message()), event_type=event.type, event_id=event.id,
                                correlation_id=event.correlationid, tenant="cremona")
        publisher.publish("{not json", exchange=EVENTS_EXCHANGE, routing_key=PaymentCompleted.event_type,
                          message_id=str(uuid.uuid4()))
    finally:
        publisher.close()

    def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        now = scrape(running.metrics["anpr"])
        handled = value(now, "sportello_events_handled_total", service="anpr", handler="on_payment_completed",
                        outcome="ok")
        pending = value(now, "sportello_dead_letters_pending", service="anpr")
        return now if handled and handled >= 1 and pending and pending >= 1 else None

    after = wait_for(settled, timeout=30, interval=0.3, what="the event handled and the dead letter recorded")
    rpc = value(after, "sportello_rpc_duration_seconds_count", service="anpr", method="health", outcome="ok") or 0
    rpc_before = value(before, "sportello_rpc_duration_seconds_count", service="anpr", method="health",
                       outcome="ok") or 0
    assert rpc - rpc_before >= 3
    assert (value(after, "sportello_rpc_duration_seconds_sum", service="anpr", method="health", outcome="ok")
            or 0) > 0
    assert value(after, "sportello_rpc_duration_seconds_bucket", service="anpr", method="health", outcome="ok",
                 le="+Inf") == rpc
    assert (value(after, "sportello_event_handling_duration_seconds_count", service="anpr",
                  handler="on_payment_completed") or 0) >= 1
    assert (value(after, "sportello_dead_letters_recorded_total", service="anpr") or 0) >= 1
    assert value(after, "sportello_outbox_pending", service="anpr") is not None
    assert value(after, "sportello_outbox_lag_seconds", service="anpr") is not None


def test_gateway_metrics_time_http_requests_by_route_and_status(running: Running) -> None:
    assert httpx.get(f"{running.gateway_url}/v1/openapi.json", timeout=10).status_code == 200
    assert httpx.get(f"{running.gateway_url}/v1/no-such-route", timeout=10).status_code == 404
    samples = scrape(running.metrics["gateway"])
    ok = value(samples, "sportello_http_request_duration_seconds_count", method="GET", route="/v1/openapi.json",
               status="200")
    missing = value(samples, "sportello_http_request_duration_seconds_count", method="GET", route="/<path:path>",
                    status="404")
    assert ok and ok >= 1 and missing and missing >= 1
    assert value(samples, "sportello_build_info", component="gateway", version="0.1.0") == 1
    assert value(samples, "sportello_database_up", service="gateway") is None, "the gateway has no database"


def test_health_endpoints_and_unknown_paths(running: Running) -> None:
    for url in running.metrics.values():
        assert httpx.get(f"{url}/healthz", timeout=5).text == "ok\n"
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"{url}/other", timeout=5).status_code == 404


# --- the framework-free helpers, without processes ---------------------------------------------------

def test_platform_call_helper_counts_outcomes() -> None:
    def count(outcome: str) -> float:
        return metrics.PLATFORM_CALLS.labels("gpd", "create_position", outcome)._value.get()

    start_ok, start_rate, start_timeout = count("ok"), count("rate_limited"), count("timeout")
    with metrics.platform_call("gpd", "create_position") as call:
        call.answered(201)
    with metrics.platform_call("gpd", "create_position") as call:
        call.answered(429)
    with pytest.raises(TimeoutError), metrics.platform_call("gpd", "create_position"):
        raise TimeoutError("read timed out")
    assert (count("ok"), count("rate_limited"), count("timeout")) == (start_ok + 1, start_rate + 1,
                                                                      start_timeout + 1)
    with pytest.raises(ValueError, match="unknown platform call outcome"):
        metrics.record_platform_call("gpd", "x", "fine", 0.1)


def test_observed_sleep_counts_limiter_waits() -> None:
    slept: list[float] = []
    sleep = metrics.observed_sleep("test-limiter", slept.append)
    waits = metrics.LIMITER_WAITS.labels("test-limiter")._value.get()
    seconds = metrics.LIMITER_WAIT_SECONDS.labels("test-limiter")._value.get()
    sleep(0.25)
    sleep(0.5)
    assert slept == [0.25, 0.5]
    assert metrics.LIMITER_WAITS.labels("test-limiter")._value.get() == waits + 2
    assert metrics.LIMITER_WAIT_SECONDS.labels("test-limiter")._value.get() == pytest.approx(seconds + 0.75)


def test_metrics_address_is_validated() -> None:
    assert metrics.metrics_address({}) is None
    assert metrics.metrics_address({"SPORTELLO_METRICS_ADDRESS": "0.0.0.0:9100"}) == ("0.0.0.0", 9100)
    assert metrics.metrics_address({"SPORTELLO_METRICS_ADDRESS": "[::1]:9100"}) == ("::1", 9100)
    for bad in ("9100", "host:0", "host:70000", "a b:1"):
        with pytest.raises(ConfigurationError, match="SPORTELLO_METRICS_ADDRESS"):
            metrics.metrics_address({"SPORTELLO_METRICS_ADDRESS": bad})


def test_readiness_reports_the_failing_check() -> None:
    registry = CollectorRegistry()
    checks = metrics.Readiness()
    checks.add("database", lambda: False)
    checks.add("other", lambda: True)
    server = metrics.MetricsServer("127.0.0.1", 0, registry=registry, ready=checks).start()
    try:
        reply = httpx.get(f"http://127.0.0.1:{server.port}/readyz", timeout=5)
        assert reply.status_code == 503 and reply.text == "not ready: database\n"
    finally:
        server.stop()
