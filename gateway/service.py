"""The gateway: the one HTTP API, translating requests into RPC calls on the services.

Thin by design: a route validates its input, calls a service (always with a deadline) and shapes
the answer; errors become problem+json through the single table in `gateway.errors`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import eventlet
import structlog
import yaml
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

import sportello.contracts  # noqa: F401 - every event type, for the AsyncAPI document
from gateway.auth import Authenticator
from gateway.errors import HTTP_STATUS, MethodNotAllowed, RouteNotFound, UpstreamTimeout
from gateway.feed import CitizenPositionsView, ReadModelProvider
from gateway.http import api
from gateway.routes.admin import AdminRoutes
from gateway.routes.auth import AuthRoutes
from gateway.routes.messages import MessageRoutes
from gateway.routes.pages import WebPages
from gateway.routes.payments import PaymentRoutes
from gateway.routes.reconciliation import ReconciliationRoutes
from gateway.routes.registry import RegistryRoutes
from sportello.asyncapi import asyncapi_document
from sportello.edge.kernel import SETTINGS_CONFIG_KEY, RequestContextProvider
from sportello.edge.metrics import MetricsProvider
from sportello.edge.rpc import call_with_deadline, gather_with_deadline, register_remote_errors
from sportello.edge.tracing import TracingProvider
from sportello.errors import Forbidden, SportelloError
from sportello.settings import SERVICE_NAMES, Settings, load_settings
from sportello.tokens import Principal, Role
from sportello.version import __version__

log = structlog.get_logger("gateway")

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.yaml"
HEALTH_DEADLINE_SECONDS = 3.0


def _openapi_route_map(document: dict[str, Any]) -> Map:
    """The contract's paths as werkzeug rules: tells 'no such path' (404) from 'wrong method' (405)."""
    rules = []
    for path, operations in document.get("paths", {}).items():
        methods = [m.upper() for m in operations if m in {"get", "post", "put", "patch", "delete"}]
        rules.append(Rule(path.replace("{", "<").replace("}", ">"), methods=methods))
    return Map(rules)




class GatewaySettings(DependencyProvider):
    def setup(self) -> None:
        settings = self.container.config.get(SETTINGS_CONFIG_KEY)
        self.settings: Settings = settings if isinstance(settings, Settings) else load_settings()

    def get_dependency(self, worker_ctx: Any) -> Settings:
        return self.settings


class Contract(DependencyProvider):
    """The OpenAPI document, read once at start-up (a broken contract stops the gateway)."""

    def setup(self) -> None:
        self.text = OPENAPI_PATH.read_text(encoding="utf-8")
        self.document = yaml.safe_load(self.text)
        self.as_json = json.dumps(self.document)
        self.routes = _openapi_route_map(self.document)
        self.asyncapi = json.dumps(asyncapi_document(__version__))
        register_remote_errors()

    def get_dependency(self, worker_ctx: Any) -> Contract:
        return self


class AuthProvider(DependencyProvider):
    """One authenticator per gateway process (it caches the JWKS)."""

    def setup(self) -> None:
        self.authenticator = Authenticator()

    def get_dependency(self, worker_ctx: Any) -> Authenticator:
        return self.authenticator


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


