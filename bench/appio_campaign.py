"""Benchmark and resilience run of App IO campaigns against the IO twin (real processes, real limits).

    python -m bench.appio_campaign throughput [--recipients 600] [--limit 150] [--window 5] [--replicas 1]
    python -m bench.appio_campaign resilience [--recipients 5000] [--fault-rate 0.2] [--window 5] [--replicas 2]

Both start their own RabbitMQ vhost, PostgreSQL database, IO twin (free port) and appio process
(tests/support/platform.py), so they run beside `make run` and the tests.

- throughput: one campaign with the limit on (IO's 150 requests / 5 s per key, on the twin and in
  appio). Every recipient needs a profile lookup, every deliverable one a submission and at least
  one status read: R requests. A sliding window of L per W lets request k start no earlier than
  floor((k-1)/L)*W, so the theoretical minimum is floor((R-1)/L)*W. Prints the measured time next
  to it and the ratio (target: within 5%). Then the same campaign with limits off: messages/s.
- resilience: a campaign to 5,000 citizens with a fifth of IO's answers broken (429 + Retry-After,
  5xx, timeouts longer than appio's read timeout), sent by two appio replicas sharing the IO key
  (and IO's limit, through the shared limiter in PostgreSQL), one of them killed with SIGKILL
  midway and restarted. Submissions whose answer was lost end `in_doubt` (ADR 0007); an operator then settles
  each one as the back office would (mark sent with the id IO holds, else resend with confirmation).
  Asserts from the twin's counters: every deliverable citizen exactly one message, the others none,
  and no window above the limit. Exits non-zero when an assertion fails.
Not tests: commands (they take minutes). `tests/e2e/test_appio_resilience_smoke.py` runs the same
resilience scenario, small, in the default test suite.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sandbox.appio import seed
from tests.support.platform import Platform, start_platform
from tests.support.processes import ServiceProcess, wait_for

SUBJECT = "Raccolta rifiuti: nuovo calendario"
MARKDOWN = ("Gentile cittadina, gentile cittadino, dal primo del mese cambia il calendario della raccolta "
            "differenziata nel tuo quartiere. Trovi i nuovi giorni sul sito del Comune.")
ACTIVE = ("pending", "profile_checked", "submitting", "submitted")


def deliverable(fiscal_code: str) -> bool:
    profile = seed.profile_for(fiscal_code)
    return bool(profile and profile["sender_allowed"])


def theoretical_minimum(recipients: list[str], limit: int, window: float) -> tuple[int, float]:
    """Requests strictly needed (profile + submission + one status read) and the least time they take."""
    requests = len(recipients) + 2 * sum(1 for cf in recipients if deliverable(cf))
    return requests, math.floor((requests - 1) / limit) * window


@contextmanager
def running(work: Path, *, limit: int | None, window: float, appio_env: dict[str, str] | None = None,
            twin_env: dict[str, str] | None = None) -> Iterator[Platform]:
    env = {"SPORTELLO_APPIO_RATE_LIMIT": str(limit or 1_000_000),
           "SPORTELLO_APPIO_RATE_WINDOW_SECONDS": str(window if limit else 1),
           "SPORTELLO_APPIO_POLL_SECONDS": "0.1", "SPORTELLO_APPIO_STATUS_POLL_SECONDS": "0.5",
           "SPORTELLO_APPIO_BACKOFF_SECONDS": "0.5", "SPORTELLO_APPIO_BACKOFF_CAP_SECONDS": "10",
           **(appio_env or {})}
    if os.environ.get("BENCH_APPIO_RATE_MARGIN_SECONDS"):
        env["SPORTELLO_APPIO_RATE_MARGIN_SECONDS"] = os.environ["BENCH_APPIO_RATE_MARGIN_SECONDS"]
    twin = {"APPIO_TWIN_RATE_LIMIT": f"{limit}/{window:g}" if limit else "off",
            "APPIO_TWIN_PROCESSING_SECONDS": "0.2", **(twin_env or {})}
    with start_platform(work, services=("appio",), twins=("appio",), gateway=False, env=env,
                        twin_env={"appio": twin}) as platform:
        yield platform


@contextmanager
def extra_replicas(platform: Platform, folder: Path, count: int) -> Iterator[list[ServiceProcess]]:
    """`count` more appio processes beside the platform's one: same database, broker, IO key and limit
    (the shared limiter). Started after the first is up, so migrations never race."""
    first = platform.processes["appio"]
    replicas = [ServiceProcess("appio", first.env, folder / f"replica{i}") for i in range(1, count + 1)]
    try:
        for replica in replicas:
            replica.log_path.parent.mkdir(parents=True, exist_ok=True)
            replica.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def create_campaign(platform: Platform, recipients: list[str], name: str) -> str:
    with platform.rpc(timeout=120) as cluster:
        created = cluster.appio.create_campaign("cremona", name, SUBJECT, MARKDOWN, fiscal_codes=recipients)
    return str(created["campaign_id"])


def states(platform: Platform, campaign: str) -> dict[str, int]:
    return {r.state: int(r.n) for r in platform.rows(
        "appio", "SELECT state, count(*) AS n FROM appio_messages WHERE campaign_id = :c GROUP BY state", c=campaign)}


def wait_final(platform: Platform, campaign: str, timeout: float, *, report_every: float = 15.0,
               log: Callable[[str], None] = print) -> float:
    """Seconds until no recipient of the campaign is still on its way."""
    started = time.monotonic()
    shown = started
    while True:
        now_states = states(platform, campaign)
        if not any(now_states.get(s) for s in ACTIVE):
            return time.monotonic() - started
        if time.monotonic() - shown >= report_every:
            shown = time.monotonic()
            log(f"  ... {time.monotonic() - started:6.1f}s {now_states}")
        if time.monotonic() - started > timeout:
            raise AssertionError(f"campaign not final after {timeout}s: {now_states}")
        time.sleep(0.1)


def twin(platform: Platform, path: str) -> Any:
    return httpx.get(f"{platform.twins['appio']}{path}", timeout=60).json()


# -- throughput ------------------------------------------------------------------------------------------

def throughput(recipients_count: int, limit: int, window: float, replicas: int = 1) -> dict[str, float]:
    recipients = seed.citizens(recipients_count)
    needed, minimum = theoretical_minimum(recipients, limit, window)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-appio-") as folder:
        with running(Path(folder) / "limited", limit=limit, window=window) as platform, \
                extra_replicas(platform, Path(folder), replicas - 1):
            time.sleep(window + 3)  # start-up (and the other replicas') is not the campaign's
            started = time.monotonic()
            campaign = create_campaign(platform, recipients, "bench limited")
            wait_final(platform, campaign, timeout=minimum * 3 + 120)
            elapsed = time.monotonic() - started
            stats = twin(platform, "/__admin/stats")["keys"]["cremona/anagrafe#primary"]
        ratio = elapsed / minimum if minimum else float("inf")
        print(f"limit {limit}/{window:g}s, {recipients_count} recipients, {replicas} replica(s): {needed} requests "
              f"needed, {stats['requests']} made; theoretical minimum {minimum:.1f}s, measured {elapsed:.1f}s, "
              f"ratio {ratio:.3f} (target <= 1.05); max in any window at the twin {stats['max_in_window']} "
              f"(limit {limit}), throttled {stats['throttled']}", flush=True)
        results.update(limited_seconds=elapsed, minimum_seconds=minimum, ratio=ratio,
                       max_in_window=stats["max_in_window"], throttled=stats["throttled"])
        with running(Path(folder) / "unlimited", limit=None, window=1,
                     appio_env={"SPORTELLO_APPIO_STATUS_POLL_SECONDS": "0.2", "SPORTELLO_APPIO_CONCURRENCY": "32"},
                     twin_env={"APPIO_TWIN_PROCESSING_SECONDS": "0"}) as platform:
            time.sleep(1.5)
            started = time.monotonic()
            campaign = create_campaign(platform, recipients, "bench unlimited")
            wait_final(platform, campaign, timeout=600)
            elapsed = time.monotonic() - started
        rate = recipients_count / elapsed
        print(f"limits off, {recipients_count} recipients: {elapsed:.1f}s, {rate:.1f} messages/s "
              f"(profile + submission + status each)", flush=True)
        results.update(unlimited_seconds=elapsed, unlimited_messages_per_second=rate)
    return results


# -- resilience ------------------------------------------------------------------------------------------

def settle_in_doubt(platform: Platform, campaign: str, *, log: Callable[[str], None] = print) -> tuple[int, int]:
    """What an operator does with each in-doubt message: IO holds it -> mark sent; else resend (confirmed)."""
    marked = resent = 0
    rows = platform.rows("appio", "SELECT id, recipient_fiscal_code FROM appio_messages "
                                  "WHERE campaign_id = :c AND state = 'in_doubt'", c=campaign)
    with platform.rpc(timeout=60) as cluster:
        for row in rows:
            held = twin(platform, f"/__admin/messages?fiscal_code={row.recipient_fiscal_code}")
            for attempt in range(20):  # IO's status read may meet an injected fault too: ask again
                try:
                    if held:
                        cluster.appio.resolve_in_doubt("cremona", row.id, "mark_sent", "BENCHOPERATOR000",
                                                       io_message_id=held[0]["id"])
                    else:
                        cluster.appio.resolve_in_doubt("cremona", row.id, "resend", "BENCHOPERATOR000",
                                                       confirm=True)
                    break
                except Exception as exc:  # a bench: report and retry
                    if attempt == 19:
                        raise
                    log(f"  resolution retried ({type(exc).__name__})")
                    time.sleep(0.5)
            if held:
                marked += 1
            else:
                resent += 1
    return marked, resent


@dataclass(frozen=True)
class Resilience:
    """The resilience scenario's knobs: the full run's defaults, smaller ones for the test suite's smoke."""

    recipients: int = 5000
    fault_rate: float = 0.2
    limit: int = 150
    window: float = 5.0
    replicas: int = 2  # appio processes sharing the key (and the limiter, in PostgreSQL); one is killed
    http_timeout: float = 2.0
    connect_timeout: float = 1.0
    lease: float = 30.0
    injected_timeout: float = 3.0  # the twin's "timeout" fault: longer than appio's read timeout
    retry_after: float = 1.0  # what the twin's injected 429s ask for (each pauses the whole key)
    backoff: float = 0.5  # appio's first back-off after a 5xx or a timeout
    first: int = 0  # which of seed.citizens() to address (a slice, so runs can differ)


