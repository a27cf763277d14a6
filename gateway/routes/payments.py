"""Payment routes: citizens see and download their own positions' notices; the back office creates,
lists, searches and invalidates positions of its own Comune.

Why: the tenant in the path must be the token's tenant (a principal never reaches another Comune's
data), and a citizen's reads are always filtered by the fiscal code in his token, never by a
parameter he could change. Everything else is the `pagopa` service's job, over RPC.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from werkzeug.wrappers import Request, Response

import services.pagopa.domain.errors  # noqa: F401 - pagopa's errors arrive typed over RPC
from gateway.http import api
from sportello.errors import Forbidden, ValidationFailed
from sportello.tokens import Principal, Role

MAX_JSON_BYTES = 64 * 1024
BACK_OFFICE: tuple[Role, ...] = ("operator", "admin")
FILTERS = ("status", "debtor_fiscal_code", "purpose", "campaign_id")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _pdf(encoded: str, filename: str) -> Response:
    return Response(base64.b64decode(encoded), mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "no-store"})


def _int(request: Request, name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer") from None


def _is_back_office(principal: Principal) -> bool:
    return principal.has_role(*BACK_OFFICE)


class PaymentRoutes:
    """Mixin of GatewayService (uses its `call`, `authenticate` and `pagopa` proxy)."""

    call: Any
    authenticate: Any
    pagopa: Any

    def _principal(self, request: Request, tenant: str, *roles: Role) -> Principal:
        principal: Principal = self.authenticate(request, *roles)
        if principal.tenant != tenant:
            raise Forbidden("this token belongs to another Comune")
        return principal

    def _own_filter(self, principal: Principal) -> str | None:
        """None for the back office (whole tenant); the citizen's own fiscal code otherwise."""
        return None if _is_back_office(principal) else principal.subject

    @api("GET", "/v1/tenants/<tenant>/payments/mine")
    def my_payment_positions(self, request: Request, tenant: str) -> Response:
        principal = self._principal(request, tenant)
        found = self.call(self.pagopa.list_positions, tenant, status=request.args.get("status"),
                          debtor_fiscal_code=principal.subject, limit=_int(request, "limit", 50),
                          offset=_int(request, "offset", 0))
        return _json({"items": found})

    @api("GET", "/v1/tenants/<tenant>/payments/positions")
    def list_payment_positions(self, request: Request, tenant: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        filters = {name: request.args[name] for name in FILTERS if request.args.get(name)}
        found = self.call(self.pagopa.list_positions, tenant, limit=_int(request, "limit", 50),
                          offset=_int(request, "offset", 0), **filters)
        return _json({"items": found})

    @api("POST", "/v1/tenants/<tenant>/payments/positions")
    def create_payment_position(self, request: Request, tenant: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        if (request.content_length or 0) > MAX_JSON_BYTES:
            raise ValidationFailed("request body too large")
        if request.mimetype != "application/json":
            raise ValidationFailed("send application/json")
        try:
            payload = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            raise ValidationFailed("body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise ValidationFailed("body must be a JSON object")
        created = self.call(self.pagopa.create_position, tenant, payload)
        response = _json(created, 201)
        response.headers["Location"] = f"/v1/tenants/{tenant}/payments/positions/{created['id']}"
        return response

    @api("GET", "/v1/tenants/<tenant>/payments/positions/<position_id>")
    def get_payment_position(self, request: Request, tenant: str, position_id: str) -> Response:
        principal = self._principal(request, tenant)
        return _json(self.call(self.pagopa.get_position, tenant, position_id, self._own_filter(principal)))

    @api("GET", "/v1/tenants/<tenant>/payments/positions/<position_id>/notice")
    def payment_notice(self, request: Request, tenant: str, position_id: str) -> Response:
        principal = self._principal(request, tenant)
        encoded = self.call(self.pagopa.notice_pdf, tenant, position_id, self._own_filter(principal))
        return _pdf(encoded, f"avviso-{position_id}.pdf")

    @api("POST", "/v1/tenants/<tenant>/payments/positions/<position_id>/invalidate")
    def invalidate_payment_position(self, request: Request, tenant: str, position_id: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        return _json(self.call(self.pagopa.invalidate_position, tenant, position_id))

    @api("GET", "/v1/tenants/<tenant>/payments/notices")
    def payment_notices(self, request: Request, tenant: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        encoded = self.call(self.pagopa.notices_pdf, tenant, campaign_id=request.args.get("campaign_id"),
                            status=request.args.get("status", "published"), limit=_int(request, "limit", 500))
        return _pdf(encoded, "avvisi.pdf")
