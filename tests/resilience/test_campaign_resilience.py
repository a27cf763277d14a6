"""Resilience of a pagoPA + App IO campaign: crashes and restarts, then a fifth of the twins' answers broken.

Issue 8, scenarios 1 and 2. One platform (every service, the gateway, every twin; `conftest.py`) on
a private RabbitMQ node and a private PostgreSQL cluster; two campaigns to disjoint citizens:

1. while the first runs: `kill -9` of pagopa, of appio and of the gateway (each restarted), a
   restart of RabbitMQ and one of PostgreSQL;
2. while the second runs: the GPD twin and the IO twin answer 20% of calls with 429 (+ Retry-After),
   5xx or a timeout (GPD also "lost" answers: done, but the reply never comes) and some slowly.

Each ends with exact counts at the twins (every valid row one position at GPD, every deliverable
citizen one IO message, the others none), and the second also with the limits as the twins saw
them (no window over the limit) and the retries bounded. The default suite runs one smoke of both
at once (40 citizens: appio killed and PostgreSQL restarted while the twins break a fifth of their
answers); `make resilience` (RESILIENCE_FULL=1) runs both in full: the crashes at
`RESILIENCE_RECIPIENTS` (10,000), the broken twins at `RESILIENCE_FAULTS_RECIPIENTS` (2,000) with
appio at IO's real limit (150 / 5 s), so the twin's arrival windows judge its limiter.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sandbox.appio import seed
from tests.resilience.campaign import (
    FAULTS_SIZE,
    FULL,
    IO_LIMIT,
    SIZE,
    Campaign,
    bad_row_numbers,
    kill9_and_restart,
    wait_service,
)
from tests.resilience.servers import PrivatePostgres, PrivateRabbitMQ
from tests.support.platform import Platform

pytestmark = pytest.mark.resilience
REAL_IO_LIMIT = "150/5"  # App IO: about 150 requests / 5 s per key
FAULT_RATE = float(os.environ.get("RESILIENCE_FAULT_RATE", "0.2"))
GPD_TIMEOUT_SECONDS = 10  # HttpGpd's read timeout: a held call outlasts it


def crash_schedule(campaign: Campaign, rabbit: PrivateRabbitMQ, postgres: PrivatePostgres,
                   names: tuple[str, ...]) -> list[tuple[str, Callable[[], bool], Callable[[], None]]]:
    """The faults of scenario 1, each when the campaign has got so far (positions at GPD, messages at IO)."""
    platform = campaign.platform
    io_before = campaign.io_messages()
    deliverable = len(campaign.deliverable)

    def gpd_at(fraction: float) -> bool:
        return campaign.gpd_positions() >= fraction * len(campaign.codes)

    def io_at(fraction: float) -> bool:
        return campaign.io_messages() - io_before >= fraction * deliverable

    def restart_rabbitmq() -> None:
        rabbit.restart()
        for name in ("pagopa", "appio", "spid", "gateway"):
            wait_service(platform, name)

    every = [
        ("kill -9 pagopa", lambda: gpd_at(0.2), kill9_and_restart(platform, "pagopa")),
        ("restart RabbitMQ", lambda: gpd_at(0.5) or io_at(0.05), restart_rabbitmq),
        ("kill -9 appio", lambda: io_at(0.2), kill9_and_restart(platform, "appio")),
        ("kill -9 gateway", lambda: io_at(0.35), kill9_and_restart(platform, "gateway")),
        ("restart PostgreSQL", lambda: io_at(0.5), lambda: postgres.restart()),
    ]
    return [fault for fault in every if fault[0] in names]


def upload(campaign: Campaign) -> None:
    size = len(campaign.codes)
    view = campaign.upload()
    assert view["valid_rows"] == size and view["total_rows"] == size + 3, view
    assert sorted(e["row"] for e in view["errors"]) == bad_row_numbers(size), view["errors"]


def set_twin_faults(platform: Platform, *, gpd: dict[str, Any], io: dict[str, Any]) -> None:
    httpx.post(f"{platform.twins['gpd']}/__resilience/faults", json=gpd, timeout=10).raise_for_status()
    httpx.post(f"{platform.twins['appio']}/__admin/faults", json=io, timeout=10).raise_for_status()


def gpd_faults(kinds: tuple[str, ...]) -> dict[str, Any]:
    """The first GPD calls meet each kind for sure (a smoke makes few calls), then FAULT_RATE at random."""
    return {"next": list(kinds), "rate": FAULT_RATE, "seed": 20261122, "timeout_seconds": GPD_TIMEOUT_SECONDS + 1,
            "retry_after": 1, "weights": dict.fromkeys(kinds, 1), "slow_rate": 0.1, "slow_ms": 800}


# IO: a 429 pauses the whole key (as IO asks), so it is the rarest; timeouts outlast appio's 2 s
IO_FAULTS = {"rates": {"429": FAULT_RATE * 0.15, "500": FAULT_RATE * 0.55, "timeout": FAULT_RATE * 0.30},
             "retry_after": 1, "timeout_seconds": 3, "latency_ms": 50, "seed": 20261122}


def check_limits_and_retries(campaign: Campaign, gpd_stats: dict[str, Any], io_before: dict[str, Any],
                             forced: int, io_limit: int) -> str:
    """The limits as the twins counted arrivals (every call, refused or not), and no retry storm."""
    platform, codes = campaign.platform, campaign.codes
    io_stats = campaign.io("/__admin/stats")
    for label, stats in io_stats["keys"].items():
        assert stats["max_in_window"] <= io_limit and stats["throttled"] == 0, (label, stats)
    for stats in gpd_stats["keys"].values():
        assert stats["max_in_window"] <= gpd_stats["limit"], gpd_stats
    assert gpd_stats["statuses"].get("429", 0) == gpd_stats["injected"].get("429", 0), "GPD refused a call (429)"
    # each logical request tried a bounded number of times, and few retries overall
    assert gpd_stats["max_attempts"] <= 10, gpd_stats["attempts_histogram"]
    assert gpd_stats["calls"] <= 2.0 * gpd_stats["distinct_requests"] + forced, gpd_stats
    attempts = platform.rows("appio", "SELECT max(attempts) AS most FROM appio_messages WHERE campaign_id = :c",
                             c=campaign.campaign_id)[0].most
    assert attempts <= 12, attempts  # SPORTELLO_APPIO_MAX_ATTEMPTS
    logical = len(codes) + 2 * len(campaign.deliverable)  # profile + submission + one status read
    io_requests = sum(s["requests"] - io_before.get(k, {}).get("requests", 0) for k, s in io_stats["keys"].items())
    assert io_requests <= 2.0 * logical, (io_requests, logical)
    return (f"GPD calls {gpd_stats['calls']} for {gpd_stats['distinct_requests']} requests (attempts histogram "
            f"{gpd_stats['attempts_histogram']}), GPD injected {gpd_stats['injected']}, most in a GPD window "
            f"{[s['max_in_window'] for s in gpd_stats['keys'].values()]}/{gpd_stats['limit']}; IO requests "
            f"{io_requests} for {logical} logical (most attempts of one message {attempts}), most in an IO window "
            f"{[s['max_in_window'] for s in io_stats['keys'].values()]}/{io_limit}, IO injected (whole run) "
            f"{campaign.io('/__admin/counts')['injected']}")


def run_with_faults(platform: Platform, codes: list[str], *, gpd_kinds: tuple[str, ...], io_limit: str = IO_LIMIT,
                    crashes: list[tuple[str, Callable[[], bool], Callable[[], None]]] | None = None,
                    campaign: Campaign | None = None) -> tuple[Campaign, float, str]:
    campaign = campaign or Campaign(platform, codes)
    io_before = campaign.io("/__admin/stats")["keys"]
    set_twin_faults(platform, gpd=gpd_faults(gpd_kinds), io=IO_FAULTS)
    try:
        upload(campaign)
        elapsed = campaign.run_until_final(timeout=900 + len(codes), during=crashes)
        campaign.note(f"final after {elapsed:.1f}s: {campaign.states()}")
        gpd_stats = campaign.gpd("/__resilience/stats")
    finally:
        set_twin_faults(platform, gpd={}, io={})
    campaign.settle_in_doubt()
    summary = campaign.assert_exactly_once()
    limits = check_limits_and_retries(campaign, gpd_stats, io_before, len(gpd_kinds), int(io_limit.split("/")[0]))
    return campaign, elapsed, f"{limits}; {summary}"


if not FULL:
    def test_smoke_campaign_with_kill9_database_restart_and_broken_twin_answers(
            platform: Platform, servers: tuple[PrivateRabbitMQ, PrivatePostgres]) -> None:
        """The default suite's smoke of both scenarios at once: appio killed and PostgreSQL restarted
        mid-delivery while the twins break a fifth of their answers (GPD: the quick kinds)."""
        rabbit, postgres = servers
        campaign = Campaign(platform, seed.citizens(SIZE))
        crashes = crash_schedule(campaign, rabbit, postgres, ("kill -9 appio", "restart PostgreSQL"))
        _, elapsed, summary = run_with_faults(platform, campaign.codes, gpd_kinds=("503", "429", "500"),
                                              crashes=crashes, campaign=campaign)
        assert postgres.restarts == 1
        print(f"RESULT smoke: {SIZE} recipients, {elapsed:.1f}s to final; {summary}", flush=True)

else:
    def test_campaign_survives_kill9_of_each_service_and_restarts_of_broker_and_database(
            platform: Platform, servers: tuple[PrivateRabbitMQ, PrivatePostgres]) -> None:
        rabbit, postgres = servers
        campaign = Campaign(platform, seed.citizens(SIZE))
        crashes = crash_schedule(campaign, rabbit, postgres, ("kill -9 pagopa", "restart RabbitMQ", "kill -9 appio",
                                                               "kill -9 gateway", "restart PostgreSQL"))
        upload(campaign)
        elapsed = campaign.run_until_final(timeout=1200 + SIZE * 0.5, during=crashes)
        campaign.note(f"final after {elapsed:.1f}s: {campaign.states()}")
        campaign.settle_in_doubt()
        summary = campaign.assert_exactly_once()
        assert rabbit.restarts == 1 and postgres.restarts == 1
        # a restarted pagopa's limiter starts empty (it cannot know what the killed one sent in the
        # last window): it resumes campaigns only after one GPD window, so GPD never sees more than 100
        gpd = campaign.gpd("/__resilience/stats")
        assert all(k["max_in_window"] <= gpd["limit"] for k in gpd["keys"].values()), gpd["keys"]
        assert gpd["statuses"].get("429", 0) == 0, gpd["statuses"]
        io = campaign.io("/__admin/stats")["keys"]
        print(f"RESULT crashes: {SIZE} recipients, {elapsed:.1f}s to final; most in a GPD window "
              f"{[k['max_in_window'] for k in gpd['keys'].values()]}/{gpd['limit']}, GPD 429s "
              f"{gpd['statuses'].get('429', 0)}, GPD calls {gpd['calls']}; most in an IO window "
              f"{[k['max_in_window'] for k in io.values()]}; {summary}", flush=True)

    def test_campaign_completes_with_a_fifth_of_the_twins_answers_broken_within_the_limits(
            platform: Platform) -> None:
        codes = seed.citizens(SIZE + FAULTS_SIZE)[SIZE:]  # citizens the first campaign did not touch
        # the crash run was bound by the platform's own pace; this one runs at IO's real limit, so the
        # twin's arrival windows judge appio's limiter (the twin's own counters start afresh)
        count, window = REAL_IO_LIMIT.split("/")
        appio = platform.processes["appio"]
        appio.env.update(SPORTELLO_APPIO_RATE_LIMIT=count, SPORTELLO_APPIO_RATE_WINDOW_SECONDS=window)
        appio.stop()
        appio.start()
        wait_service(platform, "appio")
        httpx.post(f"{platform.twins['appio']}/__admin/reset", timeout=10).raise_for_status()
        _, elapsed, summary = run_with_faults(platform, codes, gpd_kinds=("429", "500", "503", "timeout", "lost"),
                                              io_limit=REAL_IO_LIMIT)
        print(f"RESULT faults: {len(codes)} recipients, {elapsed:.1f}s to final; {summary}", flush=True)
