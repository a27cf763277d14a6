"""The sliding-window limiter keeps a platform's limit exactly, measured on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sportello.ratelimit import SlidingWindowLimiter, parse_retry_after


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
