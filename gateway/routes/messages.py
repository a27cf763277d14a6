"""Message routes for the back office: send one App IO message, follow it, run campaigns.

Why: only operators and admins of the Comune in the path may send or read (the token's tenant
must be the path's tenant); citizens read their messages in the IO app, not here. Delivery is
asynchronous: a send answers 202 with the message's state, to be followed by its id.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request, Response

import services.appio.domain.errors  # noqa: F401 - appio's errors arrive typed over RPC
from gateway.http import api
from sportello.errors import Forbidden, ValidationFailed
from sportello.tokens import Principal

BACK_OFFICE = ("operator", "admin")
MAX_MESSAGE_BYTES = 64 * 1024
MAX_CAMPAIGN_BYTES = 8 * 1024 * 1024  # a city's worth of fiscal codes
MESSAGE_FIELDS = ("fiscal_code", "subject", "markdown", "io_service", "due_date", "payment_data", "idempotency_key")
RESOLUTION_FIELDS = ("action", "io_message_id", "confirm")
CAMPAIGN_FIELDS = ("name", "subject", "markdown", "fiscal_codes", "csv", "io_service", "idempotency_key")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _body(request: Request, limit: int, allowed: tuple[str, ...]) -> dict[str, Any]:
    if (request.content_length or 0) > limit:
        raise ValidationFailed("request body too large")
    if request.mimetype != "application/json":
        raise ValidationFailed("send application/json")
    try:
        payload = json.loads(request.get_data(as_text=True) or "null")
    except ValueError:
        raise ValidationFailed("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ValidationFailed("body must be a JSON object")
    unknown = sorted(set(payload) - set(allowed))
    if unknown:
        raise ValidationFailed(f"unknown field(s): {', '.join(unknown)}")
    return payload


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.args.get(name, default))
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer") from None


class MessageRoutes:
    """Mixin of GatewayService (uses its `call`, `authenticate` and `appio` proxy)."""

    call: Any
    authenticate: Any
    appio: Any

    def _back_office(self, request: Request, tenant: str) -> Principal:
        principal: Principal = self.authenticate(request, *BACK_OFFICE)
        if principal.tenant != tenant:
            raise Forbidden("this token belongs to another Comune")
        return principal

    @api("POST", "/v1/tenants/<tenant>/messages")
    def send_io_message(self, request: Request, tenant: str) -> Response:
        self._back_office(request, tenant)
        payload = _body(request, MAX_MESSAGE_BYTES, MESSAGE_FIELDS)
        for name in ("fiscal_code", "subject", "markdown"):
            if not isinstance(payload.get(name), str):
                raise ValidationFailed(f"{name}: required string")
        created = self.call(self.appio.send_message, tenant, **payload)
        response = _json(created, 202)
        response.headers["Location"] = f"/v1/tenants/{tenant}/messages/{created['message_id']}"
        return response

    @api("GET", "/v1/tenants/<tenant>/messages")
    def list_io_messages(self, request: Request, tenant: str) -> Response:
        self._back_office(request, tenant)
        found = self.call(self.appio.list_messages, tenant, state=request.args.get("state") or None,
                          campaign_id=request.args.get("campaign_id") or None, offset=_int(request, "offset", 0),
                          limit=_int(request, "limit", 100))
        return _json({"items": found})

    @api("POST", "/v1/tenants/<tenant>/messages/<message_id>/resolution")
    def resolve_io_message(self, request: Request, tenant: str, message_id: str) -> Response:
        """An operator settles an `in_doubt` message: mark it sent (IO confirms the id) or resend it."""
        principal = self._back_office(request, tenant)
        payload = _body(request, MAX_MESSAGE_BYTES, RESOLUTION_FIELDS)
        if payload.get("action") not in ("mark_sent", "resend"):
            raise ValidationFailed("action: mark_sent or resend")
        if "io_message_id" in payload and not isinstance(payload["io_message_id"], str):
            raise ValidationFailed("io_message_id: a string")
        if "confirm" in payload and not isinstance(payload["confirm"], bool):
            raise ValidationFailed("confirm: true or false")
        return _json(self.call(self.appio.resolve_in_doubt, tenant, message_id, payload["action"],
                               principal.subject, io_message_id=payload.get("io_message_id"),
                               confirm=payload.get("confirm", False)))

    @api("GET", "/v1/tenants/<tenant>/messages/<message_id>")
    def get_io_message(self, request: Request, tenant: str, message_id: str) -> Response:
        self._back_office(request, tenant)
        return _json(self.call(self.appio.get_message, tenant, message_id))

    @api("POST", "/v1/tenants/<tenant>/message-campaigns")
    def create_io_campaign(self, request: Request, tenant: str) -> Response:
        principal = self._back_office(request, tenant)
        payload = _body(request, MAX_CAMPAIGN_BYTES, CAMPAIGN_FIELDS)
        for name in ("name", "subject", "markdown"):
            if not isinstance(payload.get(name), str):
                raise ValidationFailed(f"{name}: required string")
        if "fiscal_codes" in payload and not (isinstance(payload["fiscal_codes"], list)
                                              and all(isinstance(x, str) for x in payload["fiscal_codes"])):
            raise ValidationFailed("fiscal_codes: a list of strings")
        created = self.call(self.appio.create_campaign, tenant, created_by=principal.subject, **payload)
        response = _json(created, 201)
        response.headers["Location"] = f"/v1/tenants/{tenant}/message-campaigns/{created['campaign_id']}"
        return response

    @api("GET", "/v1/tenants/<tenant>/message-campaigns/<campaign_id>")
    def io_campaign_progress(self, request: Request, tenant: str, campaign_id: str) -> Response:
        self._back_office(request, tenant)
        return _json(self.call(self.appio.campaign_progress, tenant, campaign_id))

    @api("GET", "/v1/tenants/<tenant>/message-campaigns/<campaign_id>/report")
    def io_campaign_report(self, request: Request, tenant: str, campaign_id: str) -> Response:
        self._back_office(request, tenant)
        return _json(self.call(self.appio.campaign_report, tenant, campaign_id, offset=_int(request, "offset", 0),
                               limit=_int(request, "limit", 1000)))
