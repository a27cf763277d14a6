"""Payment routes: citizens see and download their own positions' notices; the back office creates,
lists, searches and invalidates positions of its own Comune.

Why: the tenant in the path must be the token's tenant (a principal never reaches another Comune's
data), and a citizen's reads are always filtered by the fiscal code in his token, never by a
parameter he could change. A citizen's list is read from the replica's read model (ADR 0012);
everything else is the `pagopa` service's job, over RPC.
"""

from __future__ import annotations

import base64
from typing import Any

from werkzeug.wrappers import Request, Response

import services.pagopa.domain.errors  # noqa: F401 - pagopa's errors arrive typed over RPC
from gateway.feed import CitizenPositionsView
from gateway.http import api, int_arg, json_object, json_response
from gateway.readmodel import DEFAULT_LIMIT, SNAPSHOT_LIMIT, page
from services.pagopa.domain.campaign_csv import MAX_BYTES as MAX_CAMPAIGN_BYTES
from services.pagopa.domain.nodo import MAX_MESSAGE_BYTES
from sportello.errors import ValidationFailed
from sportello.tokens import Principal, Role

MAX_JSON_BYTES = 64 * 1024
# a city-size CSV (33,000 rows) is validated and stored in a few seconds; more than the usual deadline
CAMPAIGN_UPLOAD_SECONDS = 120.0
# a page of 500 notices is ~2.4 s of CPU on an idle core, and more than the usual 10 s deadline while
# the same pagopa works a campaign (make bench-city, 2026-11-22: 6 of 66 pages answered 504)
NOTICES_PAGE_SECONDS = 120.0
BACK_OFFICE: tuple[Role, ...] = ("operator", "admin")
FILTERS = ("status", "debtor_fiscal_code", "purpose", "campaign_id", "notice_number", "reference")


def _pdf(encoded: str, filename: str) -> Response:
    return Response(base64.b64decode(encoded), mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "no-store"})


def _is_back_office(principal: Principal) -> bool:
    return principal.has_role(*BACK_OFFICE)


