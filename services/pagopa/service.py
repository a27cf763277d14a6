"""nameko entrypoints of the `pagopa` service (thin: they translate and delegate)."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta
from typing import Any

import structlog
from nameko.timer import timer

from services.pagopa import models
from services.pagopa.application import Positions, position_view
from services.pagopa.campaigns import Campaigns
from services.pagopa.config import settings
from services.pagopa.dependencies import PositionsProvider
from services.pagopa.notice import render_notices
from services.pagopa.receipts import Receipts
from services.pagopa.reconciliation import Reconciliation
from services.pagopa.schemas import parse_position_request, parse_return_urls
from sportello.contracts.anpr import StampDutyRequested
from sportello.edge.messaging import event_handler
from sportello.edge.offload import off_the_hub
from sportello.edge.rpc import rpc
from sportello.edge.service import PlatformService
from sportello.errors import NotFound, SportelloError, ValidationFailed
from sportello.events import Envelope

log = structlog.get_logger("pagopa.service")
STARTED = time.monotonic()  # this process's start (the module is imported once, at start-up)


class PagoPAService(PlatformService):
    """pagoPA: debt positions, notices, receipts, reconciliation, campaigns."""

    name = "pagopa"
    campaign_counts = staticmethod(models.campaign_counts)  # the campaign-progress metric
    positions: Positions = PositionsProvider()  # type: ignore[assignment]

    @rpc
    def create_position(self, tenant: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        t = self.tenants.get(tenant)
        if t.pagopa is None:
            raise NotFound("this Comune has no pagoPA configuration")
        request = parse_position_request(payload, default_iban=t.pagopa.ibans[0])
        return position_view(self.positions.create(tenant, request))

    @rpc
    def get_position(self, tenant: str, position_id: str, debtor_fiscal_code: str | None = None) -> dict[str, Any]:
        """One position; with `debtor_fiscal_code` only if it is that debtor's (citizens see their own)."""
        self.request.bind(tenant=tenant)
        position = self.positions.get(tenant, str(position_id))
        if debtor_fiscal_code is not None and position.request.debtor.fiscal_code != debtor_fiscal_code:
            raise NotFound("no such payment position")
        return position_view(position)

    @rpc
    def list_positions(self, tenant: str, status: str | None = None, debtor_fiscal_code: str | None = None,
                       purpose: str | None = None, campaign_id: str | None = None, limit: int = 50,
                       offset: int = 0, notice_number: str | None = None,
                       reference: str | None = None) -> list[dict[str, Any]]:
        """Positions by any of the filters (search: a notice number quoted at the counter, or the
        back office's own reference), newest first."""
        self.request.bind(tenant=tenant)
        if not 1 <= int(limit) <= 500 or int(offset) < 0:
            raise ValidationFailed("limit must be 1-500 and offset >= 0")
        found = self.positions.list(tenant, status=status, debtor_fiscal_code=debtor_fiscal_code, purpose=purpose,
                                    campaign_id=campaign_id, notice_number=notice_number, reference=reference,
                                    limit=int(limit), offset=int(offset))
        return [position_view(p) for p in found]

    @rpc
    def invalidate_position(self, tenant: str, position_id: str) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return position_view(self.positions.invalidate(tenant, str(position_id)))

    @rpc
    def record_payment(self, tenant: str, notice_number: str, receipt_id: str, paid_at: str,
                       amount_cents: int) -> dict[str, Any]:
        """A receipt (from the SOAP station or GPD receipts): the position becomes paid, once."""
        self.request.bind(tenant=tenant)
        try:
            when = datetime.fromisoformat(paid_at)
        except (TypeError, ValueError):
            raise ValidationFailed("paid_at must be an ISO date-time") from None
        if when.tzinfo is None:
            raise ValidationFailed("paid_at must carry a timezone")
        position, changed = self.positions.record_payment(tenant, str(notice_number), receipt_id=str(receipt_id),
                                                          paid_at=when, amount_cents=int(amount_cents))
        return {"position": position_view(position), "changed": changed}

    @rpc
    def nodo_station(self, message: str) -> str:
        """The creditor-institution station (paForNode SOAP) the gateway forwards the Nodo's calls to:
        paVerifyPaymentNotice, paGetPayment(V2), paSendRT(V2). A SOAP reply (PAA_* faults inside);
        ValidationFailed when the message is no paForNode request at all."""
        return Receipts(self.positions).handle(message.encode("utf-8")).decode("utf-8")

    @rpc
    def start_payment(self, tenant: str, position_id: str, return_urls: dict[str, str],
                      debtor_fiscal_code: str | None = None, email: str | None = None) -> dict[str, str]:
        """A Checkout (v2) cart for one position: where to redirect the citizen to pay."""
        self.request.bind(tenant=tenant)
        urls = parse_return_urls(return_urls)
        location = self.positions.start_payment(tenant, str(position_id), urls,
                                                debtor_fiscal_code=debtor_fiscal_code, email=email)
        return {"redirect_url": location}

    @rpc
    def import_reporting_flow(self, tenant: str, flow_xml: str) -> dict[str, Any]:
        """A FlussoRiversamento (XML text), validated and stored; importing it again is a no-op."""
        self.request.bind(tenant=tenant)
        return Reconciliation(self.positions).import_flow(tenant, flow_xml.encode("utf-8"))

    @rpc
    def reconciliation_report(self, tenant: str, status: str | None = None, offset: int = 0,
                              limit: int = 1000) -> dict[str, Any]:
        """Paid / reported / missing / mismatched, computed afresh (same answer when re-run): the
        counts of all four, and a page (`offset`, `limit`) of the lines of `status` (or of each)."""
        self.request.bind(tenant=tenant)
        sections = ("reported", "paid", "missing", "mismatched")
        if status is not None and status not in sections:
            raise ValidationFailed(f"status must be one of {', '.join(sections)}")
        if int(offset) < 0 or not 1 <= int(limit) <= 5000:
            raise ValidationFailed("limit must be 1-5000 and offset >= 0")
        report = Reconciliation(self.positions).report(tenant)
        page = slice(int(offset), int(offset) + int(limit))
        return {"counts": report["counts"], "offset": int(offset),
                **{name: report[name][page] for name in sections if status in (None, name)}}

    @rpc
    def fetch_reporting_flows(self, tenant: str) -> dict[str, int]:
        """The Nodo's new reporting flows for this Comune, fetched and imported (each flow once)."""
        self.request.bind(tenant=tenant)
        return Reconciliation(self.positions).fetch_from_nodo(tenant)

    @timer(interval=300)
    def fetch_reporting_flows_everywhere(self) -> None:
        """Flows arrive at most daily per PSP; asking every five minutes costs two SOAP calls."""
        for tenant in self.tenants:
            if tenant.pagopa is not None and tenant.pagopa.nodo_base_url is not None \
                    and tenant.pagopa.nodo_password is not None:
                try:
                    Reconciliation(self.positions).fetch_from_nodo(tenant.id)
                except SportelloError as exc:
                    log.warning("reporting_flows_fetch_failed", tenant=tenant.id, code=exc.code)

    @rpc
    def poll_gpd_receipts(self, tenant: str, days: int = 3) -> dict[str, int]:
        """Receipts listed by GPD's receipts API in the last `days` days become payments (once)."""
        self.request.bind(tenant=tenant)
        if not 1 <= int(days) <= 90:
            raise ValidationFailed("days must be 1-90")
        return Receipts(self.positions).poll_gpd(tenant, since=self.positions.today() - timedelta(days=int(days)))

    @timer(interval=60)
    def poll_gpd_receipts_everywhere(self) -> None:
        """The GPD receipts path, every minute per tenant (the SOAP station is the fast path)."""
        for tenant in self.tenants:
            if tenant.pagopa is not None:
                try:
                    Receipts(self.positions).poll_gpd(tenant.id, since=self.positions.today() - timedelta(days=3))
                except SportelloError as exc:
                    log.warning("gpd_receipts_poll_failed", tenant=tenant.id, code=exc.code)

    @rpc
    def notice_pdf(self, tenant: str, position_id: str, debtor_fiscal_code: str | None = None) -> str:
        """The payment notice PDF of one position, base64 (RPC bodies are JSON)."""
        self.request.bind(tenant=tenant)
        position = self.positions.get(tenant, str(position_id))
        if debtor_fiscal_code is not None and position.request.debtor.fiscal_code != debtor_fiscal_code:
            raise NotFound("no such payment position")
        return base64.b64encode(render_notices([position])).decode("ascii")

    @rpc
    def notices_pdf(self, tenant: str, campaign_id: str | None = None, status: str | None = "published",
                    limit: int = 500, offset: int = 0) -> str:
        """Many notices in one PDF (a campaign's, for printing and mailing), base64; a city-size
        campaign is printed 500 at a time with `offset`."""
        self.request.bind(tenant=tenant)
        if not 1 <= int(limit) <= 500 or int(offset) < 0:
            raise ValidationFailed("limit must be 1-500 and offset >= 0")
        found = self.positions.list(tenant, campaign_id=campaign_id, status=status, limit=int(limit),
                                    offset=int(offset))
        if not found:
            raise NotFound("no payment positions match")
        return base64.b64encode(off_the_hub(render_notices, found)).decode("ascii")  # seconds of CPU

    @rpc
    def upload_campaign(self, tenant: str, name: str, csv_text: str,
                        idempotency_key: str | None = None) -> dict[str, Any]:
        """A CSV campaign: every row validated, stored with its rows in one transaction; the
        positions are then made in the background (`run_campaigns`). Per-row errors in the answer.
        The same `idempotency_key` with the same name and CSV answers the campaign already made."""
        self.request.bind(tenant=tenant)
        return Campaigns(self.positions).upload(tenant, name, csv_text, idempotency_key=idempotency_key)

    @rpc
    def campaign_progress(self, tenant: str, campaign_id: str) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return Campaigns(self.positions).progress(tenant, str(campaign_id))

    @rpc
    def campaign_report(self, tenant: str, campaign_id: str, status: str | None = None, offset: int = 0,
                        limit: int = 1000) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return Campaigns(self.positions).report(tenant, str(campaign_id), status=status, offset=int(offset),
                                                limit=int(limit))

    @timer(interval=1)
    def run_campaigns(self) -> None:
        """Pending campaign rows become positions (GPD v2 bulk). nameko waits for a run to end before
        the next, so one process never works a batch twice; a restart resumes where it stopped.

        Not in the first GPD window after start: the limiter is per process, and a predecessor killed
        mid-campaign may have spent the whole window's calls; resuming at once let GPD see 101 in one
        window (make resilience, 2026-11-22)."""
        if time.monotonic() < STARTED + settings().gpd_rate_window_seconds:
            return
        for tenant in self.tenants:
            if tenant.pagopa is not None:
                try:
                    Campaigns(self.positions).process(tenant.id, budget_seconds=10)
                except SportelloError as exc:
                    log.warning("payment_campaigns_run_failed", tenant=tenant.id, code=exc.code)

    @rpc
    def expire_overdue(self, tenant: str) -> int:
        self.request.bind(tenant=tenant)
        return self.positions.expire_overdue(tenant)

    @timer(interval=3600)
    def expire_overdue_everywhere(self) -> None:
        for tenant in self.tenants:
            if tenant.pagopa is not None:
                expired = self.positions.expire_overdue(tenant.id)
                if expired:
                    log.info("payment_positions_expired", tenant=tenant.id, count=expired)

    @event_handler(StampDutyRequested.event_type)
    def on_stamp_duty_requested(self, envelope: Envelope[Any]) -> None:
        """Idempotent by the request id (the position's reference), not by the inbox: creating the
        position calls GPD between two transactions, and a retried event must resume a draft."""
        self.request.bind(tenant=envelope.tenant, correlation_id=envelope.correlationid)
        position = self.positions.on_stamp_duty_requested(envelope.tenant, envelope.data)
        log.info("stamp_duty_position_ready", position_id=position.id, status=position.status.value)
