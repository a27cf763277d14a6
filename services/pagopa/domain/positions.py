"""Payment positions: what is owed, by whom, to which accounts, and the states it goes through.

Why: a position's rules (amounts in cents that add up, at most 5 transfers to the Comune's own
IBANs or a digital stamp, a valid debtor, a due date not in the past) and its state machine
(draft → published → paid | expired | invalidated) are the Comune's, not GPD's or nameko's: they
live here as plain Python and are tested without a broker or a database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum.it import codicefiscale, iva

from services.pagopa.domain.errors import InvalidTransition
from sportello.errors import ValidationFailed

MAX_TRANSFERS = 5
MAX_AMOUNT_CENTS = 9_999_999_999
STAMP_DUTY_CENTS = 1600
# pagoPA taxonomy codes ("dati specifici di riscossione"); a tenant may need its own — see the report.
DEFAULT_CATEGORY = "9/0101101IM/"
STAMP_DUTY_CATEGORY = "9/0101108TS/"

Purpose = Literal["single", "campaign", "certificate_stamp_duty"]
_PROVINCE = re.compile(r"^[A-Z]{2}$")
_STAMP_TYPE = re.compile(r"^[0-9A-Za-z]{2}$")


class PositionStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    PAID = "paid"
    EXPIRED = "expired"
    INVALIDATED = "invalidated"


TRANSITIONS: dict[PositionStatus, frozenset[PositionStatus]] = {
    PositionStatus.DRAFT: frozenset({PositionStatus.PUBLISHED, PositionStatus.INVALIDATED}),
    PositionStatus.PUBLISHED: frozenset({PositionStatus.PAID, PositionStatus.EXPIRED, PositionStatus.INVALIDATED}),
    PositionStatus.PAID: frozenset(),
    PositionStatus.EXPIRED: frozenset(),
    PositionStatus.INVALIDATED: frozenset(),
}


@dataclass(frozen=True)
class Debtor:
    """A person (type F, personal fiscal code) or a company (type G, 11-digit fiscal code)."""

    kind: Literal["F", "G"]
    fiscal_code: str
    full_name: str

    @classmethod
    def of(cls, fiscal_code: str, full_name: str) -> Debtor:
        code = (fiscal_code or "").strip().upper()
        name = (full_name or "").strip()
        if not 1 <= len(name) <= 70:
            raise ValidationFailed("debtor full name must be 1-70 characters")
        if len(code) == 16:
            if not codicefiscale.is_valid(code):
                raise ValidationFailed("debtor fiscal code is not a valid personal fiscal code")
            return cls("F", code, name)
        if len(code) == 11:
            if not iva.is_valid(code):
                raise ValidationFailed("debtor fiscal code is not a valid 11-digit organisation code")
            return cls("G", code, name)
        raise ValidationFailed("debtor fiscal code must be 16 characters (person) or 11 digits (company)")


@dataclass(frozen=True)
class DigitalStamp:
    """Marca da bollo digitale (instead of an IBAN)."""

    hash_document: str
    stamp_type: str
    provincial_residence: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.hash_document) <= 72:
            raise ValidationFailed("stamp hash_document must be 1-72 characters")
        if not _STAMP_TYPE.match(self.stamp_type):
            raise ValidationFailed("stamp type must be 2 characters")
        if not _PROVINCE.match(self.provincial_residence):
            raise ValidationFailed("stamp provincial residence must be 2 capital letters")


@dataclass(frozen=True)
class Transfer:
    id_transfer: int
    amount_cents: int
    remittance_information: str
    category: str = DEFAULT_CATEGORY
    iban: str | None = None
    stamp: DigitalStamp | None = None


def _clean_iban(raw: str, allowed: tuple[str, ...]) -> str:
    try:
        iban = IBAN(raw)
    except SchwiftyException:
        raise ValidationFailed("transfer IBAN is not a valid IBAN") from None
    compact = iban.compact
    if compact not in {IBAN(a).compact for a in allowed}:
        raise ValidationFailed("transfer IBAN is not one of the Comune's accredit IBANs")
    return compact


def validate_transfers(transfers: list[Transfer], amount_cents: int, allowed_ibans: tuple[str, ...]) -> list[Transfer]:
    """GPD's own rules, checked before we call it: 1-5 transfers, ids 1-5 unique, sum = amount,
    each to one of the tenant's IBANs or a digital stamp (never both)."""
    if not 1 <= len(transfers) <= MAX_TRANSFERS:
        raise ValidationFailed(f"a position has 1 to {MAX_TRANSFERS} transfers")
    ids = [t.id_transfer for t in transfers]
    if len(set(ids)) != len(ids) or not set(ids) <= set(range(1, MAX_TRANSFERS + 1)):
        raise ValidationFailed("transfer ids must be unique, among 1-5")
    cleaned = []
    for t in transfers:
        if not isinstance(t.amount_cents, int) or t.amount_cents < 1:
            raise ValidationFailed("each transfer amount is a positive integer of cents")
        if not 1 <= len(t.remittance_information) <= 140:
            raise ValidationFailed("transfer remittance information must be 1-140 characters")
        if not 1 <= len(t.category) <= 140:
            raise ValidationFailed("transfer category must be 1-140 characters")
        if (t.iban is None) == (t.stamp is None):
            raise ValidationFailed("a transfer goes to an IBAN or is a digital stamp, exactly one")
        cleaned.append(replace(t, iban=_clean_iban(t.iban, allowed_ibans)) if t.iban is not None else t)
    if sum(t.amount_cents for t in transfers) != amount_cents:
        raise ValidationFailed("the transfers' amounts must add up to the position amount")
    return cleaned


