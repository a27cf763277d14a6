"""The yearly TARI of a city like Cremona, end to end: positions on GPD, notices, IO messages.

    python -m bench.city_campaign [--households 33000] [--limits on|off|both]

The whole platform (every service, the gateway, the twins) on its own RabbitMQ vhost and PostgreSQL
databases, so it runs beside `make run` and the tests. A back-office operator uploads the campaign
CSV (one row per household, three malformed rows amid them) through the gateway; `pagopa` makes one
position per valid row on the GPD twin (v2 bulk calls of 20) and announces each; `appio` sends each
debtor one IO message with the payment data (profile check, submission, status read); meanwhile the
operator downloads every notice PDF for printing, 500 a page, as soon as a page's positions exist.

- limits on: GPD's 100 calls / 10 s and IO's 150 requests / 5 s per key, at the twins and in the
  services. C bulk calls and R IO requests (one profile per household, a submission and a status
  read per deliverable one) cannot take less than max(floor((C-1)/100)*10, floor((R-1)/150)*5)
  seconds: the measured time, upload to the last message final, is printed next to that minimum
  and their ratio (target: within 5%).
- limits off: the same with no limit anywhere: households/s end to end (every position made, every
  message final, every notice rendered): the platform's own ceiling.

Each run then checks at the twins that every valid household holds exactly one position, every
deliverable one exactly one message and the others none, and that no window exceeded the limit;
any failed check ends the command with status 1. `tests/e2e/test_city_campaign_smoke.py` runs it
small in the default suite; `make bench-city` runs it at Cremona's size.
"""

from __future__ import annotations

import argparse
import io
import math
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pypdf import PdfReader

from bench.results import machine, now, write_section
from sandbox.appio import seed
from services.pagopa.campaigns import BATCH_SIZE
from tests.resilience.campaign import BAD_ROWS, OPERATOR, SERVICES, Campaign, deliverable
from tests.support.platform import Platform, start_platform

NOTICES_PAGE = 500  # the most the notices route gives in one PDF
UNLIMITED = 10**9


@dataclass(frozen=True)
class Limits:
    """The national limits of a run: GPD calls per window, IO requests per window (None: off)."""

    gpd: tuple[int, float] | None = (100, 10.0)
    io: tuple[int, float] | None = (150, 5.0)

    def platform_env(self) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        gpd_limit, gpd_window = self.gpd or (UNLIMITED, 10.0)
        io_limit, io_window = self.io or (UNLIMITED, 1.0)
        services = {"SPORTELLO_PAGOPA_GPD_RATE_LIMIT": str(gpd_limit),
                    "SPORTELLO_PAGOPA_GPD_RATE_WINDOW_SECONDS": f"{gpd_window:g}",
                    "SPORTELLO_APPIO_RATE_LIMIT": str(io_limit),
                    "SPORTELLO_APPIO_RATE_WINDOW_SECONDS": f"{io_window:g}",
                    "SPORTELLO_APPIO_POLL_SECONDS": "0.1",
                    "SPORTELLO_APPIO_STATUS_POLL_SECONDS": "0.5" if self.io else "0.2",
                    "SPORTELLO_APPIO_CONCURRENCY": "16" if self.io else "32",
                    "SPORTELLO_APPIO_BACKOFF_SECONDS": "0.5", "SPORTELLO_APPIO_BACKOFF_CAP_SECONDS": "10"}
        twins = {"gpd": {"RESILIENCE_GPD_LIMIT": str(gpd_limit), "RESILIENCE_GPD_WINDOW_SECONDS": f"{gpd_window:g}"},
                 "appio": {"APPIO_TWIN_RATE_LIMIT": f"{io_limit}/{io_window:g}" if self.io else "off",
                           "APPIO_TWIN_PROCESSING_SECONDS": "0.2" if self.io else "0"}}
        return services, twins


