"""Message content as IO's Services API accepts it, validated against the contract's limits.

Why: IO answers 400 to content outside its limits; checking before sending turns a late,
per-citizen failure into an immediate, typed error for whoever asked (an operator, a campaign
upload, an event). Limits are those of `NewMessage` in the official index.yaml (v4.1.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from stdnum.it import codicefiscale, iva

from services.appio.domain.errors import InvalidMessage

SUBJECT_MIN, SUBJECT_MAX = 10, 120
MARKDOWN_MIN, MARKDOWN_MAX = 80, 10_000
TTL_MIN, TTL_MAX, TTL_DEFAULT = 3_600, 604_800, 3_600
AMOUNT_MIN, AMOUNT_MAX = 1, 9_999_999_999
NOTICE_NUMBER = re.compile(r"^[0123][0-9]{17}$")
ORGANISATION_FISCAL_CODE = re.compile(r"^[0-9]{11}$")
# The path-parameter pattern of IO's contract (upper case, omocodia letters allowed).
IO_FISCAL_CODE = re.compile(
    r"^[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]$"
)
FeatureLevel = Literal["STANDARD", "ADVANCED"]


def normalise_fiscal_code(value: str) -> str:
    """A citizen's fiscal code as IO wants it (16 upper-case characters, valid check letter)."""
    code = (value or "").strip().upper()
    if not IO_FISCAL_CODE.match(code) or not codicefiscale.is_valid(code):
        raise InvalidMessage("recipient: not a valid personal fiscal code")
    return code


def io_timestamp(value: date | datetime) -> str:
    """IO's UTCISODateFromString: `2018-10-13T00:00:00.000Z` (a date means its midnight UTC)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif value.tzinfo is None:
        raise InvalidMessage("due_date: a date-time must carry its timezone")
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class PaymentData:
    """pagoPA payment data of a message: amount in euro cents, notice number, payee."""

    amount_cents: int
    notice_number: str
    payee_fiscal_code: str
    invalid_after_due_date: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.amount_cents, bool) or not isinstance(self.amount_cents, int) or not (
                AMOUNT_MIN <= self.amount_cents <= AMOUNT_MAX):
            raise InvalidMessage(f"payment_data.amount: whole euro cents between {AMOUNT_MIN} and {AMOUNT_MAX}")
        if not isinstance(self.notice_number, str) or not NOTICE_NUMBER.match(self.notice_number):
            raise InvalidMessage("payment_data.notice_number: 18 digits, starting with 0, 1, 2 or 3")
        if not isinstance(self.payee_fiscal_code, str) or not ORGANISATION_FISCAL_CODE.match(
                self.payee_fiscal_code) or not iva.is_valid(self.payee_fiscal_code):
            raise InvalidMessage("payment_data.payee.fiscal_code: the 11-digit fiscal code of the Comune")

    def to_io(self) -> dict[str, Any]:
        return {"amount": self.amount_cents, "notice_number": self.notice_number,
                "invalid_after_due_date": self.invalid_after_due_date,
                "payee": {"fiscal_code": self.payee_fiscal_code}}

    def as_dict(self) -> dict[str, Any]:
        return {"amount_cents": self.amount_cents, "notice_number": self.notice_number,
                "payee_fiscal_code": self.payee_fiscal_code, "invalid_after_due_date": self.invalid_after_due_date}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaymentData:
        return cls(amount_cents=data["amount_cents"], notice_number=data["notice_number"],
                   payee_fiscal_code=data["payee_fiscal_code"],
                   invalid_after_due_date=bool(data.get("invalid_after_due_date", False)))


@dataclass(frozen=True)
class MessageContent:
    """What a message says; construction fails with `InvalidMessage` outside IO's limits."""

    subject: str
    markdown: str
    due_date: str | None = None  # already in IO's timestamp form
    payment_data: PaymentData | None = None
    time_to_live: int = TTL_DEFAULT
    feature_level_type: FeatureLevel = "STANDARD"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not SUBJECT_MIN <= len(self.subject) <= SUBJECT_MAX:
            raise InvalidMessage(f"subject: between {SUBJECT_MIN} and {SUBJECT_MAX} characters")
        if not isinstance(self.markdown, str) or not MARKDOWN_MIN <= len(self.markdown) <= MARKDOWN_MAX:
            raise InvalidMessage(f"markdown: between {MARKDOWN_MIN} and {MARKDOWN_MAX} characters")
        if isinstance(self.time_to_live, bool) or not isinstance(self.time_to_live, int) or not (
                TTL_MIN <= self.time_to_live <= TTL_MAX):
            raise InvalidMessage(f"time_to_live: seconds between {TTL_MIN} and {TTL_MAX}")
        if self.feature_level_type not in ("STANDARD", "ADVANCED"):
            raise InvalidMessage("feature_level_type: STANDARD or ADVANCED")
        if self.due_date is not None and not re.match(
                r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?Z$", self.due_date):
            raise InvalidMessage("due_date: ISO-8601 in UTC, e.g. 2018-10-13T00:00:00.000Z")

    def to_io(self, fiscal_code: str) -> dict[str, Any]:
        """The body of `POST /api/v1/messages` (submitMessageforUserWithFiscalCodeInBody)."""
        content: dict[str, Any] = {"subject": self.subject, "markdown": self.markdown}
        if self.due_date is not None:
            content["due_date"] = self.due_date
        if self.payment_data is not None:
            content["payment_data"] = self.payment_data.to_io()
        return {"fiscal_code": fiscal_code, "time_to_live": self.time_to_live, "content": content,
                "feature_level_type": self.feature_level_type}

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "markdown": self.markdown, "due_date": self.due_date,
                "payment_data": self.payment_data.as_dict() if self.payment_data else None,
                "time_to_live": self.time_to_live, "feature_level_type": self.feature_level_type}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MessageContent:
        payment = data.get("payment_data")
        return cls(subject=data["subject"], markdown=data["markdown"], due_date=data.get("due_date"),
                   payment_data=PaymentData.from_dict(payment) if payment else None,
                   time_to_live=int(data.get("time_to_live", TTL_DEFAULT)),
                   feature_level_type=data.get("feature_level_type", "STANDARD"))
