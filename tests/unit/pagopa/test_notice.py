from __future__ import annotations

import io

import pypdf
import pytest

from services.pagopa.domain.iuv import notice_for, qr_payload
from services.pagopa.domain.positions import PaymentPosition
from services.pagopa.notice import euros, grouped, render_notices
from sportello.errors import ValidationFailed
from tests.support.pdf import qr_codes_per_page
from tests.unit.pagopa.support import request


def position(n: int, amount: int = 1600) -> PaymentPosition:
    number = notice_for("47", n)
    return PaymentPosition(id=f"p{n}", tenant="cremona", iupd=f"x-{n}", iuv=number.iuv,
                           notice_number=number.notice_number, payee_fiscal_code="00297960197",
                           company_name="Comune di Cremona", request=request(amount=amount))


def decoded_qr_codes(pdf: bytes) -> list[list[str]]:
    return qr_codes_per_page(pdf)


def test_qr_payload() -> None:
    nav = notice_for("47", 1).notice_number
    assert qr_payload(nav, "00297960197", 1600) == f"PAGOPA|002|{nav}|00297960197|1600"
    assert qr_payload(nav, "00297960197", 5).endswith("|05")
    with pytest.raises(ValidationFailed):
        qr_payload("047000000000000161", "00297960197", 1600)
    with pytest.raises(ValidationFailed):
        qr_payload(nav, "0029796019", 1600)


def test_single_notice_carries_the_qr_code_and_the_data() -> None:
    p = position(1, 123456)
    pdf = render_notices([p])
    assert pdf.startswith(b"%PDF")
    assert decoded_qr_codes(pdf) == [[f"PAGOPA|002|{p.notice_number}|00297960197|123456"]]
    text = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert grouped(p.notice_number) in text and "1.234,56 €" in text and "Comune di Cremona" in text
    assert "31/01/2099" in text


def test_bulk_notices_one_page_each() -> None:
    batch = [position(n, 1000 + n) for n in range(1, 4)]
    codes = decoded_qr_codes(render_notices(batch))
    assert codes == [[f"PAGOPA|002|{p.notice_number}|00297960197|{1000 + n}"] for n, p in enumerate(batch, 1)]
    with pytest.raises(ValueError):
        render_notices([])


def test_formatting() -> None:
    assert euros(1600) == "16,00 €" and euros(5) == "0,05 €" and euros(123456789) == "1.234.567,89 €"
    assert grouped("347000000000000161") == "3470 0000 0000 0001 61"
