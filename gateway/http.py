"""The gateway's HTTP entrypoint: nameko's, with request ids and problem+json for every error.

Its own module so route mixins (gateway/routes/*.py) and the service class both import it
without importing each other.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog
from eventlet.event import Event
from nameko.web.handlers import HttpRequestHandler
from werkzeug.wrappers import Request, Response

from gateway.errors import problem
from sportello.edge.kernel import safe_correlation_id
from sportello.errors import SportelloError

log = structlog.get_logger("gateway")


class ApiRoute(HttpRequestHandler):
    """nameko's HTTP entrypoint with request ids and problem+json for every error."""

    def __init__(self, method: str, url: str, **kwargs: Any) -> None:
        kwargs.setdefault("expected_exceptions", SportelloError)  # logged as warnings, not tracebacks
        super().__init__(method, url, **kwargs)

    def handle_request(self, request: Request) -> Response:
        request.shallow = False
        request_id = safe_correlation_id(request.headers.get("X-Request-ID"))
        try:
            args, kwargs = self.get_entrypoint_parameters(request)
            self.check_signature(args, kwargs)
            event = Event()
            self.container.spawn_worker(self, args, kwargs, context_data={"correlation_id": request_id},
                                        handle_result=partial(self.handle_result, event))
            response = self.response_from_result(event.wait())
        except SportelloError as exc:
            response = problem(exc, request_id=request_id, instance=request.path)
        except Exception as exc:  # noqa: BLE001 - never a stack trace to the caller
            log.error("gateway_unhandled_error", error=type(exc).__name__, path=request.path,
                      correlation_id=request_id)
            response = problem(None, request_id=request_id, instance=request.path)
        response.headers["X-Request-ID"] = request_id
        return response


api = ApiRoute.decorator
