"""City-size payment campaign against the GPD twin: does the campaign run at the speed GPD's limit allows?

    python -m bench.pagopa_campaign [--rows 33000] [--batch 20] [--limits on|off|both]

One TARI campaign of `--rows` households (default 33,000: Cremona's) is uploaded and then worked
by the same code the pagopa service's timer runs (`Campaigns.process`), on a fresh PostgreSQL
database, against the GPD twin in its own process on a free port (so it runs beside `make run`).

- limits on: the twin enforces GPD's 100 calls / 10 s per key and the adapter keeps it. P valid rows
  in v2 bulk calls of B positions need C = ceil(P/B) calls; a sliding window of 100 per 10 s lets
  call k start no earlier than floor((k-1)/100)*10 s, so the least time is floor((C-1)/100)*10 s.
  Prints the measured time next to it and the ratio (target: within 5%), and checks at the twin
  that every position is there exactly once and no call was refused with 429.
- limits off: the same campaign with no limit on either side: positions/s (our own ceiling).

Not a test: a command (the limited city-size run takes minutes). The default-run versions are
tests/integration/test_pagopa_campaign_resume.py and tests/e2e/test_payments_campaign.py.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa
from stdnum.it import codicefiscale

from services.pagopa.adapters.gpd import GPD_LIMIT, GPD_WINDOW_SECONDS, HttpGpd, gpd_limiter
from services.pagopa.application import Positions
from services.pagopa.campaigns import Campaigns
from sportello.db import Database
from sportello.migrate import upgrade
from sportello.ratelimit import SlidingWindowLimiter
from sportello.tenants import TenantRegistry
from tests.support.platform import free_port
from tests.support.processes import ROOT, wait_for
from tests.support.servers import Databases, require_postgresql
from tests.unit.pagopa.support import tenant

ORG = "00297960197"
MONTHS = "ABCDEHLMPRST"
UNLIMITED = 10**9


def fiscal_code(n: int) -> str:
    """The n-th of 33,600 distinct valid personal fiscal codes (then they repeat: a family may owe twice)."""
    year, rest = divmod(n % 33_600, 12 * 28)
    month, day = divmod(rest, 28)
    first = f"RSSMRA{year:02d}{MONTHS[month]}{day + 1:02d}D150"
    return first + codicefiscale.calc_check_digit(first)


def campaign_csv(rows: int) -> str:
    lines = ["codice_fiscale;nominativo;importo;scadenza;causale"]
    lines += [f"{fiscal_code(n)};Famiglia {n};{120 + n % 300},{n % 100:02d};31/03/2099;TARI 2099 rata unica"
              for n in range(rows)]
    return "\n".join(lines) + "\n"


# The twin checks "IUV already used" by scanning every stored position (fine for tests, quadratic for
# 33,000): the bench runs it with an index so it measures our side, not the twin's scan.
INDEXED_TWIN = """
from werkzeug.serving import run_simple
from sandbox.gpd.app import GpdTwin

class IndexedTwin(GpdTwin):
    def reset(self):
        super().reset()
        self.iuvs = {}

    def _store(self, org, body, publish):
        stored = super()._store(org, body, publish)
        self.iuvs.setdefault(org, set()).update(o["iuv"] for o in stored["paymentOption"])
        return stored

    def _iuv_taken(self, org, body):
        return any(o["iuv"] in self.iuvs.get(org, ()) for o in body["paymentOption"])
"""


@contextmanager
def gpd_twin(limit: int) -> Iterator[str]:
    """The GPD twin in its own process, with `limit` calls per 10 s per key."""
    port = free_port()
    code = f"{INDEXED_TWIN}\nrun_simple('127.0.0.1', {port}, IndexedTwin(limit={limit}), threaded=True)"
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{url}/__twin/requests", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, timeout=30, what="the GPD twin")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run(rows: int, batch: int, limited: bool, databases: Databases) -> dict[str, float]:
    limit = GPD_LIMIT if limited else UNLIMITED
    with gpd_twin(limit) as twin:
        url = databases.url(f"pagopa_bench_{'on' if limited else 'off'}")
        upgrade("pagopa", url)
        database = Database(url)
        gpd = HttpGpd(limiter=gpd_limiter() if limited else SlidingWindowLimiter(UNLIMITED, GPD_WINDOW_SECONDS))
        registry = TenantRegistry({"cremona": tenant(gpd_url=f"{twin}/gpd/debt-positions-service/v1")})
        campaigns = Campaigns(Positions(database, registry, gpd, today=lambda: datetime.now(UTC).date()),
                              batch_size=batch)
        try:
            started = time.monotonic()
            view = campaigns.upload("cremona", "TARI 2099", campaign_csv(rows))
            uploaded = time.monotonic() - started
            started = time.monotonic()
            while campaigns.running("cremona"):
                campaigns.process("cremona", budget_seconds=60)
            elapsed = time.monotonic() - started
            progress = campaigns.progress("cremona", view["campaign_id"])
            counters = httpx.get(f"{twin}/__twin/requests", timeout=10).json()
            at_twin = httpx.get(f"{twin}/__twin/positions/{ORG}", timeout=120).json()["positions"]
            with database.transaction() as session:
                events = session.execute(sa.text("SELECT count(*) FROM outbox")).scalar_one()
        finally:
            gpd.client.close()
            database.dispose()
    valid = view["valid_rows"]
    calls = math.ceil(valid / batch)
    assert progress["counts"]["created"] == valid == rows, progress
    assert len(at_twin) == valid and len({p["iupd"] for p in at_twin}) == valid, "GPD twin: not each exactly once"
    assert events == valid, "one PaymentPositionCreated per position"
    return {"rows": rows, "valid": valid, "calls": calls, "upload_s": uploaded, "elapsed_s": elapsed,
            "bulk_calls": counters["received"].get("POST create_many", 0),
            "refused_429": counters["statuses"].get("429", 0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=33_000)
    parser.add_argument("--batch", type=int, default=20, help="positions per GPD v2 bulk call")
    parser.add_argument("--limits", choices=["on", "off", "both"], default="both")
    args = parser.parse_args()
    require_postgresql()
    databases = Databases()
    failed = False
    try:
        if args.limits in ("on", "both"):
            r = run(args.rows, args.batch, True, databases)
            minimum = math.floor((r["calls"] - 1) / GPD_LIMIT) * GPD_WINDOW_SECONDS
            ratio = r["elapsed_s"] / minimum if minimum else float("nan")
            print(f"limits on : {r['valid']} positions in {r['calls']} bulk calls of {args.batch} "
                  f"(twin saw {r['bulk_calls']}, 429s: {r['refused_429']}); upload+validation {r['upload_s']:.1f} s")
            print(f"            processing {r['elapsed_s']:.1f} s, minimum the limit allows {minimum:.1f} s, "
                  f"ratio {ratio:.3f} (target <= 1.05)")
            failed = failed or not (minimum == 0 or ratio <= 1.05)
        if args.limits in ("off", "both"):
            r = run(args.rows, args.batch, False, databases)
            print(f"limits off: {r['valid']} positions in {r['elapsed_s']:.1f} s = "
                  f"{r['valid'] / r['elapsed_s']:.0f} positions/s ({r['calls']} bulk calls; "
                  f"upload+validation {r['upload_s']:.1f} s = {r['rows'] / r['upload_s']:.0f} rows/s)")
    finally:
        databases.drop_all()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
