"""Facts announced by `services/pagopa`."""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar, Literal

from pydantic import Field

from sportello.events import EventPayload

NoticeNumber = str  # 18 digits: aux digit 3 + segregation code + IUV base + check digits
PaymentPurpose = Literal["single", "campaign", "certificate_stamp_duty"]


class PaymentPositionCreated(EventPayload):
    """A payment position was created and published on pagoPA (GPD): it can be paid from now on."""

    event_type: ClassVar[str] = "it.sportello.pagopa.payment.position.created.v1"
    position_id: str
    iupd: str
    iuv: str = Field(pattern=r"^[0-9]{17}$")
    notice_number: NoticeNumber = Field(pattern=r"^[0123][0-9]{17}$")
    payee_fiscal_code: str = Field(pattern=r"^[0-9]{11}$")
    amount_cents: int = Field(ge=1, le=9_999_999_999)
    due_date: date
    description: str = Field(min_length=1, max_length=140, description="causale")
    debtor_fiscal_code: str = Field(min_length=11, max_length=16)
    purpose: PaymentPurpose
    reference: str | None = Field(default=None, max_length=64, description="e.g. the certificate request id")
    campaign_id: str | None = None
    io_service: str | None = Field(default=None, description="the tenant's IO service that should notify it")


class PaymentCompleted(EventPayload):
    """A payment position was paid (receipt received from pagoPA)."""

    event_type: ClassVar[str] = "it.sportello.pagopa.payment.completed.v1"
    position_id: str
    iuv: str = Field(pattern=r"^[0-9]{17}$")
    notice_number: NoticeNumber = Field(pattern=r"^[0123][0-9]{17}$")
    amount_cents: int = Field(ge=1)
    paid_at: datetime
    receipt_id: str
    purpose: PaymentPurpose
    reference: str | None = None


class PaymentPositionExpired(EventPayload):
    """A payment position passed its due date unpaid and can no longer be paid."""

    event_type: ClassVar[str] = "it.sportello.pagopa.payment.position.expired.v1"
    position_id: str
    notice_number: NoticeNumber = Field(pattern=r"^[0123][0-9]{17}$")
    purpose: PaymentPurpose
    reference: str | None = None


class PaymentPositionInvalidated(EventPayload):
    """A payment position was withdrawn by the Comune."""

    event_type: ClassVar[str] = "it.sportello.pagopa.payment.position.invalidated.v1"
    position_id: str
    notice_number: NoticeNumber = Field(pattern=r"^[0123][0-9]{17}$")
    purpose: PaymentPurpose
    reference: str | None = None