@dataclass
class Operator:
    """The back-office operator during the campaign: follows its progress and prints its notices, a
    page of 500 as soon as its positions exist. Every answer that is not a success is noted (a
    failure of the run) and the request asked again a second later, so one bad answer does not end
    the run."""

    platform: Platform
    campaign: Campaign
    valid: int
    started: float
    positions_seconds: float = float("nan")
    pages: int = 0
    notices: int = 0
    notices_seconds: float = float("nan")
    errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def _created(self) -> int:
        while True:
            try:
                counts = self.campaign.progress()["counts"]
                if not counts["pending"] and math.isnan(self.positions_seconds):
                    self.positions_seconds = time.monotonic() - self.started
                return int(counts["created"])
            except (AssertionError, httpx.HTTPError) as exc:
                self.errors.append(f"progress: {str(exc)[:200]}")
                time.sleep(1)

    def _page(self) -> bytes:
        while True:
            try:
                answer = httpx.get(self.platform.url("/v1/tenants/cremona/payments/notices"), timeout=300,
                                   params={"campaign_id": self.campaign.campaign_id, "limit": NOTICES_PAGE,
                                           "offset": self.notices},
                                   headers=self.platform.auth(OPERATOR, ("operator",)))
                answer.raise_for_status()
                return answer.content
            except httpx.HTTPError as exc:
                self.errors.append(f"notices: {str(exc)[:200]}")
                time.sleep(1)

    def run(self) -> None:
        try:
            while self.notices < self.valid:
                if self._created() < min(self.valid, self.notices + NOTICES_PAGE):
                    time.sleep(0.5)
                    continue
                self.notices += len(PdfReader(io.BytesIO(self._page())).pages)
                self.pages += 1
            self.notices_seconds = time.monotonic() - self.started
            while math.isnan(self.positions_seconds):
                self._created()
                time.sleep(0.5)
        finally:
            self.done.set()


def minimum_seconds(households: list[str], limits: Limits) -> tuple[int, int, float]:
    """GPD bulk calls, IO requests, and the least time the limits allow for both."""
    calls = math.ceil(len(households) / BATCH_SIZE)
    requests = len(households) + 2 * sum(1 for cf in households if deliverable(cf))
    bounds = [0.0]
    if limits.gpd:
        bounds.append(math.floor((calls - 1) / limits.gpd[0]) * limits.gpd[1])
    if limits.io:
        bounds.append(math.floor((requests - 1) / limits.io[0]) * limits.io[1])
    return calls, requests, max(bounds)


def run(households_count: int, limits: Limits, work: Path, *, first: int = 0) -> dict[str, Any]:
    """One campaign; its figures and `failures` (empty when every check held)."""
    households = seed.citizens(first + households_count)[first:]
    calls, requests, minimum = minimum_seconds(households, limits)
    services_env, twins_env = limits.platform_env()
    failures: list[str] = []
    with start_platform(work, services=SERVICES, env=services_env, twin_env=twins_env,
                        twin_modules={"gpd": "tests.resilience.faulty_gpd"}, timeout=180) as platform:
        # pagopa works campaigns only after one GPD window from its start (a killed predecessor may
        # have spent it): wait it out, so the run measures the campaign, not the start-up
        time.sleep((limits.gpd[1] if limits.gpd else 10.0) + 1)
        campaign = Campaign(platform, households)
        started = time.monotonic()
        view = campaign.upload()
        uploaded = time.monotonic() - started
        operator = Operator(platform, campaign, valid=len(households), started=started)
        threading.Thread(target=operator.run, daemon=True).start()
        campaign.run_until_final(timeout=max(3 * minimum, 1800))
        messages_final = time.monotonic() - started
        operator.done.wait(timeout=1800)
        elapsed = time.monotonic() - started
        verdict = campaign.assert_exactly_once()
        gpd_stats = campaign.gpd("/__resilience/stats")
        io_stats = campaign.io("/__admin/stats")["keys"]
    gpd_max = max((k["max_in_window"] for k in gpd_stats["keys"].values()), default=0)
    io_max = max((k["max_in_window"] for k in io_stats.values()), default=0)
    io_made = sum(k["requests"] for k in io_stats.values())
    throttled = sum(k["throttled"] for k in io_stats.values())
    if limits.gpd and gpd_max > limits.gpd[0]:
        failures.append(f"GPD saw {gpd_max} calls in one window (limit {limits.gpd[0]})")
    if limits.io and (io_max > limits.io[0] or throttled):
        failures.append(f"IO saw {io_max} requests in one window (limit {limits.io[0]}), {throttled} throttled")
    if operator.notices != len(households):
        failures.append(f"notices: {operator.notices} of {len(households)} rendered")
    if operator.errors:
        failures.append(f"{len(operator.errors)} answers to the operator were errors, e.g. {operator.errors[:3]}")
    return {"households": len(households), "valid_rows": view["valid_rows"], "invalid_rows": len(BAD_ROWS),
            "deliverable": verdict["deliverable"], "gpd_calls": calls, "io_requests_needed": requests,
            "io_requests_made": io_made, "minimum_s": minimum, "upload_s": uploaded,
            "positions_s": operator.positions_seconds, "messages_s": messages_final,
            "notices_s": operator.notices_seconds, "notice_pages": operator.pages,
            "elapsed_s": elapsed, "ratio": elapsed / minimum if minimum else float("nan"),
            "gpd_max_in_window": gpd_max, "io_max_in_window": io_max, "io_throttled": throttled,
            "failures": failures}


