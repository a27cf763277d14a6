"""nameko entrypoints of the `appio` service (thin: they translate and delegate).

Events and back-office requests only *record* messages (with the inbox claim, in one
transaction); the delivery engine sends them within IO's limits (`delivery.py`, ADR 0007).
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import structlog

from services.appio import delivery, models
from services.appio.dependencies import DeliveryEngine
from services.appio.domain.campaigns import parse_csv
from services.appio.domain.messages import normalise_fiscal_code
from sportello.contracts.anpr import CertificateIssued
from sportello.contracts.pagopa import PaymentPositionCreated
from sportello.edge.messaging import event_handler
from sportello.edge.rpc import rpc
from sportello.edge.service import PlatformService
from sportello.errors import ConfigurationError, ValidationFailed
from sportello.events import Envelope
from sportello.inbox import claim, claim_many
from sportello.tenants import Tenant

log = structlog.get_logger("appio")


class AppIOService(PlatformService):
    """App IO: profile checks and messages within IO's limits."""

    name = "appio"
    campaign_counts = staticmethod(models.campaign_counts)  # the campaign-progress metric

    engine: DeliveryEngine = DeliveryEngine()  # type: ignore[assignment]

    def _tenant(self, tenant_id: str) -> Tenant:
        self.request.bind(tenant=tenant_id)
        tenant = self.tenants.get(tenant_id)
        if tenant.appio is None:
            raise ValidationFailed(f"tenant {tenant_id} has no App IO services configured")
        return tenant

    # -- reacting to events ---------------------------------------------------------------------
    # A campaign announces hundreds of positions a second while IO takes ten citizens a second:
    # recording is only rows in our database, so it goes in batches (ADR 0016) and leaves this
    # process's CPU to the deliveries (make bench-city: per event, the intake took a third of it).
    @event_handler(PaymentPositionCreated.event_type, batch=50)
    def on_payment_position_created(self, events: list[Envelope[PaymentPositionCreated]]) -> None:
        recorded = 0
        with self.db.transaction() as session:
            for event in claim_many(session, "appio.on_payment_position_created", events):
                data = event.data
                if len(data.debtor_fiscal_code) != 16:
                    log.info("appio_payment_skipped_not_a_person", position_id=data.position_id)
                    continue  # an organisation (11-digit code) is not on IO
                created = delivery.record_message(
                    session, tenant=self.tenants.get(event.tenant), dedup_key=f"position:{data.position_id}",
                    io_service=data.io_service, kind="payment_notice", recipient=data.debtor_fiscal_code,
                    variables=delivery.payment_variables(data), correlation_id=event.correlationid,
                    reference=data.position_id, campaign_id=data.campaign_id).created
                recorded += created
        log.info("appio_payment_messages_recorded", events=len(events), recorded=recorded)
        if recorded:
            self.engine.wake()

    @event_handler(CertificateIssued.event_type)
    def on_certificate_issued(self, event: Envelope[CertificateIssued]) -> None:
        data = event.data
        tenant = self.tenants.get(event.tenant)
        with self.db.transaction() as session:
            if not claim(session, "appio.on_certificate_issued", event):
                return
            recorded = delivery.record_message(
                session, tenant=tenant, dedup_key=f"certificate:{data.certificate_id}", io_service=data.io_service,
                kind="certificate_ready", recipient=data.requester_fiscal_code,
                variables=delivery.certificate_variables(data), correlation_id=event.correlationid,
                reference=data.certificate_id)
        log.info("appio_message_recorded", message_id=recorded.message_id, created=recorded.created,
                 certificate_id=data.certificate_id)
        self.engine.wake()

    # -- back office ----------------------------------------------------------------------------
    @rpc
    def send_message(self, tenant: str, fiscal_code: str, subject: str, markdown: str, io_service: str | None = None,
                     due_date: str | None = None, payment_data: dict[str, Any] | None = None,
                     idempotency_key: str | None = None) -> dict[str, Any]:
        """A free-text message from an operator (optionally with payment data); recorded, then delivered."""
        owner = self._tenant(tenant)
        try:
            due = date.fromisoformat(due_date) if due_date else None
        except (TypeError, ValueError):
            raise ValidationFailed("due_date: a date, YYYY-MM-DD") from None
        try:
            with self.db.transaction() as session:
                recorded = delivery.record_message(
                    session, tenant=owner,
                    dedup_key=f"key:{idempotency_key}" if idempotency_key else f"api:{uuid.uuid4()}",
                    io_service=io_service, kind="free_text", recipient=normalise_fiscal_code(fiscal_code),
                    variables=delivery.free_text_variables(subject, markdown, due, payment_data),
                    correlation_id=self.request.correlation_id)
                view = delivery.get_message(session, tenant, recorded.message_id)
        except (ConfigurationError, KeyError, TypeError) as exc:
            raise ValidationFailed(str(exc.detail if isinstance(exc, ConfigurationError) else exc)) from None
        self.engine.wake()
        return view

    @rpc
    def get_message(self, tenant: str, message_id: str) -> dict[str, Any]:
        self._tenant(tenant)
        with self.db.transaction() as session:
            return delivery.get_message(session, tenant, str(message_id))

    @rpc
    def list_messages(self, tenant: str, state: str | None = None, campaign_id: str | None = None,
                      offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        self._tenant(tenant)
        if int(offset) < 0 or not 1 <= int(limit) <= 1000:
            raise ValidationFailed("offset >= 0 and 1 <= limit <= 1000")
        with self.db.transaction() as session:
            return delivery.list_messages(session, tenant, state=state, campaign_id=campaign_id,
                                          offset=int(offset), limit=int(limit))

    @rpc
    def resolve_in_doubt(self, tenant: str, message_id: str, action: str, operator: str,
                         io_message_id: str | None = None, confirm: bool = False) -> dict[str, Any]:
        """An operator's decision on a message whose submission's outcome was lost (docs/adr/0007)."""
        self._tenant(tenant)
        view = self.engine.deliverer.resolve_in_doubt(tenant, str(message_id), action=action, operator=operator,
                                                      io_message_id=io_message_id, confirm=confirm)
        self.engine.wake()
        return view

    @rpc
    def create_campaign(self, tenant: str, name: str, subject: str, markdown: str,
                        fiscal_codes: list[str] | None = None, csv: str | None = None, io_service: str | None = None,
                        idempotency_key: str | None = None, created_by: str | None = None) -> dict[str, Any]:
        """One message to many citizens: all recipients recorded in one transaction, then delivered."""
        owner = self._tenant(tenant)
        if (fiscal_codes is None) == (csv is None):
            raise ValidationFailed("give the recipients either as fiscal_codes or as csv")
        codes = list(fiscal_codes) if fiscal_codes is not None else parse_csv(str(csv))
        try:
            with self.db.transaction() as session:
                result = delivery.create_campaign(
                    session, tenant=owner, name=name, subject=subject, markdown=markdown, fiscal_codes=codes,
                    io_service=io_service, correlation_id=self.request.correlation_id,
                    idempotency_key=idempotency_key, created_by=created_by)
        except ConfigurationError as exc:
            raise ValidationFailed(exc.detail) from None
        log.info("appio_campaign_created", campaign_id=result["campaign_id"], recipients=result["recipients"])
        self.engine.wake()
        return result

    @rpc
    def campaign_progress(self, tenant: str, campaign_id: str) -> dict[str, Any]:
        self._tenant(tenant)
        with self.db.transaction() as session:
            return delivery.campaign_progress(session, tenant, str(campaign_id))

    @rpc
    def campaign_report(self, tenant: str, campaign_id: str, offset: int = 0, limit: int = 1000) -> dict[str, Any]:
        self._tenant(tenant)
        if int(offset) < 0 or not 1 <= int(limit) <= 5000:
            raise ValidationFailed("offset >= 0 and 1 <= limit <= 5000")
        with self.db.transaction() as session:
            return delivery.campaign_report(session, tenant, str(campaign_id), offset=int(offset), limit=int(limit))
