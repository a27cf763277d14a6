"""A CSV campaign survives kill -9 of the pagopa process: each position is created on GPD exactly once.

The pagopa service runs as a real process (PostgreSQL, RabbitMQ) against the GPD twin (its real
100 calls / 10 s limit on, plus latency so the kill lands midway). The default run is 200 rows;
`PAGOPA_CAMPAIGN_ROWS=1000` runs the issue's 1,000-row version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from nameko.standalone.rpc import ClusterRpcProxy
from stdnum.it import codicefiscale

from sportello.edge.rpc import register_remote_errors
from tests.support.platform import free_port, tenant_files
from tests.support.processes import ROOT, ServiceProcess, service_env, wait_for
from tests.support.servers import Databases, isolated_vhost

pytestmark = pytest.mark.integration
ORG = "00297960197"
ROWS = int(os.environ.get("PAGOPA_CAMPAIGN_ROWS", "200"))
MONTHS = "ABCDEHLMPRST"


def fiscal_code(n: int) -> str:
    """The n-th of 33,600 distinct valid personal fiscal codes."""
    year, rest = divmod(n, 12 * 28)
    month, day = divmod(rest, 28)
    first = f"RSSMRA{year % 100:02d}{MONTHS[month]}{day + 1:02d}D150"
    return first + codicefiscale.calc_check_digit(first)


def campaign_csv(rows: int) -> tuple[str, set[int]]:
    """The CSV and the row numbers that are bad (a few of each kind)."""
    lines, bad = ["codice_fiscale;nominativo;importo;scadenza;causale"], set()
    for n in range(1, rows + 1):
        code, amount, due = fiscal_code(n), f"{150 + n % 90},{n % 100:02d}", "31/03/2099"
        if n % 97 == 0:
            code, bad = code[:15] + ("A" if code[15] != "A" else "B"), bad | {n}  # wrong check character
        elif n % 89 == 0:
            amount, bad = "0,00", bad | {n}
        elif n % 83 == 0:
            due, bad = "01/01/2020", bad | {n}
        lines.append(f"{code};Famiglia {n};{amount};{due};TARI 2099 rata unica")
    return "\n".join(lines) + "\n", bad


@dataclass
class Stack:
    amqp_uri: str
    db_url: str
    twin: str
    work: Path
    env: dict[str, str]

    def rpc(self) -> Any:
        return ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=60)

    def start_pagopa(self) -> ServiceProcess:
        process = ServiceProcess("pagopa", self.env, self.work).start()

        def healthy() -> bool:
            try:
                with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=5) as cluster:
                    return bool(cluster.pagopa.health()["status"] == "ok")
            except Exception:
                return False

        wait_for(healthy, timeout=60, interval=0.5, what="the pagopa service")
        return process


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tenant_files_dirs: tuple[Path, Path]) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("pagopa_campaign")
    source, secrets_dir = tenant_files_dirs
    twin_port = free_port()
    tenants_dir = tenant_files(source, work / "tenants", {8101: twin_port})
    twin_log = (work / "twin.log").open("ab")
    twin = subprocess.Popen([sys.executable, "-m", "sandbox.gpd"], cwd=ROOT, stdout=twin_log,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "SANDBOX_GPD_PORT": str(twin_port), "PYTHONPATH": str(ROOT)})
    databases = Databases()
    try:
        twin_url = f"http://127.0.0.1:{twin_port}"
        wait_for(lambda: _up(twin_url), timeout=30, what="the GPD twin")
        with isolated_vhost() as amqp_uri:
            db_url = databases.url("pagopa_campaign")
            env = service_env(amqp_uri, tenants_dir, secrets_dir, work / "data", SPORTELLO_DATABASE_URL=db_url)
            yield Stack(amqp_uri, db_url, twin_url, work, env)
    finally:
        twin.terminate()
        twin.wait(timeout=10)
        databases.drop_all()


@pytest.fixture(scope="module")
def tenant_files_dirs(tenant_files: tuple[Path, Path]) -> tuple[Path, Path]:
    return tenant_files


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/__twin/requests", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_kill_9_midway_creates_each_position_exactly_once(stack: Stack) -> None:
    register_remote_errors()
    text, bad = campaign_csv(ROWS)
    good = ROWS - len(bad)
    assert bad and good > 100
    # each GPD call takes a while, so the kill lands with rows created and rows pending
    httpx.post(f"{stack.twin}/__twin/faults", json={"latency_ms": 250, "count": 1_000_000}, timeout=5)
    pagopa = stack.start_pagopa()
    try:
        with stack.rpc() as cluster:
            uploaded = cluster.pagopa.upload_campaign("cremona", "TARI 2099", text)
        cid = uploaded["campaign_id"]
        assert uploaded["total_rows"] == ROWS and uploaded["valid_rows"] == good
        assert sorted(e["row"] for e in uploaded["errors"]) == sorted(bad)

        def progress() -> dict[str, Any]:
            with stack.rpc() as cluster:
                return dict(cluster.pagopa.campaign_progress("cremona", cid))

        wait_for(lambda: progress()["counts"]["created"] >= 60, timeout=60, interval=0.2, what="some rows created")
        pagopa.kill9()
        at_kill = _row_states(stack.db_url, cid)
        assert at_kill["created"] < good and at_kill["pending"] > 0, at_kill  # really midway

        pagopa = stack.start_pagopa()
        done = wait_for(lambda: (p := progress())["status"] == "done" and p, timeout=120, interval=0.5,
                        what="the campaign to finish after the restart")
        assert done["counts"] == {"invalid": len(bad), "pending": 0, "created": good, "failed": 0}

        with stack.rpc() as cluster:
            report = cluster.pagopa.campaign_report("cremona", cid, None, 0, 5000)["items"]
    finally:
        pagopa.stop()
        httpx.post(f"{stack.twin}/__twin/faults", json={"count": 0}, timeout=5)

    assert [r["row"] for r in report] == list(range(1, ROWS + 1))
    assert all((r["status"] == "invalid") == (r["row"] in bad) for r in report)
    assert all(r["error"] for r in report if r["status"] == "invalid")
    created = {r["position_id"] for r in report if r["status"] == "created"}
    assert len(created) == good

    # at the twin: exactly our positions, each once (a duplicate would be another IUPD or IUV)
    twin_positions = httpx.get(f"{stack.twin}/__twin/positions/{ORG}", timeout=10).json()["positions"]
    iupds = Counter(p["iupd"] for p in twin_positions)
    iuvs = Counter(o["iuv"] for p in twin_positions for o in p["paymentOption"])
    assert len(twin_positions) == good and set(iupds.values()) == {1} and set(iuvs.values()) == {1}
    assert set(iupds) == {f"{ORG}-{position_id}" for position_id in created}
    assert {p["status"] for p in twin_positions} == {"VALID"}
    counters = httpx.get(f"{stack.twin}/__twin/requests", timeout=5).json()
    assert counters["received"].get("POST create_many", 0) >= good // 20
    assert counters["statuses"].get("429", 0) == 0  # the limiter kept GPD's limit

    # one PaymentPositionCreated per position, with the campaign id, in the outbox
    engine = sa.create_engine(stack.db_url)
    try:
        with engine.connect() as connection:
            bodies = connection.execute(sa.text(
                "SELECT body FROM outbox WHERE event_type LIKE '%payment.position.created%'")).scalars().all()
            statuses = Counter(connection.execute(sa.text(
                "SELECT status FROM pagopa_positions WHERE campaign_id = :c"), {"c": cid}).scalars())
    finally:
        engine.dispose()
    events = [json.loads(b)["data"] for b in bodies]
    assert Counter(e["position_id"] for e in events) == Counter(created)
    assert {e["campaign_id"] for e in events} == {cid}
    assert statuses == Counter({"published": good})


def _row_states(db_url: str, campaign_id: str) -> Counter[str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            return Counter(connection.execute(sa.text(
                "SELECT status FROM pagopa_campaign_rows WHERE campaign_id = :c"), {"c": campaign_id}).scalars())
    finally:
        engine.dispose()
