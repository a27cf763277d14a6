"""One HTTP exchange with retries: 429 (honouring Retry-After) and 5xx/transport errors, with back-off.

Why: PDND and ANPR both throttle and both have bad minutes; a caller should see a typed error only
after a few bounded attempts, and never wait longer than the caller's own deadline allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from services.anpr.domain.errors import AnprUnavailable, UpstreamRateLimited
from sportello.ratelimit import parse_retry_after

RETRYABLE = frozenset({429, 500, 502, 503, 504})


def send(client: httpx.Client, make: Callable[[], httpx.Request], *, attempts: int = 3, base_delay: float = 0.2,
         max_wait: float = 5.0, sleep: Callable[[float], None] = time.sleep, what: str = "ANPR") -> httpx.Response:
    """Send `make()` (rebuilt each attempt: fresh signatures) until it is not a retryable answer."""
    last: httpx.Response | None = None
    for attempt in range(1, attempts + 1):
        try:
            response = client.send(make())
        except httpx.HTTPError as exc:
            if attempt == attempts:
                raise AnprUnavailable(f"{what} did not answer ({type(exc).__name__})") from None
            sleep(base_delay * 2 ** (attempt - 1))
            continue
        if response.status_code not in RETRYABLE:
            return response
        last = response
        if attempt == attempts:
            break
        if response.status_code == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"), default=base_delay, maximum=max_wait)
        else:
            wait = base_delay * 2 ** (attempt - 1)
        sleep(min(wait, max_wait))
    assert last is not None
    if last.status_code == 429:
        raise UpstreamRateLimited(f"{what} answered 429 after {attempts} attempts; retry later")
    raise AnprUnavailable(f"{what} answered {last.status_code} after {attempts} attempts")
