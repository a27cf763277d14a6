from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from services.pagopa.domain.errors import InvalidTransition
from services.pagopa.domain.positions import (
    Debtor,
    DigitalStamp,
    PaymentPosition,
    PositionStatus,
    Transfer,
)
from sportello.errors import ValidationFailed
from tests.unit.pagopa.support import CITIZEN, IBAN, request

TODAY = date(2026, 11, 21)
ALLOWED = (IBAN,)


def test_a_valid_request_is_cleaned() -> None:
    raw = replace(request(), description="  Imposta di bollo  ",
                  transfers=[Transfer(1, 1600, "bollo", iban="IT58 A050 3411 4000 0000 0012 345")])
    clean = raw.validated(today=TODAY, allowed_ibans=ALLOWED)
    assert clean.description == "Imposta di bollo"
    assert clean.transfers[0].iban == IBAN


@pytest.mark.parametrize("change, message", [
    (dict(amount_cents=0), "amount"),
    (dict(amount_cents=10_000_000_000), "amount"),
    (dict(description=""), "description"),
    (dict(description="x" * 141), "description"),
    (dict(due_date=date(2026, 11, 20)), "past"),
    (dict(transfers=[]), "1 to 5"),
    (dict(transfers=[Transfer(i, 1, "x", iban=IBAN) for i in range(1, 7)], amount_cents=6), "1 to 5"),
    (dict(transfers=[Transfer(1, 800, "x", iban=IBAN), Transfer(1, 800, "y", iban=IBAN)]), "unique"),
    (dict(transfers=[Transfer(6, 1600, "x", iban=IBAN)]), "unique"),
    (dict(transfers=[Transfer(1, 1000, "x", iban=IBAN)]), "add up"),
    (dict(transfers=[Transfer(1, 1600, "x", iban="IT00A0000000000000000000000")]), "not a valid IBAN"),
    (dict(transfers=[Transfer(1, 1600, "x", iban="DE89370400440532013000")]), "Comune's"),
    (dict(transfers=[Transfer(1, 1600, "x")]), "exactly one"),
    (dict(transfers=[Transfer(1, 1600, "x", iban=IBAN, stamp=DigitalStamp("h" * 10, "01", "CR"))]), "exactly one"),
    (dict(transfers=[Transfer(1, 1600, "")]), "remittance"),
    (dict(reference=""), "reference"),
])
def test_invalid_requests_get_a_typed_error(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        replace(request(), **change).validated(today=TODAY, allowed_ibans=ALLOWED)


def test_digital_stamp_transfer_is_accepted_and_checked() -> None:
    stamped = replace(request(), transfers=[Transfer(1, 1600, "bollo", stamp=DigitalStamp("a" * 44, "01", "CR"))])
    assert stamped.validated(today=TODAY, allowed_ibans=ALLOWED).transfers[0].stamp is not None
    with pytest.raises(ValidationFailed, match=r"provincial"):
        DigitalStamp("a" * 44, "01", "cr")
    with pytest.raises(ValidationFailed):
        DigitalStamp("a" * 73, "01", "CR")


def test_debtors() -> None:
    assert Debtor.of(CITIZEN.lower(), "Mario Rossi").kind == "F"
    assert Debtor.of("00297960197", "Comune di Cremona").kind == "G"
    for bad in ("RSSMRA85T10A562X", "00297960198", "123", ""):
        with pytest.raises(ValidationFailed):
            Debtor.of(bad, "Someone")
    with pytest.raises(ValidationFailed):
        Debtor.of(CITIZEN, "")


def _position() -> PaymentPosition:
    return PaymentPosition(id="p1", tenant="cremona", iupd="x", iuv="4" * 17, notice_number="3" + "4" * 17,
                           payee_fiscal_code="00297960197", company_name="Comune", request=request())


def test_state_machine_happy_paths() -> None:
    draft = _position()
    assert draft.status is PositionStatus.DRAFT
    published = draft.publish()
    paid = published.pay(paid_at=datetime(2026, 11, 22, tzinfo=UTC), receipt_id="r1")
    assert paid.status is PositionStatus.PAID and paid.receipt_id == "r1"
    assert paid.history == (PositionStatus.DRAFT, PositionStatus.PUBLISHED)
    assert published.expire().status is PositionStatus.EXPIRED
    assert published.invalidate().status is PositionStatus.INVALIDATED
    assert draft.invalidate().status is PositionStatus.INVALIDATED


@pytest.mark.parametrize("steps", [
    ("pay",), ("expire",), ("publish", "publish"), ("publish", "pay", "invalidate"),
    ("publish", "expire", "pay"), ("invalidate", "publish"), ("publish", "invalidate", "expire"),
])
def test_forbidden_transitions(steps: tuple[str, ...]) -> None:
    position = _position()
    with pytest.raises(InvalidTransition):
        for step in steps:
            if step == "pay":
                position = position.pay(paid_at=datetime.now(UTC), receipt_id="r")
            else:
                position = getattr(position, step)()
