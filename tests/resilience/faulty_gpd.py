"""The GPD twin with random faults and an arrival log: `python -m tests.resilience.faulty_gpd`.

Why a subclass here: the sandbox twin injects faults one at a time (`/__twin/faults` with a
count), which suits tests of one call; a resilience run needs a *rate* of faults over thousands
of calls, seeded, plus the evidence to judge the client by: when each call arrived (is GPD's
100 / 10 s ever exceeded?), how often the same logical request came back (a retry storm?), and
how many positions each debtor holds (nothing doubled). Controls under `/__resilience/`:

- `POST /__resilience/faults` `{"next": ["lost", "429"], "rate": 0.2, "seed": 1, "weights": {"429": 1,
  "500": 1, "503": 1, "timeout": 1, "lost": 1}, "timeout_seconds": 11, "slow_rate": 0.1, "slow_ms": 500}` —
  `next` forces the kinds of the next calls' faults, then `rate` draws; `timeout` holds the call
  past the client's timeout and does nothing; `lost` does the work and then holds the answer
  past the timeout (the effect happened, the client cannot know); setting faults restarts the
  counts below;
- `GET /__resilience/stats` — arrivals, the most in any window, attempts per logical request,
  injected faults by kind;
- `GET /__resilience/debtors/<org>` — positions held per debtor fiscal code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from typing import Any

from werkzeug.serving import run_simple
from werkzeug.wrappers import Request, Response

from sandbox.gpd import PORT
from sandbox.gpd.app import LIMIT, WINDOW_SECONDS, GpdTwin, _problem

KINDS = ("429", "500", "503", "timeout", "lost")


def max_in_window(arrivals: list[float], window: float) -> int:
    """The most arrivals in any half-open window [t, t + window) (a sliding window over sorted times)."""
    times = sorted(arrivals)
    best = start = 0
    for end, now in enumerate(times):
        while times[start] <= now - window:
            start += 1
        best = max(best, end - start + 1)
    return best


class FaultyGpdTwin(GpdTwin):
    def reset(self) -> None:
        super().reset()
        self.arrivals: dict[str, list[float]] = {}
        self.attempts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.random_faults: dict[str, Any] = {}
        self.rng = random.Random()
        self.local = threading.local()

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/__resilience/"):
            return self._resilience(request)
        self.local.lose_answer = 0.0
        response = super().dispatch(request)
        if self.local.lose_answer:
            time.sleep(self.local.lose_answer)  # done, but the client has given up waiting
        return response

    def _gpd(self, request: Request, endpoint: str, args: dict[str, str]) -> Response:
        key = request.headers.get("Ocp-Apim-Subscription-Key", "")
        digest = hashlib.sha256(request.get_data()).hexdigest()[:16]
        with self.lock:
            self.arrivals.setdefault(hashlib.sha256(key.encode()).hexdigest()[:8], []).append(self.clock())
            self.attempts[f"{request.method} {request.path}?{request.query_string.decode()} {digest}"] += 1
        return super()._gpd(request, endpoint, args)

    def _take_fault(self) -> Response | None:
        counted = super()._take_fault()
        if counted is not None:
            return counted
        with self.lock:
            faults = self.random_faults
            if not faults:
                return None
            slow = self.rng.random() < float(faults.get("slow_rate", 0))
            kind = None
            forced = faults.get("next") or []
            if forced:
                kind = str(forced.pop(0))
                self.injected[kind] += 1
            elif self.rng.random() < float(faults.get("rate", 0)):
                weights = {k: float(v) for k, v in (faults.get("weights") or dict.fromkeys(KINDS, 1)).items()}
                kind = self.rng.choices(list(weights), weights=list(weights.values()))[0]
                self.injected[kind] += 1
            if slow:
                self.injected["slow"] += 1
        if slow:
            time.sleep(float(faults.get("slow_ms", 500)) / 1000)
        hold = float(faults.get("timeout_seconds", 11))
        if kind in ("429",):
            response = _problem(429, "Too Many Requests", "sandbox: injected fault")
            response.headers["Retry-After"] = str(faults.get("retry_after", 1))
            return response
        if kind in ("500", "503"):
            return _problem(int(kind), "Injected fault", "sandbox: injected fault")
        if kind == "timeout":
            time.sleep(hold)
            return _problem(504, "Gateway Timeout", "sandbox: injected timeout")
        if kind == "lost":
            self.local.lose_answer = hold
        return None

    def _resilience(self, request: Request) -> Response:
        path = request.path.removeprefix("/__resilience/")
        if path == "faults" and request.method == "POST":
            body = json.loads(request.get_data() or b"{}")
            with self.lock:
                self.random_faults = dict(body)
                self.rng = random.Random(body.get("seed"))
                self.arrivals, self.attempts, self.injected = {}, Counter(), Counter()
                self.statuses = Counter()
            return self._json({"faults": self.random_faults})
        if path == "stats":
            with self.lock:
                per_key = {k: {"arrivals": len(v), "max_in_window": max_in_window(v, self.window)}
                           for k, v in self.arrivals.items()}
                attempts = list(self.attempts.values())
                return self._json({"limit": self.limit, "window_seconds": self.window, "keys": per_key,
                                   "calls": sum(attempts), "distinct_requests": len(attempts),
                                   "max_attempts": max(attempts, default=0),
                                   "attempts_histogram": dict(Counter(attempts)),
                                   "injected": dict(self.injected), "statuses": dict(self.statuses)})
        if path.startswith("debtors/"):
            org = path.removeprefix("debtors/")
            with self.lock:
                held = Counter(str(p.get("fiscalCode")) for p in self.positions.get(org, {}).values())
            return self._json(dict(held))
        return _problem(404, "Not Found", "no such control")


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = int(os.environ.get("SANDBOX_GPD_PORT", PORT))
    limit = int(os.environ.get("RESILIENCE_GPD_LIMIT", LIMIT))
    keys = [k for k in os.environ.get("SANDBOX_GPD_KEYS", "").split(",") if k]
    window = float(os.environ.get("RESILIENCE_GPD_WINDOW_SECONDS", WINDOW_SECONDS))
    twin = FaultyGpdTwin(keys=keys or None, limit=limit, window_seconds=window)
    if os.environ.get("RESILIENCE_GPD_FAULTS"):
        twin.random_faults = json.loads(os.environ["RESILIENCE_GPD_FAULTS"])
        twin.rng = random.Random(twin.random_faults.get("seed"))
    run_simple("127.0.0.1", port, twin, threaded=True)


if __name__ == "__main__":
    main()
