"""What a scanner sees in a PDF: each page rendered to pixels (pdfium), its QR codes read (zxing-cpp)."""

from __future__ import annotations

import pypdfium2 as pdfium
import zxingcpp


def qr_codes_per_page(pdf: bytes, *, scale: float = 2.0) -> list[list[str]]:
    document = pdfium.PdfDocument(pdf)
    try:
        pages = []
        for page in document:
            image = page.render(scale=scale).to_pil().convert("L")
            pages.append([r.text for r in zxingcpp.read_barcodes(image) if r.format == zxingcpp.BarcodeFormat.QRCode])
        return pages
    finally:
        document.close()
