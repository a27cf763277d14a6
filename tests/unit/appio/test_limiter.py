"""IO's limit counted from when a call leaves: a slow intent commit never lets a window overfill."""

from __future__ import annotations

from services.appio.limiter import SendTimeLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_call_is_counted_from_when_it_was_sent() -> None:
    clock = Clock()
    limiter = SendTimeLimiter(2, 5.0, clock=clock, sleep=clock.sleep)
    first = limiter.admit("k")
    clock.now += 0.3  # the intent commit took 0.3 s
    limiter.sent("k", first)
    limiter.admit("k")
    arrivals = [100.3, 100.0]  # the first left at 100.3; the second at once
    third = limiter.admit("k")
    assert third == 105.3  # not 105.0: a window after the first *left*, so IO never sees 3 in 5 s
    assert third - min(arrivals) >= 5.0 and third - max(arrivals) >= 5.0


def test_sent_never_moves_a_stamp_back_or_touches_other_calls() -> None:
    clock = Clock()
    limiter = SendTimeLimiter(3, 5.0, clock=clock, sleep=clock.sleep)
    tickets = [limiter.admit("k") for _ in range(2)]
    limiter.sent("k", tickets[0])  # sent at once: unchanged
    limiter.sent("other", tickets[0])  # unknown key: nothing happens
    clock.now += 1
    limiter.sent("k", tickets[1])
    assert limiter.in_window("k") == 2
    clock.now += 4.5  # 5.5 s after the first ticket, 4.5 s after the second left
    assert limiter.in_window("k") == 1
