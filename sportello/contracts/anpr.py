"""Facts announced by `services/anpr`."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from sportello.events import EventPayload


class CertificateIssued(EventPayload):
    """A registry certificate was obtained from ANPR and stored: the citizen can download it."""

    event_type: ClassVar[str] = "it.sportello.anpr.certificate.issued.v1"
    certificate_id: str
    request_id: str
    certificate_type: int = Field(ge=1, le=20, description="id in ANPR's Tipo_di_certificato table")
    holder_fiscal_code: str = Field(min_length=16, max_length=16)
    requester_fiscal_code: str = Field(min_length=16, max_length=16)
    verification_code: str
    issued_at: datetime
    io_service: str | None = Field(default=None, description="the tenant's IO service that should notify it")


class StampDutyRequested(EventPayload):
    """A certificate request needs its stamp duty (imposta di bollo) paid: pagopa creates the position.

    pagopa answers with `payment.position.created` (purpose `certificate_stamp_duty`, reference =
    request_id) and later `payment.completed`, on which anpr obtains the certificate.
    """

    event_type: ClassVar[str] = "it.sportello.anpr.stamp_duty.requested.v1"
    request_id: str
    debtor_fiscal_code: str = Field(min_length=16, max_length=16)
    amount_cents: int = Field(ge=1, description="1600 for the €16.00 marca da bollo")
    description: str = Field(min_length=1, max_length=140)
    io_service: str | None = None
