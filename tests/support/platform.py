"""The whole platform for a test module: every sandbox twin, the services and the gateway, as real processes.

Why one helper: end-to-end tests of different issues need the same set-up, and each must run beside
a developer's `make run` (fixed ports 8080, 8101-8107) and beside other test runs. So everything
here is private to one call of `start_platform`: twins on free ports, a temporary copy of the
sandbox tenant files pointing at them, fresh PostgreSQL databases (one per service), an isolated
RabbitMQ vhost and a gateway on a free port. Tokens are minted with the generated
GATEWAY_TOKEN_SIGNING_KEY, as `spid` would after a login.

Use it from a test module:

    @pytest.fixture(scope="module")
    def platform(tmp_path_factory):
        with start_platform(tmp_path_factory.mktemp("platform")) as running:
            yield running

`services=` / `twins=` / `gateway=` start a subset (e.g. one service and its twins); `extra_tenants=`
adds tenant files (their sandbox ports are rewritten too).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from kombu import Connection, Queue
from nameko.standalone.rpc import ClusterRpcProxy

from sandbox.secrets import generate
from sportello.bus import EVENTS_EXCHANGE, ConfirmingPublisher
from sportello.devserver import sandbox_twins
from sportello.edge.rpc import register_remote_errors
from sportello.events import Envelope
from sportello.settings import SERVICE_NAMES
from sportello.tokens import SigningKey, TokenIssuer
from tests.support.processes import ROOT, ServiceProcess, free_port, service_env, stop_all, wait_for
from tests.support.servers import Databases, isolated_vhost, require_postgresql, require_rabbitmq

FIXED_GATEWAY_PORT = 8080
# how each twin's __main__ takes its port (the default convention is SANDBOX_<NAME>_PORT)
PORT_VARIABLES = {"appio": "APPIO_TWIN_PORT"}


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tenant_files(source: Path, target: Path, ports: dict[int, int], extra: dict[str, str] | None = None) -> Path:
    """Copies of the tenant files (plus `extra`: file name -> YAML) with every fixed sandbox port
    replaced by this run's port."""
    target.mkdir(parents=True, exist_ok=True)
    texts = {path.name: path.read_text(encoding="utf-8") for path in sorted(source.glob("*.y*ml"))}
    for name, text in {**texts, **(extra or {})}.items():
        for fixed, actual in ports.items():
            text = re.sub(rf"127\.0\.0\.1:{fixed}\b", f"127.0.0.1:{actual}", text)
        (target / name).write_text(text, encoding="utf-8")
    return target


@dataclass
class Platform:
    """A running platform: URLs, processes, and the helpers tests need to drive it."""

    work: Path
    amqp_uri: str
    gateway_url: str | None
    tenants_dir: Path
    secrets_dir: Path
    twins: dict[str, str]  # twin name -> http://127.0.0.1:<port>
    processes: dict[str, ServiceProcess]
    database_urls: dict[str, str]
    issuer: TokenIssuer
    _engines: dict[str, sa.Engine] = field(default_factory=dict)

    # -- tokens --------------------------------------------------------------------------------
    def token(self, subject: str, roles: Sequence[str] = ("citizen",), tenant: str = "cremona", level: int = 2) -> str:
        return self.issuer.issue(subject=subject, tenant=tenant, level=level, roles=list(roles))  # type: ignore[arg-type]

    def auth(self, subject: str, roles: Sequence[str] = ("citizen",), tenant: str = "cremona",
             level: int = 2) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, roles, tenant, level)}"}

    def url(self, path: str) -> str:
        assert self.gateway_url is not None, "this platform was started without the gateway"
        return f"{self.gateway_url}{path}"

    # -- RPC, databases, events -----------------------------------------------------------------
    @contextmanager
    def rpc(self, timeout: float = 30) -> Iterator[Any]:
        register_remote_errors()
        with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=timeout) as cluster:
            yield cluster

    def rows(self, service: str, query: str, **params: Any) -> list[Any]:
        engine = self._engines.get(service)
        if engine is None:
            engine = self._engines[service] = sa.create_engine(self.database_urls[service], pool_pre_ping=True)
        with engine.connect() as connection:
            return list(connection.execute(sa.text(query), params))

    def outbox_types(self, service: str) -> list[str]:
        return [r[0] for r in self.rows(service, "SELECT event_type FROM outbox ORDER BY id")]

    def publish(self, event: Envelope[Any], times: int = 1) -> None:
        """Publish an event as a producer's relay would (confirmed), `times` times (at-least-once)."""
        publisher = ConfirmingPublisher(self.amqp_uri)
        try:
            for _ in range(times):
                publisher.publish_event(json.dumps(event.to_message()), event_type=event.type, event_id=event.id,
                                        correlation_id=event.correlationid, tenant=event.tenant)
        finally:
            publisher.close()

    @contextmanager
    def listen(self, *event_types: str) -> Iterator[EventTap]:
        """A throw-away queue bound to these event types: what the platform really published."""
        tap = EventTap(self.amqp_uri, event_types)
        try:
            yield tap
        finally:
            tap.close()

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()


