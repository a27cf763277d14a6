"""Payments end to end: gateway → pagopa (PostgreSQL, RabbitMQ) → GPD twin, each its own process.

Covers: operator creates a position (published on the twin), citizen sees only his own positions
and downloads the notice (QR decoded), tenant isolation, invalidation, the stamp-duty event from
anpr creating exactly one position, and a receipt making it paid with `payment.completed`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pypdf
import pytest
import sqlalchemy as sa
from nameko.standalone.rpc import ClusterRpcProxy

from sandbox.secrets import generate
from sportello.bus import ConfirmingPublisher
from sportello.contracts.anpr import StampDutyRequested
from sportello.edge.rpc import register_remote_errors
from sportello.events import new_event
from sportello.tokens import SigningKey, TokenIssuer
from tests.support.pdf import qr_codes_per_page
from tests.support.processes import ROOT, ServiceProcess, free_port, service_env, wait_for
from tests.support.servers import Databases, isolated_vhost, require_postgresql, require_rabbitmq

pytestmark = pytest.mark.e2e
CITIZEN = "RSSMRA85T10A562S"
OTHER = "VRDLGU70A01D150D"
ORG = "00297960197"


@dataclass
class Payments:
    gateway: str
    twin: str
    amqp_uri: str
    pagopa_db: str
    issuer: TokenIssuer
    pagopa: ServiceProcess

    def token(self, subject: str, roles: list[str], tenant: str = "cremona") -> dict[str, str]:
        token = self.issuer.issue(subject=subject, tenant=tenant, level=2, roles=roles)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}

    def url(self, path: str, tenant: str = "cremona") -> str:
        return f"{self.gateway}/v1/tenants/{tenant}/payments{path}"


@pytest.fixture(scope="module")
def payments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Payments]:
    require_rabbitmq()
    require_postgresql()
    work = tmp_path_factory.mktemp("payments")
    secrets_dir = work / "secrets"
    generate(secrets_dir)
    twin_port, gateway_port = free_port(), free_port()
    tenants_dir = work / "tenants"
    tenants_dir.mkdir()
    text = (ROOT / "sandbox" / "tenants" / "cremona.yaml").read_text()
    (tenants_dir / "cremona.yaml").write_text(text.replace("127.0.0.1:8101", f"127.0.0.1:{twin_port}"))
    twin_log = (work / "twin.log").open("ab")
    twin_env = {**os.environ, "SANDBOX_GPD_PORT": str(twin_port), "PYTHONPATH": str(ROOT)}
    twin = subprocess.Popen([sys.executable, "-m", "sandbox.gpd"], cwd=ROOT, env=twin_env, stdout=twin_log,
                            stderr=subprocess.STDOUT)
    databases = Databases()
    processes: list[ServiceProcess] = []
    try:
        with isolated_vhost() as amqp_uri:
            urls = {name: databases.url(name) for name in ("pagopa", "spid")}
            for name in ("pagopa", "spid"):
                env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data", SPORTELLO_DATABASE_URL=urls[name])
                processes.append(ServiceProcess(name, env, work).start())
            gateway_env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data",
                                      SPORTELLO_GATEWAY_ADDRESS=f"127.0.0.1:{gateway_port}")
            processes.append(ServiceProcess("gateway", gateway_env, work).start())
            gateway = f"http://127.0.0.1:{gateway_port}"

            def ready() -> bool:
                # not /v1/health: it needs all four services, and only two run here
                try:
                    gateway_up = httpx.get(f"{gateway}/v1/openapi.json", timeout=5).status_code == 200
                    twin_up = httpx.get(f"http://127.0.0.1:{twin_port}/__twin/requests", timeout=2).status_code
                    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=5) as cluster:
                        healthy = [cluster.pagopa.health()["status"], cluster.spid.health()["status"]]
                except Exception:
                    return False
                return gateway_up and twin_up == 200 and healthy == ["ok", "ok"]

            wait_for(ready, timeout=90, interval=0.5, what="pagopa, spid, gateway and the GPD twin")
            key = SigningKey((secrets_dir / "GATEWAY_TOKEN_SIGNING_KEY").read_text())
            yield Payments(gateway, f"http://127.0.0.1:{twin_port}", amqp_uri, urls["pagopa"], TokenIssuer(key),
                           processes[0])
            for process in processes:
                process.stop()
    finally:
        for process in processes:
            process.stop()
        twin.terminate()
        twin.wait(timeout=10)
        databases.drop_all()


def new_position(debtor: str = CITIZEN, amount: int = 2500, **extra: Any) -> dict[str, Any]:
    return {"description": "TARI 2027 - prima rata", "amount_cents": amount,
            "due_date": (date.today() + timedelta(days=60)).isoformat(),
            "debtor": {"fiscal_code": debtor, "full_name": "Mario Rossi"}, **extra}


def outbox_types(payments: Payments) -> list[str]:
    engine = sa.create_engine(payments.pagopa_db)
    try:
        with engine.connect() as connection:
            return [row[0] for row in connection.exec_driver_sql("SELECT event_type FROM outbox ORDER BY id")]
    finally:
        engine.dispose()


def test_operator_creates_citizen_sees_and_downloads_the_notice(payments: Payments) -> None:
    operator = payments.token("VRDLGU70A01D150D", ["operator"])
    created = httpx.post(payments.url("/positions"), json=new_position(reference=f"e2e-{uuid.uuid4()}"),
                         headers=operator, timeout=30)
    assert created.status_code == 201, created.text
    position = created.json()
    assert position["status"] == "published" and position["notice_number"].startswith("301")
    assert created.headers["Location"].endswith(position["id"])
    on_twin = httpx.get(f"{payments.twin}/__twin/positions/{ORG}", timeout=5).json()["positions"]
    assert [p["status"] for p in on_twin if p["iupd"] == position["iupd"]] == ["VALID"]

    citizen = payments.token(CITIZEN, ["citizen"])
    mine = httpx.get(payments.url("/mine"), headers=citizen, timeout=10).json()["items"]
    assert position["id"] in [p["id"] for p in mine]
    assert all(p["debtor"]["fiscal_code"] == CITIZEN for p in mine)

    notice = httpx.get(payments.url(f"/positions/{position['id']}/notice"), headers=citizen, timeout=30)
    assert notice.status_code == 200 and notice.headers["content-type"] == "application/pdf"
    assert qr_codes_per_page(notice.content) == [[f"PAGOPA|002|{position['notice_number']}|{ORG}|2500"]]
    assert "payment.position.created" in " ".join(outbox_types(payments))


def test_isolation_between_citizens_and_tenants(payments: Payments) -> None:
    operator = payments.token("VRDLGU70A01D150D", ["operator"])
    theirs = httpx.post(payments.url("/positions"), json=new_position(debtor=OTHER), headers=operator,
                        timeout=30).json()
    citizen = payments.token(CITIZEN, ["citizen"])
    assert theirs["id"] not in [p["id"] for p in httpx.get(payments.url("/mine"), headers=citizen,
                                                              timeout=10).json()["items"]]
    for path in (f"/positions/{theirs['id']}", f"/positions/{theirs['id']}/notice"):
        denied = httpx.get(payments.url(path), headers=citizen, timeout=10)
        assert denied.status_code == 404 and denied.headers["content-type"] == "application/problem+json"
    assert httpx.get(payments.url("/positions"), headers=citizen, timeout=10).status_code == 403
    assert httpx.post(payments.url("/positions"), json=new_position(), headers=citizen, timeout=10).status_code == 403
    foreign = payments.token("VRDLGU70A01D150D", ["operator"], tenant="lodi")
    assert httpx.get(payments.url("/positions"), headers=foreign, timeout=10).status_code == 403
    assert httpx.get(payments.url("/positions"), timeout=10).status_code == 401


def test_bad_input_is_a_problem_and_creates_nothing(payments: Payments) -> None:
    operator = payments.token("VRDLGU70A01D150D", ["operator"])
    before = httpx.get(f"{payments.twin}/__twin/requests", timeout=5).json()["received"].get("POST create", 0)
    for body in (new_position(amount=0), new_position(debtor="RSSMRA85T10A562X"),
                 {**new_position(), "due_date": "2000-01-01"},
                 new_position(transfers=[{"id_transfer": 1, "amount_cents": 2500, "remittance_information": "x",
                                          "iban": "DE89370400440532013000"}])):
        reply = httpx.post(payments.url("/positions"), json=body, headers=operator, timeout=10)
        assert reply.status_code == 400 and reply.json()["code"] == "request.invalid", reply.text
    after = httpx.get(f"{payments.twin}/__twin/requests", timeout=5).json()["received"].get("POST create", 0)
    assert after == before


def test_operator_lists_and_invalidates(payments: Payments) -> None:
    operator = payments.token("VRDLGU70A01D150D", ["admin"])
    position = httpx.post(payments.url("/positions"), json=new_position(reference=f"search-{uuid.uuid4()}"),
                          headers=operator, timeout=30).json()
    listed = httpx.get(payments.url("/positions"), params={"status": "published", "debtor_fiscal_code": CITIZEN},
                       headers=operator, timeout=10).json()["items"]
    assert position["id"] in [p["id"] for p in listed]
    for search in ({"notice_number": position["notice_number"]}, {"reference": position["reference"]}):
        found = httpx.get(payments.url("/positions"), params=search, headers=operator, timeout=10).json()["items"]
        assert [p["id"] for p in found] == [position["id"]], search
    done = httpx.post(payments.url(f"/positions/{position['id']}/invalidate"), headers=operator, timeout=30)
    assert done.status_code == 200 and done.json()["status"] == "invalidated"
    again = httpx.post(payments.url(f"/positions/{position['id']}/invalidate"), headers=operator, timeout=30)
    assert again.status_code == 409 and again.json()["code"] == "pagopa.position.invalid_transition"
    on_twin = httpx.get(f"{payments.twin}/__twin/positions/{ORG}", timeout=5).json()["positions"]
    assert [p["status"] for p in on_twin if p["iupd"] == position["iupd"]] == ["INVALID"]
    bulk = httpx.get(payments.url("/notices"), params={"status": "invalidated"}, headers=operator, timeout=30)
    assert bulk.status_code == 200 and len(pypdf.PdfReader(io.BytesIO(bulk.content)).pages) >= 1


def test_the_citizens_list_follows_changes_made_behind_the_gateways_back(payments: Payments) -> None:
    """`/mine` is answered from the gateway's read model (ADR 0012); a position created and then withdrawn
    over RPC (not through this gateway) reaches it through pagopa's events."""
    citizen = payments.token(CITIZEN, ["citizen"])

    def mine() -> dict[str, str]:
        reply = httpx.get(payments.url("/mine"), headers=citizen, timeout=10)
        assert reply.status_code == 200
        return {p["id"]: p["status"] for p in reply.json()["items"]}

    mine()  # the citizen's list is now held by the gateway
    register_remote_errors()
    with ClusterRpcProxy({"AMQP_URI": payments.amqp_uri}, timeout=30) as cluster:
        created = cluster.pagopa.create_position("cremona", new_position(reference=f"rm-{uuid.uuid4()}"))
        wait_for(lambda: mine().get(created["id"]) == "published", timeout=10, what="the new position in /mine")
        cluster.pagopa.invalidate_position("cremona", created["id"])
    wait_for(lambda: mine().get(created["id"]) == "invalidated", timeout=10, what="the withdrawal in /mine")


