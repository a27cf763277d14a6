"""Rate limits of the national platforms, kept exactly: at most N calls in any window of W seconds.

Why: App IO allows about 150 requests / 5 s per key, GPD 100 calls / 10 s per subscription key.
Going over costs 429s and retry storms; staying far under wastes a campaign's time. A sliding log
per key admits a call only when fewer than N calls started in the last W seconds, so a campaign
runs at the limit and never above it. A 429's Retry-After pauses the whole key.
Plain Python: the clock and the sleep are injected (green under eventlet, fake in tests).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_SLACK = 1e-9


class SlidingWindowLimiter:
    """At most `limit` acquisitions per key in any `window_seconds`; `acquire` waits its turn."""

    def __init__(self, limit: int, window_seconds: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be >= 1 and the window positive")
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._starts: dict[str, deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def _wait_needed(self, key: str, now: float) -> float:
        """Seconds until `key` may start another call (0 = now); records the call when it may."""
        starts = self._starts.setdefault(key, deque())
        # one expression for "this start has left the window", used for the wait below as well, with a
        # nanosecond of slack so float rounding can never make a wait of zero length (or a spin)
        while starts and starts[0] + self.window <= now + _SLACK:
            starts.popleft()
        paused = self._paused_until.get(key, 0.0) - now
        if paused > 0:
            return paused
        if len(starts) < self.limit:
            starts.append(now)
            return 0.0
        return starts[0] + self.window - now

    def acquire(self, key: str = "") -> float:
        """Block until a call for `key` is allowed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                wait = self._wait_needed(key, self._clock())
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait

    def pause(self, key: str, seconds: float) -> None:
        """The platform said 'slow down' (429 + Retry-After): nobody calls with this key until then."""
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)

    def in_window(self, key: str = "") -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for start in self._starts.get(key, ()) if start > now - self.window)


def parse_retry_after(value: str | None, *, default: float = 1.0, maximum: float = 300.0,
                      now: datetime | None = None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), bounded."""
    if not value:
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return default
    return min(max(seconds, 0.0), maximum)
