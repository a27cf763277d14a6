"""Switchable faults shared by the PDND and ANPR twins: latency, 429 + Retry-After, 5xx, malformed bodies.

`POST /_faults` with JSON `{"status": 429|500|503, "count": n, "retry_after": s, "latency": s,
"malformed": true}` arms the next n requests; `DELETE /_faults` disarms.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from werkzeug.wrappers import Request, Response


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[str, Any] = {}
        self.latency = 0.0

    def arm(self, spec: dict[str, Any]) -> None:
        with self._lock:
            self.latency = float(spec.get("latency", 0.0))
            self._armed = {k: v for k, v in spec.items() if k != "latency"}
            self._armed.setdefault("count", 1)

    def clear(self) -> None:
        with self._lock:
            self._armed, self.latency = {}, 0.0

    def take(self) -> dict[str, Any] | None:
        """The fault for this request, if one is armed (each consumes one of `count`)."""
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            if not self._armed or int(self._armed.get("count", 0)) <= 0:
                return None
            self._armed["count"] = int(self._armed["count"]) - 1
            return dict(self._armed)

    def control(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear()
        else:
            self.arm(json.loads(request.get_data() or b"{}"))
        return Response(status=204)

    @staticmethod
    def respond(fault: dict[str, Any]) -> Response:
        if fault.get("malformed"):
            return Response(b"{not json", status=int(fault.get("status", 200)), mimetype="application/json")
        status = int(fault.get("status", 503))
        headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
        body = {"type": "about:blank", "status": status, "title": "Injected fault"}
        return Response(json.dumps(body), status=status, mimetype="application/problem+json", headers=headers)
