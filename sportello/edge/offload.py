"""CPU-bound work off the eventlet hub.

Why: a service process runs every worker as a greenthread on one hub, and a greenthread only
yields on I/O; seconds of pure CPU in one worker (500 payment notices in one PDF) stall every
other one for as long: RPC replies, event acks, timers, the outbox relay. `make bench-city` saw the
gateway's campaign-progress reads time out while pagopa rendered a page of notices. eventlet's
tpool runs the call in a real OS thread; the interpreter hands the GIL back every few
milliseconds, so the hub keeps serving while it runs (ADR 0017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from eventlet import tpool

P = ParamSpec("P")
R = TypeVar("R")


def off_the_hub(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`function(*args, **kwargs)` in tpool's OS threads; the calling greenthread waits, the others run."""
    return tpool.execute(function, *args, **kwargs)  # type: ignore[no-any-return]
