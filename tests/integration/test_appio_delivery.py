"""App IO end to end against its twin: real RabbitMQ, PostgreSQL, the appio process and the twin process.

- a real PaymentPositionCreated event becomes exactly one IO message with its payment data;
  a citizen not on IO is reported (MessageNotDeliverable), looked up once, never retried.

A campaign with faults and a replica killed midway: tests/e2e/test_appio_resilience_smoke.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from nameko.standalone.rpc import ClusterRpcProxy

from sandbox.appio import seed
from sportello.bus import ConfirmingPublisher
from sportello.contracts.pagopa import PaymentPositionCreated
from sportello.edge.rpc import register_remote_errors
from sportello.events import new_event
from tests.support.processes import ROOT, ServiceProcess, free_port, service_env, wait_for
from tests.support.servers import Databases

pytestmark = pytest.mark.integration
RATE = 60  # per second, on both sides: short tests, same arithmetic as IO's 150 / 5 s
CONCURRENCY = 8


@dataclass
class Twin:
    url: str
    proc: subprocess.Popen[bytes]

    def get(self, path: str, **params: str) -> Any:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10).json()

    def post(self, path: str, body: Any) -> Any:
        reply = httpx.post(f"{self.url}{path}", json=body, timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()


@dataclass
class AppIO:
    process: ServiceProcess
    database_url: str
    amqp_uri: str
    engine: sa.Engine

    def rows(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.text(query), params))

    def wait_healthy(self) -> None:
        register_remote_errors()

        def healthy() -> bool:
            try:
                with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=5) as cluster:
                    return bool(cluster.appio.health()["status"] == "ok")
            except Exception:
                return False
        wait_for(healthy, timeout=60, interval=0.5, what="appio healthy")


@pytest.fixture(scope="module")
def twin(tenant_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    work = tmp_path_factory.mktemp("appio-twin")
    port = free_port()
    env = service_env("amqp://unused/", *tenant_files, work, APPIO_TWIN_RATE_LIMIT=f"{RATE}/1",
                      APPIO_TWIN_PROCESSING_SECONDS="0.3")
    env["SPORTELLO_TENANTS_DIR"] = str(tenants_dir(tenant_files[0], work, port))
    log = (work / "twin.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.appio", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    twin = Twin(f"http://127.0.0.1:{port}", proc)

    def up() -> bool:
        try:
            return httpx.get(f"{twin.url}/__admin/seed", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_for(up, timeout=30, what="the IO twin")
        yield twin
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def tenants_dir(original: Path, work: Path, port: int) -> Path:
    """The sandbox tenants, with App IO pointed at this test's twin."""
    folder = work / "tenants"
    folder.mkdir(exist_ok=True)
    for path in original.glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if data.get("appio"):
            data["appio"]["base_url"] = f"http://127.0.0.1:{port}/api/v1"
        (folder / path.name).write_text(yaml.safe_dump(data), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def appio(twin: Twin, amqp_uri: str, databases: Databases, tenant_files: tuple[Path, Path],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppIO]:
    work = tmp_path_factory.mktemp("appio")
    url = databases.url(f"appio{uuid.uuid4().hex[:4]}")
    port = int(twin.url.rsplit(":", 1)[1])
    env = service_env(amqp_uri, tenants_dir(tenant_files[0], work, port), tenant_files[1], work / "data",
                      SPORTELLO_DATABASE_URL=url, SPORTELLO_APPIO_RATE_LIMIT=str(RATE),
                      SPORTELLO_APPIO_RATE_WINDOW_SECONDS="1", SPORTELLO_APPIO_CONCURRENCY=str(CONCURRENCY),
                      SPORTELLO_APPIO_POLL_SECONDS="0.1", SPORTELLO_APPIO_HTTP_TIMEOUT_SECONDS="3",
                      SPORTELLO_APPIO_CONNECT_TIMEOUT_SECONDS="2", SPORTELLO_APPIO_LEASE_SECONDS="12",
                      SPORTELLO_APPIO_BACKOFF_SECONDS="0.2", SPORTELLO_APPIO_STATUS_POLL_SECONDS="0.3",
                      SPORTELLO_APPIO_FOLLOW_SECONDS="60", SPORTELLO_EVENT_RETRY_DELAYS_MS="[200, 500]")
    process = ServiceProcess("appio", env, work).start()
    engine = sa.create_engine(url)
    service = AppIO(process, url, amqp_uri, engine)
    try:
        service.wait_healthy()
        yield service
    finally:
        process.stop()
        engine.dispose()


def publish_position(amqp_uri: str, debtor: str, position_id: str) -> PaymentPositionCreated:
    payload = PaymentPositionCreated(
        position_id=position_id, iupd=f"00297960197-{position_id}", iuv="47000000000012345",
        notice_number="347000000000012345", payee_fiscal_code="00297960197", amount_cents=1600,
        due_date=date(2027, 6, 30), description="Imposta di bollo certificato di residenza",
        debtor_fiscal_code=debtor, purpose="certificate_stamp_duty", reference="req-1", io_service="anagrafe")
    envelope = new_event(payload, service="pagopa", tenant="cremona", subject=position_id)
    publisher = ConfirmingPublisher(amqp_uri)
    try:
        publisher.publish_event(json.dumps(envelope.to_message()), event_type=envelope.type, event_id=envelope.id,
                                correlation_id=envelope.correlationid, tenant=envelope.tenant)
        publisher.publish_event(json.dumps(envelope.to_message()), event_type=envelope.type, event_id=envelope.id,
                                correlation_id=envelope.correlationid, tenant=envelope.tenant)  # a redelivery
    finally:
        publisher.close()
    return payload


def test_a_payment_position_reaches_the_citizen_as_one_message_with_its_payment_data(appio: AppIO,
                                                                                      twin: Twin) -> None:
    citizen = seed.ON_IO[0]
    publish_position(appio.amqp_uri, citizen, f"pos-{uuid.uuid4().hex[:8]}")
    rows = wait_for(lambda: [r for r in appio.rows("SELECT state, io_message_id FROM appio_messages "
                                                   "WHERE recipient_fiscal_code = :cf", cf=citizen)
                             if r.state == "sent"], timeout=30, what="message sent")
    [received] = twin.get("/__admin/messages", fiscal_code=citizen)
    assert received["id"] == rows[0].io_message_id
    assert received["content"]["payment_data"] == {"amount": 1600, "notice_number": "347000000000012345",
                                                   "invalid_after_due_date": False,
                                                   "payee": {"fiscal_code": "00297960197"}}
    assert received["content"]["due_date"] == "2027-06-30T00:00:00.000Z"
    assert received["sender_service_id"] == "01SANDBOXANAGRAFE0000000000"
    assert twin.get("/__admin/counts")["messages"][citizen] == 1
    events = appio.rows("SELECT event_type, body FROM outbox WHERE event_type LIKE 'it.sportello.appio.%'")
    sent = [json.loads(e.body) for e in events if json.loads(e.body)["data"]["recipient_fiscal_code"] == citizen]
    assert [e["type"] for e in sent] == ["it.sportello.appio.message.sent.v1"]
    assert "[fiscal-code]" not in citizen and citizen not in appio.process.log()


def test_a_citizen_not_on_io_is_reported_and_not_retried(appio: AppIO, twin: Twin) -> None:
    citizen = seed.NOT_ON_IO[1]
    publish_position(appio.amqp_uri, citizen, f"pos-{uuid.uuid4().hex[:8]}")
    wait_for(lambda: appio.rows("SELECT 1 FROM appio_messages WHERE recipient_fiscal_code = :cf "
                                "AND state = 'not_deliverable'", cf=citizen), timeout=30, what="not deliverable")
    time.sleep(1.5)
    counts = twin.get("/__admin/counts")
    assert counts["profiles"][citizen] == 1 and citizen not in counts["messages"]
    [event] = [json.loads(r.body) for r in appio.rows("SELECT body FROM outbox") if citizen in r.body]
    assert event["type"] == "it.sportello.appio.message.not_deliverable.v1"
    assert event["data"]["reason"] == "not_on_io"