def report(label: str, r: dict[str, Any], limits: Limits) -> list[str]:
    lines = [f"{label}: {r['households']} households ({r['invalid_rows']} malformed rows refused), "
             f"{r['deliverable']} on IO and reachable; upload + validation {r['upload_s']:.1f} s",
             f"  positions all at GPD after {r['positions_s']:.1f} s ({r['gpd_calls']} bulk calls, most in one "
             f"window {r['gpd_max_in_window']}); {r['households']} notices in {r['notice_pages']} PDFs, "
             f"done after {r['notices_s']:.1f} s; messages final after {r['messages_s']:.1f} s "
             f"({r['io_requests_made']} IO requests for {r['io_requests_needed']} needed, most in one window "
             f"{r['io_max_in_window']}, throttled {r['io_throttled']})"]
    if limits.gpd or limits.io:
        lines.append(f"  end to end {r['elapsed_s']:.1f} s; minimum the limits allow {r['minimum_s']:.1f} s; "
                     f"ratio {r['ratio']:.3f} (target <= 1.05: {'met' if r['ratio'] <= 1.05 else 'NOT met'})")
    else:
        rate = r["households"] / r["elapsed_s"]
        lines.append(f"  end to end {r['elapsed_s']:.1f} s = {rate:.0f} households/s (positions, notices and "
                     f"messages; the positions alone {r['households'] / r['positions_s']:.0f}/s; target >= 300 "
                     f"positions/s)")
    lines += [f"  FAIL: {failure}" for failure in r["failures"]]
    return lines


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still stop the platform it started
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--households", type=int, default=33_000, help="Cremona: about 33,000")
    parser.add_argument("--limits", choices=["on", "off", "both"], default="on")
    args = parser.parse_args()
    runs = {"on": [("limits on", Limits())], "off": [("limits off", Limits(gpd=None, io=None))]}
    runs["both"] = runs["on"] + runs["off"]
    lines: list[str] = []
    failed = False
    state, started_at = machine(), now()
    for label, limits in runs[args.limits]:
        with tempfile.TemporaryDirectory(prefix="bench-city-") as folder:
            result = run(args.households, limits, Path(folder))
        for line in report(label, result, limits):
            print(line, flush=True)
            lines.append(line)
        failed = failed or bool(result["failures"]) or (limits.io is not None and result["ratio"] > 1.05)
    command = f"python -m bench.city_campaign --households {args.households} --limits {args.limits}"
    body = "\n".join(lines)
    write_section("city", f"""## City campaign end to end (TARI: positions, notices, IO messages)

`{command}` (`make bench-city`)

Run started {started_at}, {state}. The whole platform (4 services, gateway, twins) on the same 2 cores, the
campaign uploaded as CSV through the gateway; timed from the upload to the last message final.

```
{body}
```
""")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