def test_stamp_duty_event_creates_one_position_and_a_receipt_pays_it(payments: Payments) -> None:
    request_id = f"cert-{uuid.uuid4()}"
    event = new_event(StampDutyRequested(request_id=request_id, debtor_fiscal_code=CITIZEN, amount_cents=1600,
                                         description="Imposta di bollo - certificato di residenza"),
                      service="anpr", tenant="cremona")
    publisher = ConfirmingPublisher(payments.amqp_uri)
    try:
        for _ in range(2):  # delivered twice (at-least-once): still one position
            publisher.publish_event(json.dumps(event.to_message()), event_type=event.type, event_id=event.id,
                                    correlation_id=event.correlationid, tenant="cremona")
    finally:
        publisher.close()
    citizen = payments.token(CITIZEN, ["citizen"])

    def stamp_positions() -> list[dict[str, Any]]:
        items = httpx.get(payments.url("/mine"), headers=citizen, timeout=10).json()["items"]
        return [p for p in items if p["reference"] == request_id]

    # published, not the draft it is for a moment while pagopa registers it on GPD
    [position] = wait_for(lambda: [p for p in stamp_positions() if p["status"] == "published"], timeout=30,
                          what="the stamp-duty position")
    assert position["purpose"] == "certificate_stamp_duty" and position["amount_cents"] == 1600

    register_remote_errors()
    with ClusterRpcProxy({"AMQP_URI": payments.amqp_uri}, timeout=30) as cluster:
        paid_at = datetime.now(UTC).isoformat()
        first = cluster.pagopa.record_payment("cremona", position["notice_number"], "rcpt-1", paid_at, 1600)
        second = cluster.pagopa.record_payment("cremona", position["notice_number"], "rcpt-1", paid_at, 1600)
    assert first["changed"] and not second["changed"]
    assert first["position"]["status"] == "paid"
    # the citizen's list is the gateway's read model (ADR 0012): payment.completed reaches it within moments
    wait_for(lambda: [p["status"] for p in stamp_positions()] == ["paid"], timeout=10,
             what="the paid position in the citizen's list")
    assert outbox_types(payments).count("it.sportello.pagopa.payment.completed.v1") == 1
    pagopa_log = payments.pagopa.log()
    assert CITIZEN not in pagopa_log
