"""IO's limit shared by two replicas (sportello/ratelimit_db.py, docs/adr/0011), against real PostgreSQL.

Two OS processes, six threads each, call the IO twin as fast as their limiters allow, with the same
IO key. The twin counts arrivals on its own clock. With the shared limiter the two together never
put more than the limit in any window, and run close to the limit; with in-process limiters (the
control) the same two processes exceed it — so the test can tell the difference.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.appio.models import rate_limit_calls, rate_limit_keys
from sportello.migrate import upgrade
from sportello.ratelimit_db import PostgresWindowLimiter
from tests.support.processes import ROOT, free_port, wait_for
from tests.support.servers import Databases

pytestmark = pytest.mark.integration
LIMIT, WINDOW = 20, 1.0
CALLS = 60  # per process
LABEL = "any-"  # the twin names keys it accepts without knowing them "any-<digest>"


@pytest.fixture(scope="module")
def database(databases: Databases) -> Iterator[str]:
    url = databases.url(f"limiter{uuid.uuid4().hex[:6]}")
    upgrade("appio", url)  # the tables and the admission function, as appio's migration creates them
    yield url


@pytest.fixture()
def twin(tmp_path: Any) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("SPORTELLO_", "APPIO_TWIN_"))}
    env.update(PYTHONPATH=str(ROOT), APPIO_TWIN_RATE_LIMIT=f"{LIMIT}/{WINDOW:g}", APPIO_TWIN_ACCEPT_ANY_KEY="1",
               APPIO_TWIN_FAULTS=json.dumps({"latency_ms": 40}))  # every answer takes 40 ms
    log = (tmp_path / "twin.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.appio", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/__admin/seed", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_for(up, timeout=30, what="the IO twin")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def two_replicas(mode: str, database: str, twin: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    command = [sys.executable, "-m", "tests.integration.limiter_worker", mode, database, twin, str(CALLS),
               str(LIMIT), str(WINDOW)]
    procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    [stats] = [s for label, s in httpx.get(f"{twin}/__admin/stats", timeout=10).json()["keys"].items()
               if label.startswith(LABEL)]
    return results, stats


def test_two_replicas_with_the_shared_limiter_never_exceed_the_limit_together(database: str, twin: str) -> None:
    results, stats = two_replicas("shared", database, twin)
    print(f"shared: {results}, twin {stats}")
    assert [r["statuses"] for r in results] == [{"200": CALLS}, {"200": CALLS}]  # both worked, none throttled
    assert stats["requests"] == 2 * CALLS
    assert stats["max_in_window"] <= LIMIT and stats["throttled"] == 0
    # and at the limit, not far below it: 120 calls need at least 5 windows
    minimum = math.floor((2 * CALLS - 1) / LIMIT) * WINDOW
    slowest = max(r["seconds"] for r in results)
    assert minimum <= slowest <= minimum * 1.5, slowest
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(rate_limit_calls)
                                  .where(rate_limit_calls.c.ended_at.is_(None))).scalar_one() == 0
        assert connection.execute(sa.select(sa.func.count()).select_from(rate_limit_keys)).scalar_one() == 1
    engine.dispose()


def test_control_two_in_process_limiters_exceed_it(database: str, twin: str) -> None:
    results, stats = two_replicas("local", database, twin)
    print(f"local: {results}, twin {stats}")
    assert stats["max_in_window"] > LIMIT and stats["throttled"] > 0


def test_a_replica_that_died_in_flight_holds_its_slot_until_its_deadline(database: str) -> None:
    """Limit 1: a call whose process died (never ended) blocks the key until its deadline plus a window."""
    engine = sa.create_engine(database)
    limiter = PostgresWindowLimiter(engine, 1, 0.5, max_call_seconds=1.5)
    started = time.monotonic()
    limiter.begin("dead-key")  # never ended
    assert limiter.in_window("dead-key") == 1
    after_dead = limiter.begin("dead-key")
    assert 2.0 <= time.monotonic() - started < 3.5  # its deadline (1.5 s) plus a window (0.5 s)
    limiter.end(after_dead)
    time.sleep(0.5)
    limiter.pause("dead-key", 0.7)  # a 429's Retry-After holds every replica
    paused = time.monotonic()
    limiter.acquire("dead-key")
    assert time.monotonic() - paused >= 0.65
    engine.dispose()
