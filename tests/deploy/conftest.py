"""Fixtures for the deploy tests that need real processes: a RabbitMQ vhost, tenants, anpr + gateway.

Only the metrics and CLI tests use them; the manifest tests need no server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sandbox.secrets import generate
from tests.support.processes import ROOT, ServiceProcess, free_port, service_env, wait_for
from tests.support.servers import isolated_vhost, require_rabbitmq


@dataclass
class Running:
    amqp_uri: str
    tenants_dir: Path
    secrets_dir: Path
    gateway_url: str
    metrics: dict[str, str]  # component -> http://127.0.0.1:<port>
    processes: dict[str, ServiceProcess]
    work: Path

    def env(self, **extra: str) -> dict[str, str]:
        return service_env(self.amqp_uri, self.tenants_dir, self.secrets_dir, self.work / "data", **extra)


@pytest.fixture(scope="session")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """anpr (SQLite) and the gateway as real processes, each with its metrics port."""
    require_rabbitmq()
    work = tmp_path_factory.mktemp("deploy")
    secrets_dir = work / "secrets"
    generate(secrets_dir)
    tenants_dir = ROOT / "sandbox" / "tenants"
    with isolated_vhost() as amqp_uri:
        gateway_port = free_port()
        metrics = {"anpr": free_port(), "gateway": free_port()}
        processes: dict[str, ServiceProcess] = {}
        plat = Running(amqp_uri, tenants_dir, secrets_dir, f"http://127.0.0.1:{gateway_port}",
                       {name: f"http://127.0.0.1:{port}" for name, port in metrics.items()}, processes, work)
        try:
            processes["anpr"] = ServiceProcess("anpr", plat.env(
                SPORTELLO_METRICS_ADDRESS=f"127.0.0.1:{metrics['anpr']}"), work).start()
            processes["gateway"] = ServiceProcess("gateway", plat.env(
                SPORTELLO_METRICS_ADDRESS=f"127.0.0.1:{metrics['gateway']}",
                SPORTELLO_GATEWAY_ADDRESS=f"127.0.0.1:{gateway_port}"), work).start()

            def ready() -> bool:
                for name, process in processes.items():
                    assert process.alive, f"{name} exited: {process.log()[-2000:]}"
                try:
                    return all(httpx.get(f"{url}/readyz", timeout=2).status_code == 200
                               for url in plat.metrics.values())
                except httpx.HTTPError:
                    return False

            wait_for(ready, timeout=90, interval=0.3, what="anpr and gateway /readyz")
            yield plat
        finally:
            for process in processes.values():
                process.stop()