class GatewayService(AuthRoutes, PaymentRoutes, ReconciliationRoutes, RegistryRoutes, MessageRoutes, AdminRoutes,
                     WebPages):
    name = "gateway"
    serves_http = True

    settings: Settings = GatewaySettings()  # type: ignore[assignment]
    contract: Contract = Contract()  # type: ignore[assignment]
    request = RequestContextProvider()
    anpr = RpcProxy("anpr")
    pagopa = RpcProxy("pagopa")
    spid = RpcProxy("spid")
    appio = RpcProxy("appio")
    auth: Authenticator = AuthProvider()  # type: ignore[assignment]
    citizen_positions: CitizenPositionsView = ReadModelProvider()  # type: ignore[assignment]
    metrics = MetricsProvider(http_status=lambda error: HTTP_STATUS.get(error.code, 500))
    tracing = TracingProvider(http_status=lambda error: HTTP_STATUS.get(error.code, 500))

    # -- helpers for routes (not entrypoints) -------------------------------------------------
    def call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a service over RPC within the configured deadline (nameko's proxy has none)."""
        return call_with_deadline(method, *args, timeout=self.settings.rpc_timeout_seconds,
                                  on_timeout=UpstreamTimeout("a service did not answer in time"), **kwargs)

    def call_at_least(self, seconds: float, method: Any, *args: Any, **kwargs: Any) -> Any:
        """`call` for a page of work (a city-size CSV, 500 notices, a reporting flow): the deadline is at
        least `seconds`, as such a call legitimately takes longer than a read."""
        return call_with_deadline(method, *args, timeout=max(seconds, self.settings.rpc_timeout_seconds),
                                  on_timeout=UpstreamTimeout("a service did not answer in time"), **kwargs)

    def authenticate_tenant(self, request: Request, tenant: str, *roles: Role) -> Principal:
        """The verified caller, who must belong to the Comune named in the path."""
        principal = self.authenticate(request, *roles)
        if principal.tenant != tenant:
            raise Forbidden("this token belongs to another Comune")
        return principal

    def authenticate(self, request: Request, *roles: Role) -> Principal:
        """The verified caller (any role when none is named); binds its tenant to the request."""
        principal = self.auth.authenticate(request, lambda: self.call(self.spid.jwks),
                                           roles=roles or ("citizen", "operator", "admin"))
        self.request.bind(tenant=principal.tenant)
        return principal

    @api("GET", "/v1/health")
    def health(self, request: Request) -> Response:
        calls = {name: getattr(self, name).health for name in SERVICE_NAMES}
        results = gather_with_deadline(calls, timeout=HEALTH_DEADLINE_SECONDS)
        services: dict[str, Any] = {}
        for name, (answer, error) in results.items():
            if error is None and isinstance(answer, dict):
                services[name] = answer
            else:
                reason = ("timeout" if isinstance(error, eventlet.Timeout)
                          else error.code if isinstance(error, SportelloError) else type(error).__name__)
                services[name] = {"service": name, "status": "unreachable", "error": reason}
        statuses = {s["status"] for s in services.values()}
        overall = "ok" if statuses == {"ok"} else ("degraded" if statuses <= {"ok", "degraded"} else "down")
        body = {"status": overall, "request_id": self.request.correlation_id,
                "gateway": {"version": __version__}, "services": services}
        return _json(body, 200 if overall == "ok" else 503)

    @api("GET", "/v1/me")
    def me(self, request: Request) -> Response:
        principal = self.authenticate(request)
        return _json({"subject": principal.subject, "tenant": principal.tenant, "level": principal.level,
                      "roles": list(principal.roles), "expires_at": principal.expires_at})

    @api("GET", "/v1/.well-known/jwks.json")
    def jwks(self, request: Request) -> Response:
        return _json(self.call(self.spid.jwks))

    @api("GET", "/v1/openapi.yaml")
    def openapi_yaml(self, request: Request) -> Response:
        return Response(self.contract.text, mimetype="application/yaml")

    @api("GET", "/v1/openapi.json")
    def openapi_json(self, request: Request) -> Response:
        return Response(self.contract.as_json, mimetype="application/json")

    @api("GET", "/v1/asyncapi.json")
    def asyncapi_json(self, request: Request) -> Response:
        return Response(self.contract.asyncapi, mimetype="application/json")

    @api("GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS", "/<path:path>")
    def not_routed(self, request: Request, path: str) -> Response:
        adapter = self.contract.routes.bind("localhost")
        try:
            adapter.match(request.path, method=request.method)
        except WerkzeugMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or []))
            raise MethodNotAllowed(f"{request.method} is not allowed here; use {allowed}") from None
        except WerkzeugNotFound:
            pass
        raise RouteNotFound(f"no route {request.method} {request.path}")
