"""HTTP clients for the national platforms, every call counted by platform and outcome.

Why: the adapters differ in what they send, not in how a call is observed. A transport wrapper
times each request and records it with `sportello.metrics` (outcome from the status, or
timeout / unreachable when the request never got an answer), so no adapter can forget it.
Labels are the platform and an operation name — never a URL, which may hold a fiscal code.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from sportello.metrics import outcome_of_status, record_platform_call

OPERATION = "operation"  # per-request extension: httpx.Request(..., extensions={"operation": "submit_message"})


class MeteredTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, platform: str) -> None:
        self._inner = inner
        self._platform = platform

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        operation = str(request.extensions.get(OPERATION) or request.method.lower())
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
        except httpx.TimeoutException:
            record_platform_call(self._platform, operation, "timeout", time.perf_counter() - started)
            raise
        except httpx.TransportError:
            record_platform_call(self._platform, operation, "unreachable", time.perf_counter() - started)
            raise
        record_platform_call(self._platform, operation, outcome_of_status(response.status_code),
                             time.perf_counter() - started)
        return response

    def close(self) -> None:
        self._inner.close()


def metered_client(platform: str, *, transport: httpx.BaseTransport | None = None, **kwargs: Any) -> httpx.Client:
    """An httpx.Client whose every call is counted as a call to `platform` (gpd, appio, pdnd, ...)."""
    return httpx.Client(transport=MeteredTransport(transport or httpx.HTTPTransport(), platform), **kwargs)
