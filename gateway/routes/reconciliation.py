"""Reconciliation routes (back office): reporting flows in, the reconciliation report out.

Why: the money a PSP settles is reported in a FlussoRiversamento; the tributi office imports one
(an XML file it received, or the Nodo's new ones on demand) and reads what is reported, paid but
not yet reported, reported but unknown to us (missing) or reported with another amount
(mismatched). Importing the same flow again changes nothing and the report is computed afresh
each time, so both are safe to repeat. Operators of the Comune in the path only.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

import services.pagopa.domain.errors  # noqa: F401 - pagopa's errors arrive typed over RPC
from gateway.http import api, int_arg, json_response
from services.pagopa.domain.reporting import MAX_FLOW_BYTES
from sportello.errors import ValidationFailed
from sportello.tokens import Role

BACK_OFFICE: tuple[Role, ...] = ("operator", "admin")
XML_TYPES = ("application/xml", "text/xml")
REPORT_SECTIONS = ("reported", "paid", "missing", "mismatched")
# a 20 MB flow is validated and stored in seconds; asking the Nodo may take a few SOAP calls
SLOW_CALL_SECONDS = 60.0


class ReconciliationRoutes:
    """Mixin of GatewayService (uses its `call`, `authenticate_tenant`, `pagopa` and `settings`)."""

    call: Any
    call_at_least: Any
    authenticate_tenant: Any
    pagopa: Any
    settings: Any

    def _slow_call(self, method: Any, *args: Any) -> Any:
        return self.call_at_least(SLOW_CALL_SECONDS, method, *args)

    @api("POST", "/v1/tenants/<tenant>/payments/reporting-flows")
    def import_reporting_flow(self, request: Request, tenant: str) -> Response:
        """A FlussoRiversamento XML: 201 when new, 200 when this flow id was imported before."""
        self.authenticate_tenant(request, tenant, *BACK_OFFICE)
        if (request.content_length or 0) > MAX_FLOW_BYTES:
            raise ValidationFailed("the reporting flow is too large")
        if request.mimetype not in XML_TYPES:
            raise ValidationFailed("send the reporting flow as application/xml")
        try:
            text = request.get_data(cache=False).decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("the reporting flow must be UTF-8 XML") from None
        imported = self._slow_call(self.pagopa.import_reporting_flow, tenant, text)
        return json_response(imported, 201 if imported["new"] else 200)

    @api("POST", "/v1/tenants/<tenant>/payments/reporting-flows/fetch")
    def fetch_reporting_flows(self, request: Request, tenant: str) -> Response:
        """Ask the Nodo now (nodeForPa) for the flows not imported yet (it is also done every 5 min)."""
        self.authenticate_tenant(request, tenant, *BACK_OFFICE)
        return json_response(self._slow_call(self.pagopa.fetch_reporting_flows, tenant))

    @api("GET", "/v1/tenants/<tenant>/payments/reconciliation")
    def reconciliation_report(self, request: Request, tenant: str) -> Response:
        """Counts of every section, and the lines of one section (`status`) or of all, a page at a time."""
        self.authenticate_tenant(request, tenant, *BACK_OFFICE)
        status = request.args.get("status") or None
        if status is not None and status not in REPORT_SECTIONS:
            raise ValidationFailed(f"status must be one of {', '.join(REPORT_SECTIONS)}")
        offset, limit = int_arg(request, "offset", 0), int_arg(request, "limit", 1000)
        if offset < 0 or not 1 <= limit <= 5000:
            raise ValidationFailed("limit must be 1-5000 and offset >= 0")
        return json_response(self.call(self.pagopa.reconciliation_report, tenant, status, offset, limit))
