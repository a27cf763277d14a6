"""One replica of a platform client for test_shared_ratelimit.py: calls the IO twin as fast as its
limiter lets it, from several threads, and prints what it did as JSON.

    python -m tests.integration.limiter_worker <shared|local> <database url> <twin url> <calls> <limit> <window>
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

import httpx

from sandbox.appio import seed
from sportello.db import make_engine
from sportello.ratelimit import CallLimiter, SlidingWindowLimiter
from sportello.ratelimit_db import PostgresWindowLimiter

THREADS = 6
KEY = "test-shared-limiter-key"


def main() -> int:
    mode, url, twin, calls, limit, window = sys.argv[1:7]
    engine = make_engine(url)
    limiter: CallLimiter = (PostgresWindowLimiter(engine, int(limit), float(window), max_call_seconds=10)
                            if mode == "shared" else SlidingWindowLimiter(int(limit), float(window)))
    remaining = [int(calls)]
    statuses: Counter[int] = Counter()
    guard = threading.Lock()

    def run(client: httpx.Client) -> None:
        while True:
            with guard:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            ticket = limiter.begin("io/anagrafe#primary")
            try:
                reply = client.post(f"{twin}/api/v1/profiles", json={"fiscal_code": seed.ON_IO[0]},
                                    headers={"Ocp-Apim-Subscription-Key": KEY})
            finally:
                limiter.end(ticket)
            with guard:
                statuses[reply.status_code] += 1

    started = time.monotonic()
    with httpx.Client(timeout=10) as client:
        threads = [threading.Thread(target=run, args=(client,)) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(json.dumps({"statuses": dict(statuses), "seconds": time.monotonic() - started}), flush=True)
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
