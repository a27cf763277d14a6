"""Admin routes: a Comune's admins see the dead letters of its events in every service and replay them.

Why here and not only in the CLI: the back-office console shows an admin what the platform could
not process for his Comune, and lets him put it back once the cause is fixed. Each service keeps
its own dead letters (`list_dead_letters` / `replay_dead_letter` RPCs); the gateway asks all four at
once within one deadline and says which did not answer. Only the path's tenant is ever listed or
replayed (the RPCs filter by tenant); letters without a tenant (undecodable bodies) stay with the
platform's operators and their CLI. No message body leaves the services.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from gateway.http import api, int_arg, json_response
from sportello.edge.rpc import gather_with_deadline
from sportello.errors import ValidationFailed
from sportello.settings import SERVICE_NAMES


class _Call:
    """A proxy method with its keyword arguments, in the shape `gather_with_deadline` starts."""

    def __init__(self, method: Any, **kwargs: Any) -> None:
        self.method, self.kwargs = method, kwargs

    def call_async(self) -> Any:
        return self.method.call_async(**self.kwargs)


def _service(name: str) -> str:
    if name not in SERVICE_NAMES:
        raise ValidationFailed(f"service must be one of: {', '.join(SERVICE_NAMES)}")
    return name


class AdminRoutes:
    """Mixin of GatewayService (uses its `call`, `authenticate_tenant`, `settings` and service proxies)."""

    call: Any
    authenticate_tenant: Any
    settings: Any

    @api("GET", "/v1/tenants/<tenant>/admin/dead-letters")
    def list_tenant_dead_letters(self, request: Request, tenant: str) -> Response:
        self.authenticate_tenant(request, tenant, "admin")
        wanted = request.args.get("service")
        names = [_service(wanted)] if wanted else list(SERVICE_NAMES)
        include_replayed = request.args.get("include_replayed", "false").lower() in ("1", "true", "yes")
        limit = int_arg(request, "limit", 100)
        if not 1 <= limit <= 1000:
            raise ValidationFailed("limit must be between 1 and 1000")
        calls = {name: _Call(getattr(self, name).list_dead_letters, tenant=tenant, pending_only=not include_replayed,
                             limit=limit) for name in names}
        results = gather_with_deadline(calls, timeout=self.settings.rpc_timeout_seconds)
        items: list[dict[str, Any]] = []
        unavailable: list[str] = []
        for name in names:
            answer, error = results[name]
            if error is not None or not isinstance(answer, list):
                unavailable.append(name)
                continue
            items.extend({"service": name, **letter} for letter in answer)
        items.sort(key=lambda letter: (letter["dead_lettered_at"], letter["service"], letter["id"]))
        return json_response({"items": items, "unavailable": unavailable})

    @api("POST", "/v1/tenants/<tenant>/admin/dead-letters/<service>/<letter_id>/replay")
    def replay_tenant_dead_letter(self, request: Request, tenant: str, service: str, letter_id: str) -> Response:
        self.authenticate_tenant(request, tenant, "admin")
        proxy = getattr(self, _service(service))
        if not letter_id.isdigit() or len(letter_id) > 18:
            raise ValidationFailed("letter_id must be a positive integer")
        letter = self.call(proxy.replay_dead_letter, int(letter_id), tenant=tenant)
        return json_response({"service": service, **letter})