class PaymentRoutes:
    """Mixin of GatewayService (uses its `call`, `authenticate` and `pagopa` proxy)."""

    call: Any
    call_at_least: Any
    authenticate: Any
    authenticate_tenant: Any
    pagopa: Any
    settings: Any
    citizen_positions: CitizenPositionsView

    def _principal(self, request: Request, tenant: str, *roles: Role) -> Principal:
        principal: Principal = self.authenticate_tenant(request, tenant, *roles)
        return principal

    def _own_filter(self, principal: Principal) -> str | None:
        """None for the back office (whole tenant); the citizen's own fiscal code otherwise."""
        return None if _is_back_office(principal) else principal.subject

    @api("GET", "/v1/tenants/<tenant>/payments/mine")
    def my_payment_positions(self, request: Request, tenant: str) -> Response:
        """From the replica's read model (ADR 0012): loaded once per citizen from `pagopa`, forgotten
        when pagopa's events say a position changed. Always filtered by the token's fiscal code."""
        principal = self._principal(request, tenant)
        status = request.args.get("status")
        limit, offset = int_arg(request, "limit", DEFAULT_LIMIT), int_arg(request, "offset", 0)
        if not 1 <= limit <= SNAPSHOT_LIMIT or offset < 0:
            raise ValidationFailed("limit must be 1-500 and offset >= 0")
        if status is None and limit == DEFAULT_LIMIT and offset == 0:
            body = self.citizen_positions.default_body(tenant, principal.subject)
            if body is not None:
                return Response(body, mimetype="application/json")
        views = self.citizen_positions.positions(
            tenant, principal.subject,
            lambda size: self.call(self.pagopa.list_positions, tenant, debtor_fiscal_code=principal.subject,
                                   limit=size, offset=0))
        return json_response({"items": page(views, status=status, limit=limit, offset=offset)})

    @api("GET", "/v1/tenants/<tenant>/payments/positions")
    def list_payment_positions(self, request: Request, tenant: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        filters = {name: request.args[name] for name in FILTERS if request.args.get(name)}
        found = self.call(self.pagopa.list_positions, tenant, limit=int_arg(request, "limit", 50),
                          offset=int_arg(request, "offset", 0), **filters)
        return json_response({"items": found})

    @api("POST", "/v1/tenants/<tenant>/payments/positions")
    def create_payment_position(self, request: Request, tenant: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        payload = json_object(request, limit=MAX_JSON_BYTES)
        created = self.call(self.pagopa.create_position, tenant, payload)
        # read your writes on this replica; the others learn it from payment.position.created
        self.citizen_positions.forget_citizen(tenant, str(created.get("debtor", {}).get("fiscal_code", "")))
        response = json_response(created, 201)
        response.headers["Location"] = f"/v1/tenants/{tenant}/payments/positions/{created['id']}"
        return response

    @api("GET", "/v1/tenants/<tenant>/payments/positions/<position_id>")
    def get_payment_position(self, request: Request, tenant: str, position_id: str) -> Response:
        principal = self._principal(request, tenant)
        return json_response(self.call(self.pagopa.get_position, tenant, position_id, self._own_filter(principal)))

    @api("GET", "/v1/tenants/<tenant>/payments/positions/<position_id>/notice")
    def payment_notice(self, request: Request, tenant: str, position_id: str) -> Response:
        principal = self._principal(request, tenant)
        encoded = self.call(self.pagopa.notice_pdf, tenant, position_id, self._own_filter(principal))
        return _pdf(encoded, f"avviso-{position_id}.pdf")

    @api("POST", "/v1/tenants/<tenant>/payments/positions/<position_id>/invalidate")
    def invalidate_payment_position(self, request: Request, tenant: str, position_id: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        invalidated = self.call(self.pagopa.invalidate_position, tenant, position_id)
        self.citizen_positions.forget_position(tenant, position_id)
        return json_response(invalidated)

    @api("GET", "/v1/tenants/<tenant>/payments/notices")
    def payment_notices(self, request: Request, tenant: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        encoded = self.call_at_least(NOTICES_PAGE_SECONDS, self.pagopa.notices_pdf, tenant,
                                     campaign_id=request.args.get("campaign_id"),
                                     status=request.args.get("status", "published"),
                                     limit=int_arg(request, "limit", 500), offset=int_arg(request, "offset", 0))
        return _pdf(encoded, "avvisi.pdf")

    @api("POST", "/v1/tenants/<tenant>/payments/positions/<position_id>/checkout")
    def start_payment_checkout(self, request: Request, tenant: str, position_id: str) -> Response:
        """Start paying online: a pagoPA Checkout cart for the position; the portal redirects the
        citizen to `redirect_url`. A citizen only for his own positions."""
        principal = self._principal(request, tenant)
        payload = json_object(request, limit=MAX_JSON_BYTES)
        urls = payload.get("return_urls")
        email = payload.get("email")
        if email is not None and not isinstance(email, str):
            raise ValidationFailed("email must be a string")
        started = self.call(self.pagopa.start_payment, tenant, position_id, urls, self._own_filter(principal), email)
        return json_response(started)

    @api("POST", "/v1/tenants/<tenant>/payments/campaigns")
    def upload_payment_campaign(self, request: Request, tenant: str) -> Response:
        """A CSV of positions (e.g. the yearly TARI), `text/csv`, the campaign's name in `?name=`.
        Every row is validated and stored (per-row errors in the answer); the positions are then
        created in the background — follow the campaign's progress and report. With an
        `Idempotency-Key`, a retried upload (same name and CSV) answers 200 with the same campaign."""
        self._principal(request, tenant, *BACK_OFFICE)
        if (request.content_length or 0) > MAX_CAMPAIGN_BYTES:
            raise ValidationFailed("the CSV is too large")
        if request.mimetype not in ("text/csv", "text/plain", "application/csv"):
            raise ValidationFailed("send the campaign as text/csv")
        try:
            text = request.get_data(cache=False).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationFailed("the CSV must be UTF-8 text") from None
        created = self.call_at_least(CAMPAIGN_UPLOAD_SECONDS, self.pagopa.upload_campaign, tenant,
                                     request.args.get("name", ""), text, request.headers.get("Idempotency-Key"))
        response = json_response(created, 200 if created.get("replayed") else 201)
        response.headers["Location"] = f"/v1/tenants/{tenant}/payments/campaigns/{created['campaign_id']}"
        return response

    @api("GET", "/v1/tenants/<tenant>/payments/campaigns/<campaign_id>")
    def payment_campaign_progress(self, request: Request, tenant: str, campaign_id: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        return json_response(self.call(self.pagopa.campaign_progress, tenant, campaign_id))

    @api("GET", "/v1/tenants/<tenant>/payments/campaigns/<campaign_id>/report")
    def payment_campaign_report(self, request: Request, tenant: str, campaign_id: str) -> Response:
        self._principal(request, tenant, *BACK_OFFICE)
        return json_response(self.call(self.pagopa.campaign_report, tenant, campaign_id,
                                       request.args.get("status") or None, int_arg(request, "offset", 0),
                                       int_arg(request, "limit", 1000)))

    @api("POST", "/v1/pagopa/paForNode")
    def pagopa_station(self, request: Request) -> Response:
        """The creditor-institution station the Nodo calls (SOAP 1.1, paForNode.wsdl); forwarded as it
        is to the pagopa service, which finds the Comune by idPA (docs/adr/0006). Not a JWT route: the
        Nodo is authenticated at the ingress (mutual TLS / pagoPA's addresses), and every message is
        checked against the Comune's idPA, idBrokerPA and idStation. Business errors are SOAP replies
        with PAA_* faults (HTTP 200); a body that is no paForNode request is a 400 problem."""
        if (request.content_length or 0) > MAX_MESSAGE_BYTES:
            raise ValidationFailed("message too large")
        try:
            message = request.get_data(cache=False).decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("message is not UTF-8") from None
        reply = self.call(self.pagopa.nodo_station, message)
        return Response(reply, mimetype="text/xml", headers={"Cache-Control": "no-store"})
