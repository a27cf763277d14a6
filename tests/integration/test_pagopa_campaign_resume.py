"""A CSV campaign survives kill -9 of the pagopa process: each position is created on GPD exactly once.

Through the gateway, as the back office does it: an operator uploads 1,000 rows with a few bad ones
(per-row errors at once), the pagopa process (PostgreSQL, RabbitMQ) is killed with a quarter of the
positions made, restarted, and the upload retried with its Idempotency-Key; the campaign finishes
with exactly the good rows, each once at the GPD twin (its real 100 calls / 10 s limit on, plus
100 ms latency per call so the kill lands midway, usually with a bulk call in flight) and once in
the outbox. About 30 s; `PAGOPA_CAMPAIGN_ROWS=<n>` runs another size.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from stdnum.it import codicefiscale

from tests.support.platform import Platform, start_platform
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration
ORG = "00297960197"
OPERATOR = "RSSMRA85T10A562S"
BASE = "/v1/tenants/cremona/payments/campaigns"
ROWS = int(os.environ.get("PAGOPA_CAMPAIGN_ROWS", "1000"))
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


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with start_platform(tmp_path_factory.mktemp("pagopa_campaign"), services=("pagopa", "spid"),
                        twins=("gpd",)) as running:
        yield running


def restart_pagopa(platform: Platform) -> None:
    platform.processes["pagopa"].start()

    def healthy() -> bool:
        try:
            with platform.rpc(timeout=5) as cluster:
                return bool(cluster.pagopa.health()["status"] == "ok")
        except Exception:
            return False

    wait_for(healthy, timeout=60, interval=0.3, what="the pagopa service after the restart")


def test_kill_9_midway_creates_each_position_exactly_once(platform: Platform) -> None:
    text, bad = campaign_csv(ROWS)
    good = ROWS - len(bad)
    assert bad and good > 100
    twin = platform.twins["gpd"]
    operator = platform.auth(OPERATOR, ("operator",))
    # each GPD call takes a while, so the kill lands with rows created and rows pending
    httpx.post(f"{twin}/__twin/faults", json={"latency_ms": 100, "count": 1_000_000}, timeout=5)
    try:
        answer = httpx.post(platform.url(BASE), params={"name": "TARI 2099"}, content=text, timeout=60,
                            headers={**operator, "Content-Type": "text/csv", "Idempotency-Key": "tari-2099-kill"})
        assert answer.status_code == 201, answer.text
        uploaded = answer.json()
        cid = uploaded["campaign_id"]
        assert uploaded["total_rows"] == ROWS and uploaded["valid_rows"] == good
        assert sorted(e["row"] for e in uploaded["errors"]) == sorted(bad)

        def progress() -> dict[str, Any]:
            reply = httpx.get(platform.url(f"{BASE}/{cid}"), headers=operator, timeout=30)
            assert reply.status_code == 200, reply.text
            return dict(reply.json())

        wait_for(lambda: progress()["counts"]["created"] >= good // 4, timeout=60, interval=0.2,
                 what="a quarter of the rows created")
        platform.processes["pagopa"].kill9()
        at_kill = _row_states(platform.database_urls["pagopa"], cid)
        assert at_kill["created"] < good and at_kill["pending"] > 0, at_kill  # really midway

        # the operator's browser retries the upload meanwhile: the same campaign, nothing new
        restart_pagopa(platform)
        retried = httpx.post(platform.url(BASE), params={"name": "TARI 2099"}, content=text, timeout=60,
                             headers={**operator, "Content-Type": "text/csv", "Idempotency-Key": "tari-2099-kill"})
        assert retried.status_code == 200 and retried.json()["campaign_id"] == cid, retried.text
        done = wait_for(lambda: (p := progress())["status"] == "done" and p, timeout=120, interval=0.5,
                        what="the campaign to finish after the restart")
        assert done["counts"] == {"invalid": len(bad), "pending": 0, "created": good, "failed": 0}
        reply = httpx.get(platform.url(f"{BASE}/{cid}/report"), params={"limit": 5000}, headers=operator,
                          timeout=60)
        assert reply.status_code == 200, reply.text
        report = reply.json()["items"]
    finally:
        httpx.post(f"{twin}/__twin/faults", json={"count": 0}, timeout=5)

    assert [r["row"] for r in report] == list(range(1, ROWS + 1))
    assert all((r["status"] == "invalid") == (r["row"] in bad) for r in report)
    assert all(r["error"] for r in report if r["status"] == "invalid")
    created = {r["position_id"] for r in report if r["status"] == "created"}
    assert len(created) == good

    # at the twin: exactly our positions, each once (a duplicate would be another IUPD or IUV)
    twin_positions = httpx.get(f"{twin}/__twin/positions/{ORG}", timeout=10).json()["positions"]
    iupds = Counter(p["iupd"] for p in twin_positions)
    iuvs = Counter(o["iuv"] for p in twin_positions for o in p["paymentOption"])
    assert len(twin_positions) == good and set(iupds.values()) == {1} and set(iuvs.values()) == {1}
    assert set(iupds) == {f"{ORG}-{position_id}" for position_id in created}
    assert {p["status"] for p in twin_positions} == {"VALID"}
    counters = httpx.get(f"{twin}/__twin/requests", timeout=5).json()
    assert counters["received"].get("POST create_many", 0) >= good // 20
    assert counters["statuses"].get("429", 0) == 0  # the limiter kept GPD's limit

    # one PaymentPositionCreated per position, with the campaign id, in the outbox
    bodies = [r[0] for r in platform.rows("pagopa", "SELECT body FROM outbox WHERE event_type LIKE :t",
                                          t="%payment.position.created%")]
    statuses = Counter(r[0] for r in platform.rows("pagopa", "SELECT status FROM pagopa_positions "
                                                              "WHERE campaign_id = :c", c=cid))
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
