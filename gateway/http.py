"""The gateway's HTTP entrypoint: nameko's, with request ids and problem+json for every error.

Its own module so route mixins (gateway/routes/*.py) and the service class both import it
without importing each other.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import structlog
from eventlet.event import Event
from nameko.web.handlers import HttpRequestHandler
from werkzeug.wrappers import Request, Response

from gateway.errors import problem
from sportello.edge.kernel import safe_correlation_id
from sportello.errors import SportelloError, ValidationFailed

log = structlog.get_logger("gateway")


class ApiRoute(HttpRequestHandler):
    """nameko's HTTP entrypoint with request ids and problem+json for every error."""

    def __init__(self, method: str, url: str, **kwargs: Any) -> None:
        kwargs.setdefault("expected_exceptions", SportelloError)  # logged as warnings, not tracebacks
        super().__init__(method, url, **kwargs)

    def check_signature(self, args: Any, kwargs: Any) -> None:
        """nameko's check (inspect.getcallargs) cost a tenth of a cached citizen read (py-spy, ADR 0012);
        a route's URL rule hands every request the same argument names, so each shape is checked once."""
        shape = (len(args), frozenset(kwargs))
        checked: set[Any] = self.__dict__.setdefault("_checked_shapes", set())
        if shape not in checked:
            super().check_signature(args, kwargs)
            checked.add(shape)

    def handle_request(self, request: Request) -> Response:
        request.shallow = False
        request_id = safe_correlation_id(request.headers.get("X-Request-ID"))
        try:
            if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
                raise ValidationFailed("the path and query must not contain the NUL character (%00)")
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


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers or {})


def json_object(request: Request, *, limit: int, allowed: tuple[str, ...] | None = None,
                empty_ok: bool = False) -> dict[str, Any]:
    """The request's JSON object body, or a typed 400 saying exactly what is wrong with it."""
    if (request.content_length or 0) > limit:
        raise ValidationFailed("request body too large")
    raw = request.get_data(as_text=True)
    if not raw and empty_ok:
        return {}
    if request.mimetype != "application/json":
        raise ValidationFailed("send application/json")
    try:
        payload = json.loads(raw or "null")
    except ValueError:
        raise ValidationFailed("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ValidationFailed("body must be a JSON object")
    if _has_nul(payload):  # PostgreSQL text cannot hold U+0000; no field of ours needs it
        raise ValidationFailed("strings must not contain the NUL character (\\u0000)")
    if allowed is not None:
        unknown = sorted(set(payload) - set(allowed))
        if unknown:
            raise ValidationFailed(f"unknown field(s): {', '.join(unknown)}")
    return payload


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


MAX_QUERY_INT = 2**31 - 1  # offsets and limits: far beyond any page, far below a database overflow


def int_arg(request: Request, name: str, default: int) -> int:
    """A non-negative integer query parameter (absent: `default`), at most 2^31 - 1."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer") from None
    if not 0 <= value <= MAX_QUERY_INT:
        raise ValidationFailed(f"{name} must be between 0 and {MAX_QUERY_INT}")
    return value