class EventTap:
    def __init__(self, amqp_uri: str, event_types: Iterable[str]) -> None:
        self.connection = Connection(amqp_uri, connect_timeout=5)
        channel = self.connection.channel()
        EVENTS_EXCHANGE(channel).declare()
        self.queue = Queue(f"test.tap.{os.urandom(4).hex()}", exchange=EVENTS_EXCHANGE, routing_key="#",
                           auto_delete=True, exclusive=True, channel=channel)
        self.queue.declare()
        for event_type in event_types:
            self.queue.bind_to(EVENTS_EXCHANGE, routing_key=event_type)
        self.queue.unbind_from(EVENTS_EXCHANGE, routing_key="#")
        self.received: list[dict[str, Any]] = []
        self.redelivered = 0  # copies of an event id already seen

    def drain(self) -> list[dict[str, Any]]:
        """Every distinct event delivered so far (bodies as dicts, by event id), across calls.

        Delivery is at least once by design (a relay republishes what it could not see confirmed;
        consumers are idempotent), so the same event id arriving twice is one fact, counted in
        `redelivered`; two facts are two different ids.
        """
        while True:
            message = self.queue.get(no_ack=True)
            if message is None:
                return self.received
            event = json.loads(message.body)
            if any(seen.get("id") == event.get("id") for seen in self.received):
                self.redelivered += 1
                continue
            self.received.append(event)

    def wait(self, predicate: Callable[[list[dict[str, Any]]], Any], *, timeout: float = 30,
             what: str = "events") -> Any:
        return wait_for(lambda: predicate(self.drain()), timeout=timeout, interval=0.2, what=what)

    def close(self) -> None:
        self.connection.release()