def wrong_citizens(platform: Platform, campaign: str, expected: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Citizens whose count at the twin is not what they should have, with what appio recorded for each."""
    messages = twin(platform, "/__admin/counts")["messages"]
    wrong = {cf: want for cf, want in expected.items() if messages.get(cf, 0) != want}
    rows = {r.recipient_fiscal_code: r for r in platform.rows(
        "appio", "SELECT recipient_fiscal_code, state, outcome_reason, attempts, resolution FROM appio_messages "
                 "WHERE campaign_id = :c", c=campaign)}
    return {cf: {"expected": want, "at_the_twin": messages.get(cf, 0),
                 "state": getattr(rows.get(cf), "state", None), "reason": getattr(rows.get(cf), "outcome_reason", None),
                 "attempts": getattr(rows.get(cf), "attempts", None),
                 "resolution": getattr(rows.get(cf), "resolution", None)} for cf, want in wrong.items()}


def resilience(run: Resilience, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The scenario; returns its figures and `failures` (empty when every assertion held)."""
    recipients = seed.citizens(run.first + run.recipients)[run.first:]
    expected = {cf: 1 if deliverable(cf) else 0 for cf in recipients}
    # a fifth of the answers broken: 429s are the rarest (each pauses the whole key, as IO asks)
    faults = {"rates": {"429": run.fault_rate * 0.15, "500": run.fault_rate * 0.55, "timeout": run.fault_rate * 0.30},
              "retry_after": run.retry_after, "timeout_seconds": run.injected_timeout, "seed": 20261122}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-appio-") as folder, running(
            Path(folder), limit=run.limit, window=run.window,
            appio_env={"SPORTELLO_APPIO_HTTP_TIMEOUT_SECONDS": f"{run.http_timeout:g}",
                       "SPORTELLO_APPIO_CONNECT_TIMEOUT_SECONDS": f"{run.connect_timeout:g}",
                       "SPORTELLO_APPIO_LEASE_SECONDS": f"{run.lease:g}", "SPORTELLO_APPIO_MAX_ATTEMPTS": "12",
                       "SPORTELLO_APPIO_BACKOFF_SECONDS": f"{run.backoff:g}",
                       "SPORTELLO_APPIO_RATE_LIMITER": "shared" if run.replicas > 1 else "auto"}) as platform:
        with extra_replicas(platform, Path(folder), run.replicas - 1) as others:
            replicas = [platform.processes["appio"], *others]
            httpx.post(f"{platform.twins['appio']}/__admin/faults", json=faults, timeout=10).raise_for_status()
            started = time.monotonic()
            campaign = create_campaign(platform, recipients, "bench resilience")

            def half_final() -> bool:
                current = states(platform, campaign)
                return sum(v for k, v in current.items() if k not in ACTIVE) >= run.recipients // 2
            wait_for(half_final, timeout=3600, interval=0.2, what="half the campaign final")
            log(f"  kill -9 of one appio replica at {time.monotonic() - started:.1f}s: {states(platform, campaign)}")
            victim = replicas[-1]
            victim.kill9()
            victim.start()

            def healthy() -> bool:
                try:
                    with platform.rpc(timeout=5) as cluster:
                        return bool(cluster.appio.health()["status"] == "ok")
                except Exception:  # noqa: BLE001
                    return False
            wait_for(healthy, timeout=120, interval=0.5, what="appio back")
            wait_final(platform, campaign, timeout=3600, log=log)
            first_pass = time.monotonic() - started
            after_run = states(platform, campaign)
            log(f"  campaign final after {first_pass:.1f}s: {after_run}")
            # the in-doubt ones are settled as the back office would (ADR 0007): faults stay on, so a
            # resend can meet a lost answer again and be settled again
            marked = resent = rounds = 0
            while states(platform, campaign).get("in_doubt") and rounds < 10:
                rounds += 1
                more_marked, more_resent = settle_in_doubt(platform, campaign, log=log)
                marked, resent = marked + more_marked, resent + more_resent
                wait_final(platform, campaign, timeout=3600, log=log)
            total = time.monotonic() - started
            final = states(platform, campaign)
            counts = twin(platform, "/__admin/counts")
            stats = twin(platform, "/__admin/stats")["keys"]
            wrong = wrong_citizens(platform, campaign, expected)
    deliverable_count = sum(expected.values())
    per_key = {label: (s["max_in_window"], s["throttled"]) for label, s in stats.items()}
    log(f"resilience: {run.recipients} recipients ({deliverable_count} deliverable), {run.replicas} replicas, "
        f"faults {run.fault_rate:.0%} injected {counts['injected']}, one kill -9; in doubt after the run: "
        f"{after_run.get('in_doubt', 0)} (operator, {rounds} round(s): {marked} marked sent, {resent} resent); "
        f"final {final}; {first_pass:.1f}s + settling = {total:.1f}s")
    log(f"  twin: citizens with a wrong count {len(wrong)}; max in any window / throttled per key "
        f"{per_key} (limit {run.limit} per {run.window:g}s)")
    if wrong:
        failures.append(f"{len(wrong)} citizens with a wrong number of messages, e.g. {list(wrong.values())[:5]}")
    if any(m > run.limit or t for m, t in per_key.values()):
        failures.append("the limit was exceeded at the twin")
    if final.get("sent", 0) != deliverable_count:
        failures.append(f"{final.get('sent', 0)} sent for {deliverable_count} deliverable")
    for failure in failures:
        log(f"FAIL: {failure}")
    log("resilience: OK" if not failures else "resilience: FAILED")
    return {"deliverable": deliverable_count, "in_doubt_after_run": after_run.get("in_doubt", 0),
            "marked_sent": marked, "resent": resent, "first_pass_seconds": first_pass, "total_seconds": total,
            "max_in_window": max((m for m, _ in per_key.values()), default=0),
            "throttled": sum(t for _, t in per_key.values()), "injected": counts["injected"], "final": final,
            "wrong": wrong, "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", choices=["throughput", "resilience"])
    parser.add_argument("--recipients", type=int)
    parser.add_argument("--limit", type=int, default=150)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--replicas", type=int, help="appio processes sharing the key (default: throughput 1, "
                                                   "resilience 2)")
    parser.add_argument("--margin", type=float, help="SPORTELLO_APPIO_RATE_MARGIN_SECONDS (default: appio's)")
    args = parser.parse_args()
    if args.margin is not None:
        os.environ["BENCH_APPIO_RATE_MARGIN_SECONDS"] = str(args.margin)
    if args.run == "throughput":
        results = throughput(args.recipients or 600, args.limit, args.window, args.replicas or 1)
        return 0 if results["ratio"] <= 1.05 and results["throttled"] == 0 else 1
    run = Resilience(recipients=args.recipients or 5000, fault_rate=args.fault_rate, limit=args.limit,
                     window=args.window, replicas=args.replicas or 2)
    return 0 if not resilience(run, log=lambda line: print(line, flush=True))["failures"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
