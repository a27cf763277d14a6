"""The sliding-window limiter keeps a platform's limit exactly, measured on a fake clock.

Calls with latency: the platform sees each call arrive at an unknown instant between its admission
and its answer; whatever those instants, no window at the platform holds more than the limit.
"""

from __future__ import annotations

import heapq
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sportello.ratelimit import SlidingWindowLimiter, Ticket, parse_retry_after


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _limiter(limit: int, window: float) -> tuple[SlidingWindowLimiter, FakeClock]:
    clock = FakeClock()
    return SlidingWindowLimiter(limit, window, clock=clock, sleep=clock.sleep), clock


def test_runs_at_the_limit_never_above_it() -> None:
    limiter, clock = _limiter(150, 5.0)
    starts = []
    for _ in range(600):
        limiter.acquire("io-key")
        starts.append(clock.now)
    # any 5-second window holds at most 150 starts...
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < start + 5.0) <= 150
    # ...and 600 calls take exactly the minimum the limit allows: 3 full windows
    assert starts[-1] - starts[0] == pytest.approx(15.0)


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 20), window=st.floats(0.5, 20), gaps=st.lists(st.floats(0, 3), min_size=1, max_size=80))
def test_no_window_ever_holds_more_than_the_limit(limit: int, window: float, gaps: list[float]) -> None:
    limiter, clock = _limiter(limit, window)
    starts = []
    for gap in gaps:
        clock.now += gap
        limiter.acquire()
        starts.append(clock.now)
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < start + window - 1e-9) <= limit


def test_keys_are_independent_and_pause_honours_retry_after() -> None:
    limiter, _clock = _limiter(2, 10.0)
    assert limiter.acquire("a") == 0 and limiter.acquire("a") == 0
    assert limiter.acquire("b") == 0
    assert limiter.in_window("a") == 2
    limiter.pause("b", 30)
    assert limiter.acquire("b") == pytest.approx(30)
    assert limiter.acquire("a") == 0  # the 30 s pause of b let a's window slide


class Simulation:
    """Calls overlapping in time on a fake clock: a call's answer comes back `latency` after its
    admission, and its end is recorded at that instant even while another caller sleeps."""

    def __init__(self, limit: int, window: float) -> None:
        self.now = 1000.0
        self.pending: list[tuple[float, int, Ticket]] = []  # (answer time, tie-break, ticket)
        self.limiter = SlidingWindowLimiter(limit, window, clock=lambda: self.now, sleep=self.sleep)
        self.calls: list[tuple[float, float]] = []  # (admitted, answered)

    def advance(self, until: float) -> None:
        while self.pending and self.pending[0][0] <= until:
            answered, _, ticket = heapq.heappop(self.pending)
            self.now = max(self.now, answered)
            self.limiter.end(ticket)
        self.now = max(self.now, until)

    def sleep(self, seconds: float) -> None:
        self.advance(self.now + seconds)

    def call(self, latency: float) -> None:
        ticket = self.limiter.begin("k")
        admitted = self.now
        heapq.heappush(self.pending, (admitted + latency, ticket.token, ticket))
        self.calls.append((admitted, admitted + latency))


def _most_in_a_window(arrivals: list[float], window: float) -> int:
    arrivals = sorted(arrivals)
    return max((sum(1 for a in arrivals[i:] if a < start + window) for i, start in enumerate(arrivals)), default=0)


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 12), window=st.floats(0.5, 10), seed=st.integers(0, 2**32),
       calls=st.lists(st.tuples(st.floats(0, 2), st.floats(0, 4)), min_size=1, max_size=60))
def test_whatever_the_latency_the_platform_never_sees_more_than_the_limit(
        limit: int, window: float, seed: int, calls: list[tuple[float, float]]) -> None:
    sim = Simulation(limit, window)
    for gap, latency in calls:
        sim.advance(sim.now + gap)
        sim.call(latency)
    sim.advance(float("inf"))
    draw = random.Random(seed)
    for place in (0.0, 1.0, None):  # arrival at admission, at the answer, anywhere in between
        arrivals = [a + (e - a) * (draw.random() if place is None else place) for a, e in sim.calls]
        assert _most_in_a_window(arrivals, window) <= limit


def test_at_the_limit_a_window_costs_one_round_trip_not_a_margin() -> None:
    """600 calls of 50 ms at 150 / 5 s: four bursts, each a window plus one answer after the last."""
    sim = Simulation(150, 5.0)
    for _ in range(600):
        sim.call(0.05)
    assert sim.calls[-1][0] - sim.calls[0][0] == pytest.approx(3 * 5.05)


def test_a_call_in_flight_holds_its_slot_until_it_ends() -> None:
    limiter, clock = _limiter(2, 5.0)
    first = limiter.begin("k")
    limiter.acquire("k")
    clock.now += 30  # the first call is still waiting for its answer
    assert limiter.in_window("k") == 1
    second = limiter.begin("k")  # one slot was free
    assert second.waited == 0 and limiter.in_window("k") == 2
    limiter.end(first)
    limiter.end(first)  # twice: harmless
    with limiter.call("k") as third:
        assert third.waited == pytest.approx(5.0)  # a window after the first call's answer
    assert limiter.in_window("k") == 2


def test_bad_configuration() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 1)


@pytest.mark.parametrize("header, expected", [
    (None, 1.0), ("", 1.0), ("7", 7.0), (" 2.5 ", 2.5), ("-3", 0.0), ("99999", 300.0), ("soon", 1.0), ("nan", 1.0),
    ("Sat, 21 Nov 2026 23:00:30 GMT", 30.0),
])
def test_retry_after(header: str | None, expected: float) -> None:
    now = datetime(2026, 11, 21, 23, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == pytest.approx(expected)