@contextmanager
def start_platform(work: Path, *, services: Sequence[str] = SERVICE_NAMES, twins: Sequence[str] | None = None,
                   gateway: bool = True, env: dict[str, str] | None = None,
                   twin_env: dict[str, dict[str, str]] | None = None, extra_tenants: dict[str, str] | None = None,
                   timeout: float = 120, amqp_uri: str | None = None, database_admin_url: str | None = None,
                   twin_modules: dict[str, str] | None = None) -> Iterator[Platform]:
    """Start the platform (or the named subset) in `work`; stop and drop everything afterwards.

    `amqp_uri` / `database_admin_url` point it at other servers than the shared ones (the resilience
    scenarios restart their own private broker and database); `twin_modules` runs another module
    for a twin (e.g. one that injects random faults)."""
    if amqp_uri is None:
        require_rabbitmq()
    if database_admin_url is None:
        require_postgresql()
    known = {module.rsplit(".", 1)[-1]: (module, port) for module, port in sandbox_twins()}
    known.update({name: (module, known[name][1]) for name, module in (twin_modules or {}).items()})
    chosen = list(known) if twins is None else list(twins)
    unknown = set(chosen) - set(known)
    assert not unknown, f"no such sandbox twin: {sorted(unknown)}"
    gateway_port = free_port()
    ports = {known[name][1]: free_port() for name in chosen}
    ports[FIXED_GATEWAY_PORT] = gateway_port
    secrets_dir = work / "secrets"
    generate(secrets_dir)
    tenants_dir = tenant_files(ROOT / "sandbox" / "tenants", work / "tenants", ports, extra_tenants)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    twin_urls = {name: f"http://127.0.0.1:{ports[known[name][1]]}" for name in chosen}

    twin_procs: dict[str, subprocess.Popen[bytes]] = {}
    processes: dict[str, ServiceProcess] = {}
    databases = Databases(database_admin_url) if database_admin_url else Databases()
    try:
        for name in chosen:
            module, fixed = known[name]
            variables = {**os.environ, "PYTHONPATH": str(ROOT), "SPORTELLO_TENANTS_DIR": str(tenants_dir),
                         "SPORTELLO_SECRETS_DIR": str(secrets_dir),
                         PORT_VARIABLES.get(name, f"SANDBOX_{name.upper()}_PORT"): str(ports[fixed]),
                         # the twins that call each other or the gateway
                         "SANDBOX_PDND_URL": twin_urls.get("pdnd", "http://127.0.0.1:1"),
                         "SANDBOX_SPID_IDP_URL": twin_urls.get("spid_idp", "http://127.0.0.1:1"),
                         "SANDBOX_SPID_SP_METADATA": f"{gateway_url}/v1/tenants/cremona/auth/spid/metadata",
                         "SANDBOX_CIE_RPS": f"{gateway_url}/v1/tenants/cremona/auth/cie",
                         "SANDBOX_NODO_STATION_URL": f"{gateway_url}/v1/pagopa/paForNode",
                         "SANDBOX_NODO_GPD_URL": twin_urls.get("gpd", ""),
                         "SANDBOX_CHECKOUT_NODO_URL": twin_urls.get("nodo", ""),
                         **(twin_env or {}).get(name, {})}
            log = (work / f"twin-{name}.log").open("ab")
            twin_procs[name] = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=variables, stdout=log,
                                                stderr=subprocess.STDOUT)
        with isolated_vhost() if amqp_uri is None else nullcontext(amqp_uri) as amqp_uri:
            urls: dict[str, str] = {}
            for service in services:
                urls[service] = databases.url(service)
                variables = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data",
                                        SPORTELLO_DATABASE_URL=urls[service], **(env or {}))
                processes[service] = ServiceProcess(service, variables, work).start()
            if gateway:
                variables = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data",
                                        SPORTELLO_GATEWAY_ADDRESS=f"127.0.0.1:{gateway_port}", **(env or {}))
                processes["gateway"] = ServiceProcess("gateway", variables, work).start()
            key = SigningKey((secrets_dir / "GATEWAY_TOKEN_SIGNING_KEY").read_text())
            platform = Platform(work, amqp_uri, gateway_url if gateway else None, tenants_dir, secrets_dir, twin_urls,
                                processes, urls, TokenIssuer(key))
            try:
                _wait_ready(platform, services, twin_procs, ports, [known[n][1] for n in chosen], timeout)
                yield platform
            finally:
                platform.close()
                stop_all(processes.values())
    finally:
        stop_all(processes.values())
        for proc in twin_procs.values():
            proc.terminate()
        for proc in twin_procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        databases.drop_all()


def _wait_ready(platform: Platform, services: Sequence[str], twin_procs: dict[str, subprocess.Popen[bytes]],
                ports: dict[int, int], fixed_ports: list[int], timeout: float) -> None:
    def ready() -> bool:
        for name, proc in twin_procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"twin {name} exited: {platform.log('twin-' + name)[-2000:]}")
        for name, process in platform.processes.items():
            if not process.alive:
                raise AssertionError(f"{name} exited: {process.log()[-2000:]}")
        if not all(_port_open(ports[fixed]) for fixed in fixed_ports):
            return False
        try:
            if platform.gateway_url is not None:
                if set(services) == set(SERVICE_NAMES):
                    return httpx.get(f"{platform.gateway_url}/v1/health", timeout=5).status_code == 200
                if httpx.get(f"{platform.gateway_url}/v1/openapi.json", timeout=5).status_code != 200:
                    return False
            with platform.rpc(timeout=5) as cluster:
                return all(getattr(cluster, s).health()["status"] == "ok" for s in services)
        except Exception:
            return False

    wait_for(ready, timeout=timeout, interval=0.5, what="the platform (services, gateway, twins)")