@dataclass(frozen=True)
class PositionRequest:
    """What a caller asks for; `validated()` returns it cleaned or raises ValidationFailed."""

    description: str
    amount_cents: int
    due_date: date
    debtor: Debtor
    transfers: list[Transfer]
    purpose: Purpose = "single"
    reference: str | None = None
    campaign_id: str | None = None
    io_service: str | None = None

    def validated(self, *, today: date, allowed_ibans: tuple[str, ...]) -> PositionRequest:
        if not isinstance(self.amount_cents, int) or not 1 <= self.amount_cents <= MAX_AMOUNT_CENTS:
            raise ValidationFailed("amount must be an integer number of cents between 1 and 9999999999")
        description = (self.description or "").strip()
        if not 1 <= len(description) <= 140:
            raise ValidationFailed("description must be 1-140 characters")
        if self.due_date < today:
            raise ValidationFailed("due date is in the past")
        if self.purpose not in ("single", "campaign", "certificate_stamp_duty"):
            raise ValidationFailed("unknown purpose")
        if self.reference is not None and not 1 <= len(self.reference) <= 64:
            raise ValidationFailed("reference must be 1-64 characters")
        transfers = validate_transfers(list(self.transfers), self.amount_cents, allowed_ibans)
        return replace(self, description=description, transfers=transfers)


@dataclass(frozen=True)
class PaymentPosition:
    id: str
    tenant: str
    iupd: str
    iuv: str
    notice_number: str
    payee_fiscal_code: str
    company_name: str
    request: PositionRequest
    status: PositionStatus = PositionStatus.DRAFT
    created_at: datetime | None = None
    paid_at: datetime | None = None
    receipt_id: str | None = None
    history: tuple[PositionStatus, ...] = field(default=())

    def _to(self, target: PositionStatus) -> PaymentPosition:
        if target not in TRANSITIONS[self.status]:
            raise InvalidTransition(f"a {self.status.value} position cannot become {target.value}")
        return replace(self, status=target, history=(*self.history, self.status))

    def publish(self) -> PaymentPosition:
        return self._to(PositionStatus.PUBLISHED)

    def pay(self, *, paid_at: datetime, receipt_id: str) -> PaymentPosition:
        return replace(self._to(PositionStatus.PAID), paid_at=paid_at, receipt_id=receipt_id)

    def expire(self) -> PaymentPosition:
        return self._to(PositionStatus.EXPIRED)

    def invalidate(self) -> PaymentPosition:
        return self._to(PositionStatus.INVALIDATED)


def stamp_duty_request(*, request_id: str, debtor_fiscal_code: str, amount_cents: int, description: str,
                       due_date: date, iban: str, io_service: str | None = None) -> PositionRequest:
    """The €16.00 position asked for by ANPR for a certificate's stamp duty (reference = request id)."""
    return PositionRequest(
        description=description,
        amount_cents=amount_cents,
        due_date=due_date,
        debtor=Debtor.of(debtor_fiscal_code, "Intestatario certificato"),
        transfers=[Transfer(1, amount_cents, description[:140], STAMP_DUTY_CATEGORY, iban=iban)],
        purpose="certificate_stamp_duty",
        reference=request_id,
        io_service=io_service,
    )
