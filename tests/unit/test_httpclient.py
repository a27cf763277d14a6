"""Every call through a metered client is counted by platform, operation and outcome."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from sportello.httpclient import OPERATION, metered_client


def _count(platform: str, operation: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("sportello_platform_calls_total",
                                      {"platform": platform, "operation": operation, "outcome": outcome})
    return value or 0.0


def _handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/slow":
        raise httpx.ReadTimeout("slow", request=request)
    if request.url.path == "/down":
        raise httpx.ConnectError("refused", request=request)
    return httpx.Response(int(request.url.path.strip("/").split("/")[0] or 200))


@pytest.mark.parametrize("path, outcome", [
    ("/200", "ok"), ("/404", "client_error"), ("/429", "rate_limited"), ("/503", "server_error"),
    ("/slow", "timeout"), ("/down", "unreachable"),
])
def test_outcomes_are_counted(path: str, outcome: str) -> None:
    client = metered_client("testplatform", transport=httpx.MockTransport(_handler))
    before = _count("testplatform", "get", outcome)
    try:
        client.get(f"http://twin.invalid{path}")
    except httpx.TransportError:
        assert outcome in ("timeout", "unreachable")
    assert _count("testplatform", "get", outcome) == before + 1


def test_operation_label_comes_from_the_request_not_the_url() -> None:
    client = metered_client("testplatform", transport=httpx.MockTransport(_handler))
    before = _count("testplatform", "submit_message", "ok")
    client.post("http://twin.invalid/200/RSSMRA85T10A562S", extensions={OPERATION: "submit_message"})
    assert _count("testplatform", "submit_message", "ok") == before + 1
    labels = {s.labels.get("operation") for m in REGISTRY.collect() for s in m.samples
              if s.name == "sportello_platform_calls_total"}
    assert not any("RSSMRA" in (label or "") for label in labels)
