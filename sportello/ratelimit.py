"""Rate limits of the national platforms, kept exactly: at most N calls in any window of W seconds,
as the platform counts them.

Why: App IO allows about 150 requests / 5 s per key, GPD 100 calls / 10 s per subscription key.
Going over costs 429s and retry storms; staying far under wastes a campaign's time.

The platform counts a call when it *arrives*, somewhere between the moment we decide to send it
and the moment its answer is back; load on either side moves that instant by an unknown amount.
So a call occupies the window from before it leaves until its answer returns (`call()`, or
`begin()` ... `end()`), and a new call is admitted only when fewer than N calls are in flight or
ended less than W ago. Then no W-second window at the platform can ever hold N + 1 arrivals,
whatever the latency (proof in docs/adr/0011): no safety margin to guess, and the cost is one
round trip per window, not a fixed fraction. `acquire()` is a call that begins and ends at once
(the plain sliding log, for callers that only need spacing). A 429's Retry-After pauses the key.
Plain Python: the clock and the sleep are injected (green under eventlet, fake in tests);
`sportello.ratelimit_db` keeps the same log in PostgreSQL for several replicas sharing a key.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

_SLACK = 1e-9


@dataclass(frozen=True)
class Ticket:
    """One admitted call: give it back to `end()` when its answer is in (or it failed)."""

    key: str
    token: int
    waited: float = 0.0


class CallLimiter(Protocol):
    """What an adapter needs from a limiter, local or shared (`sportello.ratelimit_db`)."""

    def begin(self, key: str = "") -> Ticket: ...

    def end(self, ticket: Ticket) -> None: ...

    def pause(self, key: str, seconds: float) -> None: ...


class CallsFromBeginAndEnd:
    """`call()` and `acquire()` for any limiter that has `begin()` and `end()`."""

    def begin(self, key: str = "") -> Ticket:
        raise NotImplementedError

    def end(self, ticket: Ticket) -> None:
        raise NotImplementedError

    @contextmanager
    def call(self, key: str = "") -> Iterator[Ticket]:
        """Counts from before the body runs until it has finished, however it finished."""
        ticket = self.begin(key)
        try:
            yield ticket
        finally:
            self.end(ticket)

    def acquire(self, key: str = "") -> float:
        """Block until a call for `key` is allowed and count it as begun and ended now; returns the wait."""
        ticket = self.begin(key)
        self.end(ticket)
        return ticket.waited


class SlidingWindowLimiter(CallsFromBeginAndEnd):
    """At most `limit` calls per key in any `window_seconds`, a call counting from its admission
    until it ended; in process (one replica per key: SQLite, development, tests)."""

    def __init__(self, limit: int, window_seconds: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be >= 1 and the window positive")
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._ended: dict[str, deque[float]] = {}  # per key, when calls ended (in order: stamped under the lock)
        self._in_flight: dict[str, dict[int, float]] = {}  # per key, token -> admission time
        self._paused_until: dict[str, float] = {}
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()

    def _wait_needed(self, key: str, now: float) -> float:
        """Seconds until `key` may start another call (0 = now)."""
        ended = self._ended.setdefault(key, deque())
        # one expression for "this call has left the window", used for the wait below as well, with a
        # nanosecond of slack so float rounding can never make a wait of zero length (or a spin)
        while ended and ended[0] + self.window <= now + _SLACK:
            ended.popleft()
        paused = self._paused_until.get(key, 0.0) - now
        if paused > 0:
            return paused
        if len(ended) + len(self._in_flight.get(key, ())) < self.limit:
            return 0.0
        # a call still in flight leaves the window at least W after now; an ended one W after it ended
        return ended[0] + self.window - now if ended else self.window

    def _admit(self, key: str) -> tuple[int, float]:
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_needed(key, now)
                if wait <= 0:
                    token = next(self._tokens)
                    self._in_flight.setdefault(key, {})[token] = now
                    return token, waited
            self._sleep(wait)
            waited += wait

    def begin(self, key: str = "") -> Ticket:
        """Block until a call for `key` may start; it counts until `end()`."""
        token, waited = self._admit(key)
        return Ticket(key, token, waited)

    def end(self, ticket: Ticket) -> None:
        """The call's answer is back (or it failed): it counts for one more window from now."""
        with self._lock:
            if self._in_flight.get(ticket.key, {}).pop(ticket.token, None) is not None:
                self._ended.setdefault(ticket.key, deque()).append(self._clock())

    def pause(self, key: str, seconds: float) -> None:
        """The platform said 'slow down' (429 + Retry-After): nobody calls with this key until then."""
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)

    def in_window(self, key: str = "") -> int:
        with self._lock:
            now = self._clock()
            ended = sum(1 for stamp in self._ended.get(key, ()) if stamp > now - self.window)
            return ended + len(self._in_flight.get(key, ()))


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
