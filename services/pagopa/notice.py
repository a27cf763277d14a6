"""The pagoPA payment notice (avviso di pagamento) as PDF, with its QR code; one or many per file.

Why: citizens pay at a PSP, a bank, a tobacconist or in an app by framing the QR code or typing
the notice number; the PDF carries both, plus who is owed what by when. The QR text is
`PAGOPA|002|<notice number>|<creditor fiscal code>|<amount in cents>` (domain.iuv.qr_payload).
Rendered with reportlab (layout) and segno (QR code, error correction M as the notice asks).
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import segno
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from services.pagopa.domain.iuv import qr_payload
from services.pagopa.domain.positions import PaymentPosition


def euros(cents: int) -> str:
    whole, rest = divmod(cents, 100)
    return f"{whole:,}".replace(",", ".") + f",{rest:02d} €"


def grouped(notice_number: str) -> str:
    """Printed in groups of four, as on the official notice: 3470 0000 0000 0016 1."""
    return " ".join(notice_number[i:i + 4] for i in range(0, len(notice_number), 4))


QUIET_ZONE = 4  # modules of white around the code, as ISO/IEC 18004 asks


def _draw_qr(canvas: Canvas, text: str, x: float, y: float, size: float) -> None:
    """The QR code as vector squares (one rectangle per run of dark modules in a row).

    Why not an image: encoding a PNG and having reportlab decode it again was most of the cost of
    a notice (bench/notices.py), and vectors print sharp at any size.
    """
    matrix = segno.make(text, error="m", micro=False).matrix
    modules = len(matrix) + 2 * QUIET_ZONE
    unit = size / modules
    canvas.saveState()
    canvas.setFillColorRGB(0, 0, 0)
    for row_index, row in enumerate(matrix):
        top = y + size - (row_index + QUIET_ZONE + 1) * unit
        column = 0
        while column < len(row):
            if not row[column]:
                column += 1
                continue
            run = column
            while run < len(row) and row[run]:
                run += 1
            canvas.rect(x + (column + QUIET_ZONE) * unit, top, (run - column) * unit, unit, stroke=0, fill=1)
            column = run
    canvas.restoreState()


def _page(canvas: Canvas, position: PaymentPosition) -> None:
    r = position.request
    _width, height = A4
    left = 20 * mm
    y = height - 25 * mm
    canvas.setFont("Helvetica-Bold", 16)
    canvas.drawString(left, y, "AVVISO DI PAGAMENTO pagoPA")
    canvas.setFont("Helvetica", 10)
    y -= 12 * mm
    lines = [
        ("Ente creditore", f"{position.company_name} (C.F. {position.payee_fiscal_code})"),
        ("Oggetto del pagamento", r.description),
        ("Destinatario", f"{r.debtor.full_name} (C.F. {r.debtor.fiscal_code})"),
        ("Importo", euros(r.amount_cents)),
        ("Entro il", r.due_date.strftime("%d/%m/%Y")),
        ("Codice avviso", grouped(position.notice_number)),
        ("Codice IUV", position.iuv),
    ]
    for label, value in lines:
        canvas.setFont("Helvetica-Bold", 10)
        canvas.drawString(left, y, label)
        canvas.setFont("Helvetica", 10)
        canvas.drawString(left + 50 * mm, y, value)
        y -= 8 * mm
    text = qr_payload(position.notice_number, position.payee_fiscal_code, r.amount_cents)
    size = 45 * mm
    _draw_qr(canvas, text, left, y - size - 5 * mm, size)
    canvas.setFont("Helvetica", 8)
    canvas.drawString(left + size + 8 * mm, y - 15 * mm,
                      "Inquadra il codice QR con la tua app di pagamento o usa il codice avviso.")
    canvas.drawString(left + size + 8 * mm, y - 20 * mm, "Puoi pagare presso banche, uffici postali, PSP e app IO.")
    canvas.showPage()


def render_notices(positions: Iterable[PaymentPosition]) -> bytes:
    """One PDF, one page per position (single notice = a list of one)."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    canvas.setTitle("Avviso di pagamento pagoPA")
    canvas.setCreator("Sportello")
    count = 0
    for position in positions:
        _page(canvas, position)
        count += 1
    if count == 0:
        raise ValueError("no positions to render")
    canvas.save()
    return out.getvalue()
