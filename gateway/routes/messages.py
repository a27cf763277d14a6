"""Message routes for the back office: send one App IO message, follow it, run campaigns.

Why: only operators and admins of the Comune in the path may send or read (the token's tenant
must be the path's tenant); citizens read their messages in the IO app, not here. Delivery is
asynchronous: a send answers 202 with the message's state, to be followed by its id.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

import services.appio.domain.errors  # noqa: F401 - appio's errors arrive typed over RPC
from gateway.http import api, int_arg, json_object, json_response
from sportello.errors import ValidationFailed
from sportello.tokens import Principal

BACK_OFFICE = ("operator", "admin")
MAX_MESSAGE_BYTES = 64 * 1024
MAX_CAMPAIGN_BYTES = 8 * 1024 * 1024  # a city's worth of fiscal codes
MESSAGE_FIELDS = ("fiscal_code", "subject", "markdown", "io_service", "due_date", "payment_data", "idempotency_key")
RESOLUTION_FIELDS = ("action", "io_message_id", "confirm")
CAMPAIGN_FIELDS = ("name", "subject", "markdown", "fiscal_codes", "csv", "io_service", "idempotency_key")


class MessageRoutes:
    """Mixin of GatewayService (uses its `call`, `authenticate` and `appio` proxy)."""

    call: Any
    authenticate: Any
    authenticate_tenant: Any
    appio: Any

    def _back_office(self, request: Request, tenant: str) -> Principal:
        principal: Principal = self.authenticate_tenant(request, tenant, *BACK_OFFICE)
        return principal

    @api("POST", "/v1/tenants/<tenant>/messages")
    def send_io_message(self, request: Request, tenant: str) -> Response:
        self._back_office(request, tenant)
        payload = json_object(request, limit=MAX_MESSAGE_BYTES, allowed=MESSAGE_FIELDS)
        for name in ("fiscal_code", "subject", "markdown"):
            if not isinstance(payload.get(name), str):
                raise ValidationFailed(f"{name}: required string")
        created = self.call(self.appio.send_message, tenant, **payload)
        response = json_response(created, 202)
        response.headers["Location"] = f"/v1/tenants/{tenant}/messages/{created['message_id']}"
        return response

    @api("GET", "/v1/tenants/<tenant>/messages")
    def list_io_messages(self, request: Request, tenant: str) -> Response:
        self._back_office(request, tenant)
        found = self.call(self.appio.list_messages, tenant, state=request.args.get("state") or None,
                          campaign_id=request.args.get("campaign_id") or None, offset=int_arg(request, "offset", 0),
                          limit=int_arg(request, "limit", 100))
        return json_response({"items": found})

    @api("POST", "/v1/tenants/<tenant>/messages/<message_id>/resolution")
    def resolve_io_message(self, request: Request, tenant: str, message_id: str) -> Response:
        """An operator settles an `in_doubt` message: mark it sent (IO confirms the id) or resend it."""
        principal = self._back_office(request, tenant)
        payload = json_object(request, limit=MAX_MESSAGE_BYTES, allowed=RESOLUTION_FIELDS)
        if payload.get("action") not in ("mark_sent", "resend"):
            raise ValidationFailed("action: mark_sent or resend")
        if "io_message_id" in payload and not isinstance(payload["io_message_id"], str):
            raise ValidationFailed("io_message_id: a string")
        if "confirm" in payload and not isinstance(payload["confirm"], bool):
            raise ValidationFailed("confirm: true or false")
        return json_response(self.call(self.appio.resolve_in_doubt, tenant, message_id, payload["action"],
                               principal.subject, io_message_id=payload.get("io_message_id"),
                               confirm=payload.get("confirm", False)))

    @api("GET", "/v1/tenants/<tenant>/messages/<message_id>")
    def get_io_message(self, request: Request, tenant: str, message_id: str) -> Response:
        self._back_office(request, tenant)
        return json_response(self.call(self.appio.get_message, tenant, message_id))

    @api("POST", "/v1/tenants/<tenant>/message-campaigns")
    def create_io_campaign(self, request: Request, tenant: str) -> Response:
        principal = self._back_office(request, tenant)
        payload = json_object(request, limit=MAX_CAMPAIGN_BYTES, allowed=CAMPAIGN_FIELDS)
        for name in ("name", "subject", "markdown"):
            if not isinstance(payload.get(name), str):
                raise ValidationFailed(f"{name}: required string")
        if "fiscal_codes" in payload and not (isinstance(payload["fiscal_codes"], list)
                                              and all(isinstance(x, str) for x in payload["fiscal_codes"])):
            raise ValidationFailed("fiscal_codes: a list of strings")
        created = self.call(self.appio.create_campaign, tenant, created_by=principal.subject, **payload)
        response = json_response(created, 201)
        response.headers["Location"] = f"/v1/tenants/{tenant}/message-campaigns/{created['campaign_id']}"
        return response

    @api("GET", "/v1/tenants/<tenant>/message-campaigns/<campaign_id>")
    def io_campaign_progress(self, request: Request, tenant: str, campaign_id: str) -> Response:
        self._back_office(request, tenant)
        return json_response(self.call(self.appio.campaign_progress, tenant, campaign_id))

    @api("GET", "/v1/tenants/<tenant>/message-campaigns/<campaign_id>/report")
    def io_campaign_report(self, request: Request, tenant: str, campaign_id: str) -> Response:
        self._back_office(request, tenant)
        return json_response(self.call(self.appio.campaign_report, tenant, campaign_id,
                                       offset=int_arg(request, "offset", 0), limit=int_arg(request, "limit", 1000)))
