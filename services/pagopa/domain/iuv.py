"""IUV and notice numbers (numero avviso) for aux digit 3, as pagoPA's SACI specifies.

Why: the notice number is what a citizen pays with; a wrong check digit is refused by every PSP.
Rule (SACI "Specifiche attuative dei codici identificativi", aux digit 3 only):
  notice number = "3" + segregation code (2n) + IUV base (13n) + check digits (2n)
  IUV           = the last 17 digits (segregation code + base + check digits)
  check digits  = int("3" + segregation code + IUV base) mod 93, zero-padded to 2 digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sportello.errors import ValidationFailed

AUX_DIGIT = "3"
BASE_DIGITS = 13
MAX_BASE = 10**BASE_DIGITS - 1
_SEGREGATION = re.compile(r"^[0-9]{2}$")
_NOTICE = re.compile(r"^3[0-9]{17}$")


def check_digits(segregation_code: str, base: str) -> str:
    """The 2 check digits of an aux-digit-3 IUV: ("3" + code + base) mod 93."""
    return f"{int(AUX_DIGIT + segregation_code + base) % 93:02d}"


@dataclass(frozen=True)
class NoticeNumber:
    segregation_code: str
    base: str

    @property
    def iuv(self) -> str:
        return self.segregation_code + self.base + check_digits(self.segregation_code, self.base)

    @property
    def notice_number(self) -> str:
        return AUX_DIGIT + self.iuv

    def __str__(self) -> str:
        return self.notice_number


def notice_for(segregation_code: str, sequence: int) -> NoticeNumber:
    """The notice number whose 13-digit IUV base is `sequence` (the tenant's counter value)."""
    if not _SEGREGATION.match(segregation_code):
        raise ValidationFailed("segregation code must be 2 digits")
    if not 0 <= sequence <= MAX_BASE:
        raise ValidationFailed("IUV base out of range (13 digits)")
    return NoticeNumber(segregation_code, f"{sequence:0{BASE_DIGITS}d}")


def parse_notice_number(value: str) -> NoticeNumber:
    """Validate an aux-digit-3 notice number (digits and check digits); typed error otherwise."""
    if not isinstance(value, str) or not _NOTICE.match(value):
        raise ValidationFailed("a notice number is 18 digits starting with 3")
    parsed = NoticeNumber(value[1:3], value[3:16])
    if parsed.notice_number != value:
        raise ValidationFailed("notice number check digits do not match")
    return parsed


def is_valid_notice_number(value: str) -> bool:
    try:
        parse_notice_number(value)
    except ValidationFailed:
        return False
    return True


def notice_from_iuv(iuv: str) -> str:
    """The notice number of an aux-digit-3 IUV (17 digits)."""
    return parse_notice_number(AUX_DIGIT + iuv).notice_number


def qr_payload(notice_number: str, creditor_fiscal_code: str, amount_cents: int) -> str:
    """The pagoPA notice's QR code text: `PAGOPA|002|<notice number>|<creditor fiscal code>|<cents>`
    (amount in euro cents, at least 2 digits, as the notice specification writes it)."""
    parse_notice_number(notice_number)
    if not (len(creditor_fiscal_code) == 11 and creditor_fiscal_code.isdigit()):
        raise ValidationFailed("creditor fiscal code must be 11 digits")
    if not 1 <= amount_cents <= 9_999_999_999:
        raise ValidationFailed("amount out of range")
    return f"PAGOPA|002|{notice_number}|{creditor_fiscal_code}|{amount_cents:02d}"
