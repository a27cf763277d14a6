"""Input shapes of the pagopa RPC API (what the gateway forwards), parsed into domain objects.

Why: a malformed request must come back as one typed `ValidationFailed` naming the fields, never as
a KeyError deep inside; field-level rules (IBANs, fiscal codes, sums) stay in the domain.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

from services.pagopa.domain.positions import (
    DEFAULT_CATEGORY,
    Debtor,
    DigitalStamp,
    PositionRequest,
    Transfer,
)
from services.pagopa.ports import ReturnUrls
from sportello.errors import ValidationFailed


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StampIn(_In):
    hash_document: str
    stamp_type: str
    provincial_residence: str


class TransferIn(_In):
    id_transfer: int = Field(ge=1, le=5)
    amount_cents: int = Field(ge=1)
    remittance_information: str
    category: str = DEFAULT_CATEGORY
    iban: str | None = None
    stamp: StampIn | None = None


class DebtorIn(_In):
    fiscal_code: str
    full_name: str


class PositionIn(_In):
    description: str
    amount_cents: int = Field(ge=1)
    due_date: date
    debtor: DebtorIn
    transfers: list[TransferIn] | None = Field(default=None, description="default: one transfer to the first IBAN")
    purpose: Literal["single", "campaign"] = "single"
    reference: str | None = None
    campaign_id: str | None = None
    io_service: str | None = None


def parse_position_request(payload: Any, *, default_iban: str) -> PositionRequest:
    try:
        data = PositionIn.model_validate(payload)
    except ValidationError as exc:
        fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()}))
        raise ValidationFailed(f"invalid fields: {fields}") from None
    transfers = [
        Transfer(t.id_transfer, t.amount_cents, t.remittance_information, t.category, iban=t.iban,
                 stamp=DigitalStamp(t.stamp.hash_document, t.stamp.stamp_type, t.stamp.provincial_residence)
                 if t.stamp else None)
        for t in data.transfers
    ] if data.transfers else [Transfer(1, data.amount_cents, data.description[:140], iban=default_iban)]
    return PositionRequest(
        description=data.description, amount_cents=data.amount_cents, due_date=data.due_date,
        debtor=Debtor.of(data.debtor.fiscal_code, data.debtor.full_name), transfers=transfers,
        purpose=data.purpose, reference=data.reference, campaign_id=data.campaign_id, io_service=data.io_service,
    )


class ReturnUrlsIn(_In):
    ok: AnyHttpUrl
    cancel: AnyHttpUrl
    error: AnyHttpUrl
    waiting: AnyHttpUrl | None = None


def parse_return_urls(payload: Any) -> ReturnUrls:
    """Where Checkout sends the citizen back (waiting defaults to ok: v2 requires it)."""
    try:
        data = ReturnUrlsIn.model_validate(payload)
    except ValidationError as exc:
        fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()}))
        raise ValidationFailed(f"invalid return URLs: {fields}") from None
    return ReturnUrls(str(data.ok), str(data.cancel), str(data.error), str(data.waiting or data.ok))
