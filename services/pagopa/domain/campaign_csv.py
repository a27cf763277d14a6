"""CSV campaigns (e.g. the yearly TARI): the file's shape and each row's rules, as plain Python.

Why: a back office exports the list from a spreadsheet, so we accept what spreadsheets write —
`;` or `,` separators, a BOM, Italian or English column names, amounts as `123,45`, `123.45`
or `1.234,56`, dates as `2026-12-31` or `31/12/2026` — and judge every row on its own: a bad
row gets its error and never stops the good ones. A file that is not a campaign at all (empty,
no header, a required column missing, too big) is refused whole, with a clear message.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from services.pagopa.domain.positions import MAX_AMOUNT_CENTS, Debtor, PositionRequest, Transfer
from sportello.errors import ValidationFailed

MAX_ROWS = 50_000
MAX_BYTES = 8 * 1024 * 1024
MAX_ERROR_CHARS = 300

# canonical column -> accepted header names (case-insensitive, spaces/dashes as underscores)
COLUMNS: dict[str, tuple[str, ...]] = {
    "fiscal_code": ("fiscal_code", "codice_fiscale", "cf"),
    "name": ("name", "full_name", "nominativo", "nome"),
    "amount": ("amount", "importo"),
    "due_date": ("due_date", "scadenza", "data_scadenza"),
    "description": ("description", "causale", "descrizione"),
    "iban": ("iban",),
}
REQUIRED = ("fiscal_code", "name", "amount", "due_date", "description")
_AMOUNT = re.compile(r"^\d+(?:[.,]\d{1,2})?$")


@dataclass(frozen=True)
class CampaignRow:
    """One data row: `number` counts data rows from 1 (the header is not a row)."""

    number: int
    request: PositionRequest | None
    error: str | None


def row_reference(campaign_id: str, number: int) -> str:
    """The idempotency key of the position a row makes: campaign id + row number."""
    return f"{campaign_id}:{number}"


def parse_amount(raw: str) -> int:
    """Euro text -> cents. `1.234,56` and `1,234.56` are understood; `1.234` (ambiguous) is not."""
    text = raw.strip().replace("€", "").replace(" ", "").replace("\u00a0", "")
    if "," in text and "." in text:
        decimal_sep = "," if text.rfind(",") > text.rfind(".") else "."
        thousands = "." if decimal_sep == "," else ","
        whole, _, cents = text.rpartition(decimal_sep)
        if not re.fullmatch(r"\d{1,3}(?:" + re.escape(thousands) + r"\d{3})*", whole):
            raise ValidationFailed("amount is not a number of euro")
        text = whole.replace(thousands, "") + "." + cents
    if not _AMOUNT.match(text):
        raise ValidationFailed("amount must be euro with at most 2 decimals (e.g. 123,45)")
    try:
        cents_value = int((Decimal(text.replace(",", ".")) * 100).to_integral_exact())
    except InvalidOperation:
        raise ValidationFailed("amount is not a number of euro") from None
    if not 1 <= cents_value <= MAX_AMOUNT_CENTS:
        raise ValidationFailed("amount must be more than 0 and at most 99999999,99 euro")
    return cents_value


def parse_date(raw: str) -> date:
    text = raw.strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValidationFailed("due date must be YYYY-MM-DD or DD/MM/YYYY")


def _canonical(header: str) -> str | None:
    name = re.sub(r"[\s\-]+", "_", header.strip().lower())
    for column, aliases in COLUMNS.items():
        if name in aliases:
            return column
    return None


def _reader(text: str) -> csv.reader:  # type: ignore[valid-type]
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") >= first.count(",") and ";" in first else ","
    return csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)


def parse_campaign(data: bytes | str, *, campaign_id: str, today: date, default_iban: str,
                   allowed_ibans: tuple[str, ...]) -> list[CampaignRow]:
    """Every data row, validated into a `campaign` PositionRequest or carrying its error.

    Raises ValidationFailed for a file that is not a campaign (the caller answers 400).
    """
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise ValidationFailed(f"the CSV is larger than {MAX_BYTES // (1024 * 1024)} MB")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationFailed("the CSV must be UTF-8 text") from None
    else:
        if len(data) > MAX_BYTES:
            raise ValidationFailed(f"the CSV is larger than {MAX_BYTES // (1024 * 1024)} MB")
        text = data.removeprefix("\ufeff")
    if not text.strip():
        raise ValidationFailed("the CSV is empty")
    if "\x00" in text:  # no cell of ours may hold it, and PostgreSQL text cannot
        raise ValidationFailed("the CSV must not contain NUL characters")
    try:
        records: list[list[str]] = list(_reader(text))
    except csv.Error:
        raise ValidationFailed("the CSV is not well formed (unbalanced quotes?)") from None
    records = [r for r in records if any(cell.strip() for cell in r)]
    if not records:  # separators only, e.g. ";" (found by the gateway fuzz: it was an IndexError, a 500)
        raise ValidationFailed("the CSV is empty")
    header = [_canonical(h) for h in records[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValidationFailed("the CSV header lacks column(s): " + ", ".join(missing)
                               + " (expected: fiscal_code, name, amount, due_date, description[, iban])")
    if len({h for h in header if h}) != len([h for h in header if h]):
        raise ValidationFailed("the CSV header names a column twice")
    body = records[1:]
    if not body:
        raise ValidationFailed("the CSV has a header but no rows")
    if len(body) > MAX_ROWS:
        raise ValidationFailed(f"a campaign has at most {MAX_ROWS} rows")
    index = {name: i for i, name in enumerate(header) if name}
    rows = []
    for number, record in enumerate(body, start=1):
        if len(record) != len(header):
            rows.append(CampaignRow(number, None, f"row has {len(record)} fields, the header {len(header)}"))
            continue
        values = {name: record[i] for name, i in index.items()}
        try:
            rows.append(CampaignRow(number, _request(values, campaign_id, number, today, default_iban,
                                                     allowed_ibans), None))
        except ValidationFailed as exc:
            rows.append(CampaignRow(number, None, exc.detail[:MAX_ERROR_CHARS]))
    return rows


def _request(values: dict[str, str], campaign_id: str, number: int, today: date, default_iban: str,
             allowed_ibans: tuple[str, ...]) -> PositionRequest:
    description = values["description"].strip()
    if not 1 <= len(description) <= 140:
        raise ValidationFailed("description must be 1-140 characters")
    amount = parse_amount(values["amount"])
    iban = (values.get("iban") or "").strip() or default_iban
    request = PositionRequest(
        description=description, amount_cents=amount, due_date=parse_date(values["due_date"]),
        debtor=Debtor.of(values["fiscal_code"], values["name"]),
        transfers=[Transfer(1, amount, description, iban=iban)],
        purpose="campaign", reference=row_reference(campaign_id, number), campaign_id=campaign_id,
    )
    return request.validated(today=today, allowed_ibans=allowed_ibans)
