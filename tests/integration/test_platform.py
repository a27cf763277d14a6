"""The four real services and the gateway, each its own process, on PostgreSQL and RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from nameko.standalone.rpc import ClusterRpcProxy

from sportello.edge.rpc import register_remote_errors
from sportello.errors import NotFound
from sportello.settings import SERVICE_NAMES
from tests.support.processes import ServiceProcess, free_port, service_env, wait_for
from tests.support.servers import Databases

pytestmark = pytest.mark.integration


@dataclass
class Platform:
    amqp_uri: str
    gateway_url: str
    processes: dict[str, ServiceProcess]
    database_urls: dict[str, str]

    def health(self, **headers: str) -> httpx.Response:
        return httpx.get(f"{self.gateway_url}/v1/health", headers=headers, timeout=15)


@pytest.fixture(scope="module")
def platform(amqp_uri: str, databases: Databases, tenant_files: tuple[Path, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    work = tmp_path_factory.mktemp("platform")
    port = free_port()
    processes: dict[str, ServiceProcess] = {}
    urls: dict[str, str] = {}
    for service in SERVICE_NAMES:
        urls[service] = databases.url(service)
        env = service_env(amqp_uri, *tenant_files, work / "data", SPORTELLO_DATABASE_URL=urls[service])
        processes[service] = ServiceProcess(service, env, work).start()
    gateway_env = service_env(amqp_uri, *tenant_files, work / "data", SPORTELLO_GATEWAY_ADDRESS=f"127.0.0.1:{port}")
    processes["gateway"] = ServiceProcess("gateway", gateway_env, work).start()
    plat = Platform(amqp_uri, f"http://127.0.0.1:{port}", processes, urls)

    def all_ok() -> bool:
        try:
            return plat.health().status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(all_ok, timeout=60, interval=0.5, what="gateway health 200")
        yield plat
    finally:
        for process in processes.values():
            process.stop()


def test_gateway_health_reports_all_four_services_over_rpc(platform: Platform) -> None:
    reply = platform.health(**{"X-Request-ID": "itest-health-0001"})
    assert reply.status_code == 200
    assert reply.headers["X-Request-ID"] == "itest-health-0001"
    body = reply.json()
    assert body["status"] == "ok"
    assert body["request_id"] == "itest-health-0001"
    assert set(body["services"]) == set(SERVICE_NAMES)
    for name, report in body["services"].items():
        assert report["service"] == name
        assert report["status"] == "ok"
        assert report["checks"]["database"] == {"status": "ok"}
        assert report["checks"]["outbox"]["pending"] == 0


def test_each_service_migrated_its_own_postgresql_database(platform: Platform) -> None:
    from alembic.script import ScriptDirectory

    from sportello.migrate import alembic_config

    for service, url in platform.database_urls.items():
        script = ScriptDirectory.from_config(alembic_config(service, url))
        heads = set(script.get_heads())
        engine = sa.create_engine(url)
        try:
            tables = set(sa.inspect(engine).get_table_names())
            with engine.connect() as connection:
                versions = {row[0] for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")}
        finally:
            engine.dispose()
        assert {"outbox", "inbox", "dead_letters", "alembic_version"} <= tables
        applied = {rev.revision for rev in script.revision_map.iterate_revisions(tuple(versions), "base")}
        assert "kernel_0001" in applied
        assert heads <= applied  # at the head of the kernel branch and of the service's own


def test_shared_rpc_entrypoints_of_every_service(platform: Platform) -> None:
    register_remote_errors()
    with ClusterRpcProxy({"AMQP_URI": platform.amqp_uri}, timeout=10) as cluster:
        for name in SERVICE_NAMES:
            service: Any = getattr(cluster, name)
            assert service.health()["service"] == name
            assert service.list_dead_letters(tenant="cremona", pending_only=False, limit=10) == []
            with pytest.raises(NotFound, match="no dead letter 424242"):
                service.replay_dead_letter(424242)


def test_a_service_that_does_not_answer_is_reported_not_waited_for(platform: Platform) -> None:
    """nameko's RPC proxy has no timeout: the gateway's deadline must turn silence into a report."""
    appio = platform.processes["appio"]
    appio.pause()
    try:
        reply = platform.health()
        assert reply.status_code == 503
        assert reply.elapsed.total_seconds() < 6
        body = reply.json()
        assert body["status"] == "down"
        assert body["services"]["appio"] == {"service": "appio", "status": "unreachable", "error": "timeout"}
        assert {body["services"][n]["status"] for n in ("anpr", "pagopa", "spid")} == {"ok"}
    finally:
        appio.resume()
    wait_for(lambda: platform.health().status_code == 200, timeout=20, what="health back to 200")


def test_unknown_routes_and_methods_are_problem_json(platform: Platform) -> None:
    missing = httpx.get(f"{platform.gateway_url}/v1/nowhere", timeout=5)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "route.not_found"
    wrong = httpx.post(f"{platform.gateway_url}/v1/health", timeout=5)
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "route.method_not_allowed"
    assert wrong.json()["request_id"] == wrong.headers["X-Request-ID"]


def test_tokens_issued_with_the_spid_key_are_verified_by_the_gateway(
        platform: Platform, tenant_files: tuple[Path, Path]) -> None:
    from sportello.tokens import SigningKey, TokenIssuer

    jwks = httpx.get(f"{platform.gateway_url}/v1/.well-known/jwks.json", timeout=10)
    assert jwks.status_code == 200
    key = SigningKey((tenant_files[1] / "GATEWAY_TOKEN_SIGNING_KEY").read_text())
    assert [k["kid"] for k in jwks.json()["keys"]] == [key.kid]

    anonymous = httpx.get(f"{platform.gateway_url}/v1/me", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.json()["code"] == "auth.unauthenticated"

    token = TokenIssuer(key).issue(subject="RSSMRA85T10A562S", tenant="cremona", level=2, roles=["citizen"])
    me = httpx.get(f"{platform.gateway_url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 200
    assert me.json() == {"subject": "RSSMRA85T10A562S", "tenant": "cremona", "level": 2, "roles": ["citizen"],
                         "expires_at": me.json()["expires_at"]}

    forged = TokenIssuer(SigningKey(_other_key())).issue(subject="RSSMRA85T10A562S", tenant="cremona", level=2,
                                                         roles=["admin"])
    rejected = httpx.get(f"{platform.gateway_url}/v1/me", headers={"Authorization": f"Bearer {forged}"}, timeout=10)
    assert rejected.status_code == 401
    assert rejected.json()["detail"] == "token signed with an unknown key"
    gateway_log = platform.processes["gateway"].log()
    assert token not in gateway_log and forged not in gateway_log


def _other_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()


def test_health_with_no_service_running_reports_each_unreachable(
        tenant_files: tuple[Path, Path], tmp_path: Path) -> None:
    """No queue at all for a service (never started) is a report, not a 500 (nameko's UnknownService)."""
    from tests.support.servers import isolated_vhost

    port = free_port()
    with isolated_vhost() as empty_vhost:
        env = service_env(empty_vhost, *tenant_files, tmp_path / "data", SPORTELLO_GATEWAY_ADDRESS=f"127.0.0.1:{port}")
        gateway = ServiceProcess("gateway", env, tmp_path).start()
        try:
            def answered() -> httpx.Response | None:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10)
                except httpx.HTTPError:
                    return None

            reply = wait_for(answered, timeout=30, interval=0.3, what="gateway up")
            assert reply.status_code == 503
            body = reply.json()
            assert body["status"] == "down"
            assert {s["status"] for s in body["services"].values()} == {"unreachable"}
            # no queue for the service: nameko's UnknownService (or the broker's NotFound, if it races)
            assert {s["error"] for s in body["services"].values()} <= {"UnknownService", "NotFound"}
        finally:
            gateway.stop()
