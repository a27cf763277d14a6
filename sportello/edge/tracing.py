"""nameko wiring of tracing: one span per worker, parented by the caller's W3C traceparent.

Why a dependency provider: like the metrics, nameko calls `worker_setup` / `worker_teardown`
around every HTTP request, RPC call and event in the worker's own greenthread, so the span is
active (a context variable) while the method runs, and no route or handler has to remember it.

Propagation: an HTTP request's parent is its `traceparent` header; an RPC call's is the
`traceparent` context data (nameko carries every context-data key as a `nameko.<key>` header);
an event's is the envelope's `traceparent` extension, stamped by `outbox.add_event`. The worker's
own span replaces the context data's `traceparent`, so the RPC calls it makes are its children.
When tracing is off the spans are no-ops and cost next to nothing.
"""

from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.web.handlers import HttpRequestHandler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from sportello import tracing
from sportello.edge.messaging import ReliableEventHandler
from sportello.errors import SportelloError

TRACEPARENT_KEY = "traceparent"  # context-data key; on the wire the header `nameko.traceparent`


class TracingProvider(DependencyProvider):
    """Starts the worker's span (SERVER for HTTP and RPC, CONSUMER for events) and ends it.

    `http_status` maps an escaped error to the HTTP status the caller got (the gateway's table).
    """

    def __init__(self, *, http_status: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http_status = http_status
        self._active: dict[Any, tuple[trace.Span, object]] = {}

    def worker_setup(self, worker_ctx: Any) -> None:
        entrypoint = worker_ctx.entrypoint
        service = self.container.service_name
        method = entrypoint.method_name
        data = worker_ctx.data
        attributes: dict[str, Any] = {"sportello.correlation_id": str(data.get("correlation_id") or "")}
        if data.get("tenant"):
            attributes["sportello.tenant"] = str(data["tenant"])
        parent = data.get(TRACEPARENT_KEY)
        if isinstance(entrypoint, HttpRequestHandler):
            request = worker_ctx.args[0] if worker_ctx.args else None
            parent = request.headers.get("traceparent") if request is not None else None
            verb = getattr(request, "method", None) or entrypoint.method
            name, kind = f"{verb} {entrypoint.url}", SpanKind.SERVER  # the route template, never the path
            attributes.update({"http.request.method": verb, "http.route": entrypoint.url})
        elif isinstance(entrypoint, Rpc):
            name, kind = f"{service}.{method}", SpanKind.SERVER
            attributes.update({"rpc.system": "nameko", "rpc.service": service, "rpc.method": method})
        elif isinstance(entrypoint, ReliableEventHandler):
            envelope = worker_ctx.args[0] if worker_ctx.args else None
            name, kind = f"{entrypoint.queue_name} process", SpanKind.CONSUMER
            attributes.update({"messaging.system": "rabbitmq", "messaging.operation.type": "process",
                               "messaging.destination.name": entrypoint.queue_name})
            if isinstance(envelope, list):  # a batch: its size, not one event's ids
                attributes["messaging.batch.message_count"] = len(envelope)
            elif envelope is not None:
                attributes.update({"messaging.message.id": envelope.id, "cloudevents.event_type": envelope.type,
                                   "cloudevents.event_id": envelope.id})
        else:
            name, kind = f"{service}.{method}", SpanKind.INTERNAL
        span = tracing.tracer().start_span(name, context=tracing.context_from(parent), kind=kind,
                                           attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._active[worker_ctx] = (span, token)
        own = tracing.current_traceparent()
        if own is not None:
            data[TRACEPARENT_KEY] = own
        else:
            data.pop(TRACEPARENT_KEY, None)  # tracing off: pass nothing rather than a stale parent

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        active = self._active.get(worker_ctx)
        if active is None:
            return
        span = active[0]
        error = exc_info[1] if exc_info is not None else None
        if isinstance(worker_ctx.entrypoint, HttpRequestHandler):
            status = self._status(result, error)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        elif error is not None:
            span.set_status(Status(StatusCode.ERROR))
        if error is not None:  # the type or stable code only: messages may carry personal data
            span.set_attribute("error.type", error.code if isinstance(error, SportelloError) else type(error).__name__)

    def worker_teardown(self, worker_ctx: Any) -> None:
        active = self._active.pop(worker_ctx, None)
        if active is None:
            return
        span, token = active
        span.end()
        try:
            otel_context.detach(token)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001, S110 - a context from another greenthread: nothing to restore
            pass

    def _status(self, result: Any, error: BaseException | None) -> int:
        if error is None:
            return int(getattr(result, "status_code", 200))
        if isinstance(error, SportelloError) and self.http_status is not None:
            return int(self.http_status(error))
        return 500
