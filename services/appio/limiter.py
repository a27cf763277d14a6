"""IO's limit counted from when a call leaves, not from when it was admitted.

Why: between the limiter's admission and the bytes leaving there can be a database commit (the
intent of a submission, ADR 0007) and, under eventlet, any blocking database call of another
greenlet. IO counts arrivals; a call admitted at t but sent at t + 0.3 s lets the next window's
first call arrive less than a window after it. `sent()` moves the call's entry to the moment it
really leaves, so the sliding log matches what IO sees (the window margin then only covers the
network and IO's own ingress jitter).
"""

from __future__ import annotations

import bisect

from sportello.ratelimit import SlidingWindowLimiter


class SendTimeLimiter(SlidingWindowLimiter):
    """The kernel's sliding log, plus `admit()` -> ticket and `sent(key, ticket)` re-stamping."""

    def admit(self, key: str = "") -> float:
        """Like `acquire`; returns the timestamp recorded for this call (its ticket)."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_needed(key, now)
                if wait <= 0:
                    return now
            self._sleep(wait)

    def sent(self, key: str, ticket: float) -> None:
        """The call admitted with `ticket` leaves now: count it from now (never earlier)."""
        with self._lock:
            starts = self._starts.get(key)
            now = self._clock()
            if not starts or now <= ticket:
                return
            for index in range(len(starts) - 1, -1, -1):
                if starts[index] == ticket:
                    del starts[index]
                    break
            else:
                return  # already out of the window: nothing left to move
            items = list(starts)
            bisect.insort(items, now)
            starts.clear()
            starts.extend(items)
