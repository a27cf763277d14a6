"""OpenTelemetry tracing of a Sportello process, and W3C `traceparent` in and out of the kernel.

Why: one citizen request crosses the gateway, an RPC and one or more events; a trace that follows
it shows where the time went and where it failed. The nameko wiring (one span per worker) lives in
`sportello.edge.tracing`; here are the exporter setting, a JSON-lines file exporter and the two
helpers the kernel needs: the current `traceparent` (stamped on outbox events) and its parsing.

`SPORTELLO_TRACES_EXPORTER`: `none` (default: no spans are recorded), `console` (spans on stdout),
`file:<path>` (JSON lines, one span per line) or `otlp` (OTLP/HTTP to the collector named by the
standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables).
Span attributes carry ids, routes and event types only, never personal data.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sportello.errors import ConfigurationError
from sportello.events import TRACEPARENT

TRACES_EXPORTER_ENV = "SPORTELLO_TRACES_EXPORTER"
_propagator = TraceContextTextMapPropagator()


def valid_traceparent(value: Any) -> str | None:
    """`value` if it is a W3C traceparent (version 00) naming a real trace, else None."""
    return value if isinstance(value, str) and TRACEPARENT.match(value) else None


def current_traceparent() -> str | None:
    """The traceparent of the span active in this worker, or None (no span, tracing off)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return valid_traceparent(carrier.get("traceparent"))


def context_from(traceparent: Any) -> otel_context.Context:
    """An OpenTelemetry context whose parent is `traceparent` (an empty one if it is not valid)."""
    value = valid_traceparent(traceparent)
    return _propagator.extract({"traceparent": value}) if value else otel_context.Context()


def tracer() -> trace.Tracer:
    return trace.get_tracer("sportello")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as a flat JSON-ready dict (hex ids, as a collector shows them)."""
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "kind": span.kind.name,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "service": (span.resource.attributes.get("service.name") if span.resource else None),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to a file as one JSON line (for offline runs and the tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span), separators=(",", ":"), default=str) + "\n" for span in spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            try:
                self._file.write(lines)
                self._file.flush()
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def exporter_setting(environ: dict[str, str] | None = None) -> tuple[str, str | None]:
    """(`none`|`console`|`file`|`otlp`, file path) from SPORTELLO_TRACES_EXPORTER; typed error otherwise."""
    value = (os.environ if environ is None else environ).get(TRACES_EXPORTER_ENV, "").strip()
    if value in ("", "none"):
        return "none", None
    if value in ("console", "otlp"):
        return value, None
    if value.startswith("file:") and value[5:].strip():
        return "file", value[5:].strip()
    raise ConfigurationError(
        f"invalid settings: {TRACES_EXPORTER_ENV}: {value!r} is not none, console, file:<path> or otlp")


def make_exporter(kind: str, path: str | None) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter(out=sys.stdout, formatter=lambda span: json.dumps(
            span_record(span), separators=(",", ":"), default=str) + "\n")
    if kind == "file":
        assert path is not None
        return JsonLinesSpanExporter(path)
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ConfigurationError(f"invalid settings: {TRACES_EXPORTER_ENV}: unknown exporter {kind!r}")


def configure_tracing(component: str, version: str, environ: dict[str, str] | None = None) -> TracerProvider | None:
    """Install this process's tracer provider; None when tracing is off (spans are then no-ops).

    Local exporters (console, file) write each span as it ends, so nothing is lost when a process
    is killed; OTLP batches in the background, as a collector expects.
    """
    kind, path = exporter_setting(environ)
    if kind == "none":
        return None
    provider = TracerProvider(resource=Resource.create({
        "service.name": f"sportello-{component}", "service.namespace": "sportello", "service.version": version}))
    exporter = make_exporter(kind, path)
    provider.add_span_processor(BatchSpanProcessor(exporter) if kind == "otlp" else SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
