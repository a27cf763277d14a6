"""OpenTelemetry tracing across real processes: gateway (HTTP) -> ledger (RPC) -> tally (event).

Each process writes its spans to its own JSON-lines file (SPORTELLO_TRACES_EXPORTER=file:...);
one HTTP request that records a ledger entry must leave three spans of one trace, each the parent
of the next, the first a child of the caller's own traceparent.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.secrets import generate
from sportello.db import Database
from sportello.migrate import upgrade
from tests.deploy.conftest import free_port
from tests.support.backbone import TEST_METADATA
from tests.support.processes import ROOT, ServiceProcess, service_env, wait_for
from tests.support.servers import isolated_vhost, require_rabbitmq

pytestmark = pytest.mark.integration


@dataclass
class Traced:
    gateway_url: str
    spans: dict[str, Path]  # component -> its span file
    processes: dict[str, ServiceProcess]


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    require_rabbitmq()
    work = tmp_path_factory.mktemp("tracing")
    secrets_dir = work / "secrets"
    generate(secrets_dir)
    tenants_dir = ROOT / "sandbox" / "tenants"
    with isolated_vhost() as amqp_uri:
        gateway_port = free_port()
        spans = {name: work / f"spans-{name}.jsonl" for name in ("gateway", "ledger", "tally")}
        processes: dict[str, ServiceProcess] = {}
        try:
            for name in ("ledger", "tally"):
                url = f"sqlite:///{work / f'{name}.sqlite3'}"
                upgrade(name, url)
                db = Database(url)
                TEST_METADATA.create_all(db.engine)
                db.dispose()
                env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data", SPORTELLO_DATABASE_URL=url,
                                  SPORTELLO_TRACES_EXPORTER=f"file:{spans[name]}", TALLY_CONTROLS="off")
                processes[name] = ServiceProcess(f"tests.support.backbone:{name.title()}Service", env, work).start()
            gateway_env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data",
                                      SPORTELLO_GATEWAY_ADDRESS=f"127.0.0.1:{gateway_port}",
                                      SPORTELLO_TRACES_EXPORTER=f"file:{spans['gateway']}")
            processes["gateway"] = ServiceProcess("tests.support.tracing_gateway:TracingGateway", gateway_env,
                                                  work).start()
            gateway_url = f"http://127.0.0.1:{gateway_port}"

            def ready() -> bool:
                for name, process in processes.items():
                    assert process.alive, f"{name} exited: {process.log()[-2000:]}"
                try:
                    httpx.get(f"{gateway_url}/v1/openapi.json", timeout=5).raise_for_status()
                except httpx.HTTPError:
                    return False
                return _backbone_up(amqp_uri)

            wait_for(ready, timeout=90, interval=0.5, what="gateway, ledger and tally up")
            yield Traced(gateway_url, spans, processes)
        finally:
            for process in processes.values():
                process.stop()


def _backbone_up(amqp_uri: str) -> bool:
    from nameko.standalone.rpc import ClusterRpcProxy

    try:
        with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=5) as cluster:
            return bool(cluster.ledger.health()["status"] == "ok" == cluster.tally.health()["status"])
    except Exception:  # not up yet
        return False


def test_one_trace_links_gateway_rpc_and_event_consumer(traced: Traced) -> None:
    client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
    reply = httpx.post(f"{traced.gateway_url}/v1/test/ledger/cremona", timeout=20,
                       headers={"traceparent": f"00-{client_trace}-{client_span}-01"})
    assert reply.status_code == 201, reply.text
    event_id = reply.json()["event_id"]

    def consumer_span() -> dict[str, Any] | None:
        return next((s for s in read_spans(traced.spans["tally"])
                     if s["kind"] == "CONSUMER" and s["attributes"].get("cloudevents.event_id") == event_id), None)

    consumed = wait_for(consumer_span, timeout=30, interval=0.3, what="tally's consumer span of the event")
    http = [s for s in read_spans(traced.spans["gateway"]) if s["trace_id"] == client_trace]
    rpc = [s for s in read_spans(traced.spans["ledger"]) if s["trace_id"] == client_trace]
    assert [(s["name"], s["kind"], s["parent_span_id"]) for s in http] == [
        ("POST /v1/test/ledger/<tenant>", "SERVER", client_span)]
    assert http[0]["attributes"]["http.response.status_code"] == 201
    assert http[0]["service"] == "sportello-gateway"
    assert [(s["name"], s["kind"], s["parent_span_id"]) for s in rpc] == [
        ("ledger.record", "SERVER", http[0]["span_id"])]
    assert rpc[0]["service"] == "sportello-ledger"
    assert consumed["trace_id"] == client_trace
    assert consumed["parent_span_id"] == rpc[0]["span_id"]
    assert consumed["name"] == "tally.on_entry_recorded process"
    assert consumed["service"] == "sportello-tally"
    assert consumed["status"] == "UNSET"


def test_a_request_without_traceparent_starts_a_new_trace(traced: Traced) -> None:
    before = {s["trace_id"] for s in read_spans(traced.spans["gateway"])}
    reply = httpx.post(f"{traced.gateway_url}/v1/test/ledger/cremona", timeout=20)
    assert reply.status_code == 201, reply.text
    event_id = reply.json()["event_id"]
    consumed = wait_for(lambda: next((s for s in read_spans(traced.spans["tally"])
                                      if s["attributes"].get("cloudevents.event_id") == event_id), None),
                        timeout=30, interval=0.3, what="the consumer span")
    roots = [s for s in read_spans(traced.spans["gateway"])
             if s["trace_id"] not in before and s["name"] == "POST /v1/test/ledger/<tenant>"]
    assert len(roots) == 1 and roots[0]["parent_span_id"] is None
    assert consumed["trace_id"] == roots[0]["trace_id"]


def test_a_wrong_exporter_setting_stops_start_up(tmp_path: Path) -> None:
    env = service_env("amqp://guest:guest@127.0.0.1:5672/", ROOT / "sandbox" / "tenants", tmp_path / "secrets",
                      tmp_path / "data", SPORTELLO_TRACES_EXPORTER="jaeger")
    done = subprocess.run([sys.executable, "-m", "sportello.edge.run", "gateway"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78
    assert "SPORTELLO_TRACES_EXPORTER" in done.stderr and "jaeger" in done.stderr


def test_concurrent_requests_keep_their_own_traces(traced: Traced) -> None:
    """Each worker's span lives in its own greenthread: concurrent requests never borrow a parent."""
    clients = [(secrets.token_hex(16), secrets.token_hex(8)) for _ in range(6)]

    def send(client: tuple[str, str]) -> str:
        reply = httpx.post(f"{traced.gateway_url}/v1/test/ledger/cremona", timeout=30,
                           headers={"traceparent": f"00-{client[0]}-{client[1]}-01"})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["event_id"])

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        event_ids = list(pool.map(send, clients))

    def consumed() -> dict[str, dict[str, Any]] | None:
        spans = {s["attributes"].get("cloudevents.event_id"): s for s in read_spans(traced.spans["tally"])}
        return spans if all(event_id in spans for event_id in event_ids) else None

    consumer_spans = wait_for(consumed, timeout=30, interval=0.3, what="every consumer span")
    http = {s["trace_id"]: s for s in read_spans(traced.spans["gateway"]) if s["kind"] == "SERVER"}
    rpc = {s["trace_id"]: s for s in read_spans(traced.spans["ledger"]) if s["name"] == "ledger.record"}
    for (trace_id, client_span), event_id in zip(clients, event_ids, strict=True):
        assert http[trace_id]["parent_span_id"] == client_span
        assert rpc[trace_id]["parent_span_id"] == http[trace_id]["span_id"]
        assert consumer_spans[event_id]["trace_id"] == trace_id
        assert consumer_spans[event_id]["parent_span_id"] == rpc[trace_id]["span_id"]
