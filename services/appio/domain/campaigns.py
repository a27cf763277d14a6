"""Campaign recipients from a CSV upload or a list: validated, normalised, de-duplicated.

Why: one bad line must not silently drop a citizen or fail half a campaign later; the whole
upload is refused with the line numbers at fault, and a citizen listed twice gets one message.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from services.appio.domain.errors import InvalidMessage
from services.appio.domain.messages import normalise_fiscal_code

MAX_RECIPIENTS = 200_000
_HEADERS = {"fiscal_code", "codice_fiscale", "codicefiscale", "cf"}


def parse_csv(text: str) -> list[str]:
    """First column of each non-empty row; an optional header row naming the fiscal code column."""
    if "\x00" in text:  # PostgreSQL text cannot hold it, and no fiscal code contains it
        raise InvalidMessage("the CSV must not contain NUL characters")
    rows = [row for row in csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=_delimiter(text)) if row
            and any(cell.strip() for cell in row)]
    if rows and rows[0][0].strip().lower() in _HEADERS:
        rows = rows[1:]
    return [row[0] for row in rows]


def _delimiter(text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return ";" if first.count(";") > first.count(",") else ","


def recipients(values: Iterable[str]) -> tuple[list[str], int]:
    """Normalised unique fiscal codes in their first-seen order, and how many duplicates were dropped."""
    seen: dict[str, None] = {}
    bad: list[int] = []
    total = 0
    for position, value in enumerate(values, start=1):
        total += 1
        try:
            seen.setdefault(normalise_fiscal_code(str(value)), None)
        except InvalidMessage:
            bad.append(position)
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise InvalidMessage(f"recipients: not a valid fiscal code at position(s) {shown}")
    if not seen:
        raise InvalidMessage("recipients: the list is empty")
    if len(seen) > MAX_RECIPIENTS:
        raise InvalidMessage(f"recipients: at most {MAX_RECIPIENTS} per campaign")
    return list(seen), total - len(seen)
