"""nameko entrypoints of the `anpr` service (thin: they translate and delegate to AnprApplication)."""

from __future__ import annotations

import base64
from typing import Any

from nameko.timer import timer

from services.anpr.application import Actor, AnprApplication, require_operator
from services.anpr.dependencies import AnprPorts
from services.anpr.domain import certificates
from sportello.edge.messaging import event_handler
from sportello.edge.rpc import rpc
from sportello.edge.service import PlatformService
from sportello.errors import ValidationFailed
from sportello.events import Envelope


def _actor(actor: dict[str, Any]) -> Actor:
    try:
        return Actor(str(actor["subject"]), str(actor["role"]), int(actor.get("level", 2)))
    except (KeyError, TypeError, ValueError):
        raise ValidationFailed("actor must be {subject, role, level}") from None


class AnprService(PlatformService):
    """ANPR: resident look-ups through PDND, registry certificates through web service 6001."""

    name = "anpr"
    app: AnprApplication = AnprPorts()  # type: ignore[assignment]

    @rpc
    def certificate_catalogue(self) -> dict[str, Any]:
        return {"types": [t.as_dict() for t in certificates.catalogue().values()],
                "exemptions": [{"id": e.id, "description": e.description, "waives_fees": e.waives_fees}
                               for e in certificates.exemptions().values()],
                "stamp_duty_cents": certificates.STAMP_DUTY_CENTS}

    @rpc
    def lookup_resident(self, tenant: str, actor: dict[str, Any], fiscal_code: str, reason: str) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        operator = _actor(actor)
        require_operator(operator)
        return self.app.lookup_resident(tenant, operator, fiscal_code, reason)

    @rpc
    def request_certificate(self, tenant: str, actor: dict[str, Any], certificate_type: int,
                            exemption: int | None = None, exemption_description: str | None = None,
                            subject: str | None = None, at_counter: bool = False,
                            reason: str | None = None, requester: dict[str, Any] | None = None) -> dict[str, Any]:
        """`requester` ({fiscal_code, surname, name}): at the counter, someone other than the subject asking."""
        self.request.bind(tenant=tenant)
        who = _actor(actor)
        if at_counter:
            require_operator(who)
        if requester is not None and not isinstance(requester, dict):
            raise ValidationFailed("requester must be {fiscal_code, surname, name}")
        return self.app.request_certificate(tenant, who, certificate_type=int(certificate_type), subject=subject,
                                            exemption=exemption, exemption_description=exemption_description,
                                            at_counter=at_counter, reason=reason, on_behalf_of=requester)

    @rpc
    def certificate_status(self, tenant: str, actor: dict[str, Any], request_id: str) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return self.app.status(tenant, request_id, _actor(actor))

    @rpc
    def my_certificate_requests(self, tenant: str, actor: dict[str, Any], limit: int = 50) -> list[dict[str, Any]]:
        self.request.bind(tenant=tenant)
        return self.app.requests_of(tenant, _actor(actor), limit)

    @rpc
    def download_certificate(self, tenant: str, actor: dict[str, Any], request_id: str) -> str:
        self.request.bind(tenant=tenant)
        return base64.b64encode(self.app.download(tenant, request_id, _actor(actor))).decode("ascii")

    @rpc
    def verify_certificate(self, tenant: str, code: str, document_b64: str | None = None) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        document = base64.b64decode(document_b64) if document_b64 else None
        return self.app.verify(tenant, code, document)

    @rpc
    def verification_qr(self, tenant: str, code: str) -> dict[str, str]:
        """The QR code (SVG) of a certificate's public verification URL, for portals and printing."""
        self.request.bind(tenant=tenant)
        return self.app.verification_qr(tenant, code)

    @rpc
    def audit_trail(self, tenant: str, actor: dict[str, Any], limit: int = 100) -> list[dict[str, Any]]:
        self.request.bind(tenant=tenant)
        require_operator(_actor(actor))
        return self.app.audit_trail(tenant, min(int(limit), 500))

    @timer(interval=60)
    def retry_stalled_issues(self) -> None:
        self.app.retry_stalled_issues()

    @event_handler("it.sportello.pagopa.payment.completed.v1")
    def on_payment_completed(self, event: Envelope[Any]) -> None:
        self.app.on_payment_completed(event)
