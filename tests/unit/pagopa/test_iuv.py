from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.pagopa.domain.iuv import (
    check_digits,
    is_valid_notice_number,
    notice_for,
    notice_from_iuv,
    parse_notice_number,
)
from sportello.errors import ValidationFailed

segregation = st.integers(0, 99).map(lambda n: f"{n:02d}")
bases = st.integers(0, 10**13 - 1)


def _mod93_by_hand(digits: str) -> int:
    """Horner's rule digit by digit: an independent computation of the remainder."""
    remainder = 0
    for ch in digits:
        remainder = (remainder * 10 + int(ch)) % 93
    return remainder


def test_known_value() -> None:
    # 3 47 0000000000001 -> 3470000000000001 mod 93
    number = notice_for("47", 1)
    assert number.notice_number.startswith("3470000000000001")
    assert int(number.notice_number[-2:]) == 3470000000000001 % 93
    assert number.iuv == number.notice_number[1:]
    assert len(number.iuv) == 17


@given(segregation, bases)
def test_shape_and_check_digits(code: str, base: int) -> None:
    number = notice_for(code, base)
    nav = number.notice_number
    assert len(nav) == 18 and nav.isdigit() and nav[0] == "3"
    assert nav[1:3] == code and int(nav[3:16]) == base
    assert int(nav[16:]) == _mod93_by_hand(nav[:16]) < 93
    assert number.iuv == nav[1:]
    assert parse_notice_number(nav) == number
    assert notice_from_iuv(number.iuv) == nav


@given(segregation, bases, st.integers(0, 15), st.integers(1, 9))
def test_any_single_digit_error_in_the_payload_is_caught(code: str, base: int, position: int, delta: int) -> None:
    nav = notice_for(code, base).notice_number
    if position == 0:
        return  # the aux digit is fixed to 3: checked by shape, not by the check digits
    wrong = nav[:position] + str((int(nav[position]) + delta) % 10) + nav[position + 1:]
    assert not is_valid_notice_number(wrong)


@given(st.text(max_size=20))
def test_garbage_is_refused_with_a_typed_error(text: str) -> None:
    if is_valid_notice_number(text):
        assert text.isdigit() and len(text) == 18
        return
    with pytest.raises(ValidationFailed):
        parse_notice_number(text)


@pytest.mark.parametrize("nav", ["047000000000000161", "34700000000000016", "3470000000000001xx"])
def test_legacy_or_malformed_numbers_refused(nav: str) -> None:
    assert not is_valid_notice_number(nav)


def test_bounds() -> None:
    with pytest.raises(ValidationFailed):
        notice_for("4", 1)
    with pytest.raises(ValidationFailed):
        notice_for("47", 10**13)
    with pytest.raises(ValidationFailed):
        notice_for("47", -1)
    assert check_digits("00", "0000000000000") == f"{3 * 10**15 % 93:02d}"
