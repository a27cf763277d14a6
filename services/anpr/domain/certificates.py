"""The certificate catalogue and its rules: who may ask for what, what ANPR will certify, stamp duty.

Why: the catalogue is ANPR's own (tables/Tipo_di_certificato.csv, copied verbatim into
services/anpr/resources/tables from specs/anpr/tables). Stamp duty is €16.00 unless the requester
states an exemption from tables/Esenzione_bollo.csv; code 99 ("altro motivo") needs a description
of at most 256 characters (the WS 6001 XSD's `descrizioneEsenzioneBollo`). Certifiability follows
tables/Motivi_di_non_certificabilita.csv.
"""

from __future__ import annotations

import csv
import hashlib
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from services.anpr.domain.errors import CertificateNotAllowed, NotCertifiable
from sportello.errors import ValidationFailed

TABLES = Path(__file__).resolve().parent.parent / "resources" / "tables"
STAMP_DUTY_CENTS = 1600
OTHER_EXEMPTION = 99
MAX_EXEMPTION_DESCRIPTION = 256

# Our policy on top of ANPR's table (documented, one place): a citizen online may obtain for
# themself any current certificate; historical ones (6, 9, 20) need archive research and the death
# certificate (2) concerns someone else, so those are issued at the counter only.
COUNTER_ONLY = frozenset({2, 6, 9, 20})
# Certifiability 1 (partial): ANPR certifies only residence and family status.
RESIDENCE_AND_FAMILY = frozenset({8, 9, 10, 12, 14, 15, 16, 20})


@dataclass(frozen=True)
class CertificateType:
    id: int
    description: str
    online: bool

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "description": self.description, "online": self.online}


@dataclass(frozen=True)
class Exemption:
    id: int
    description: str
    waives_fees: bool


def _rows(name: str) -> list[dict[str, str]]:
    with (TABLES / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@cache
def catalogue() -> dict[int, CertificateType]:
    types = {}
    for row in _rows("Tipo_di_certificato.csv"):
        type_id = int(row["ID"])
        types[type_id] = CertificateType(type_id, "Certificato " + row["DESCRIZIONE"].strip(),
                                         type_id not in COUNTER_ONLY)
    return types


@cache
def exemptions() -> dict[int, Exemption]:
    return {int(r["ID"]): Exemption(int(r["ID"]), r["DESCRIZIONE"].strip(),
                                    r["ESENZIONE DIRITTO DI SEGRETERIA"].strip().upper() == "SI")
            for r in _rows("Esenzione_bollo.csv")}


@cache
def certifiability_reasons() -> dict[int, str]:
    return {int(r["ID"]): r["DESCRIZIONE"].strip() for r in _rows("Motivi_di_non_certificabilita.csv")}


def certificate_type(type_id: int) -> CertificateType:
    try:
        return catalogue()[int(type_id)]
    except (KeyError, TypeError, ValueError):
        raise ValidationFailed(f"unknown certificate type {type_id!r}; see ANPR's Tipo_di_certificato") from None


@dataclass(frozen=True)
class StampDuty:
    """What the certificate costs in stamp duty, and why not when exempt."""

    amount_cents: int
    exemption: int | None = None
    exemption_description: str | None = None

    @property
    def due(self) -> bool:
        return self.amount_cents > 0


def stamp_duty(exemption: int | None, description: str | None = None) -> StampDuty:
    """€16.00, or nothing with a stated exemption from ANPR's table (99 needs its description)."""
    if exemption is None:
        return StampDuty(STAMP_DUTY_CENTS)
    table = exemptions()
    try:
        code = int(exemption)
    except (TypeError, ValueError):
        raise ValidationFailed("the exemption must be a code from ANPR's Esenzione_bollo table") from None
    if code not in table:
        raise ValidationFailed(f"unknown stamp-duty exemption {code}; see ANPR's Esenzione_bollo table")
    text = (description or "").strip()
    if code == OTHER_EXEMPTION:
        if not text:
            raise ValidationFailed("exemption 99 (altro motivo) needs its description")
        if len(text) > MAX_EXEMPTION_DESCRIPTION:
            raise ValidationFailed(f"the exemption description must be at most {MAX_EXEMPTION_DESCRIPTION} characters")
        return StampDuty(0, code, text)
    return StampDuty(0, code, None)


def check_requester(type_id: int, *, for_self: bool, at_counter: bool) -> CertificateType:
    """Who may request which: online only for oneself and only the types our policy allows."""
    kind = certificate_type(type_id)
    if at_counter:
        return kind
    if not for_self:
        raise CertificateNotAllowed("online, a citizen may request certificates about themself only")
    if not kind.online:
        raise CertificateNotAllowed(f"{kind.description} is issued at the counter only")
    return kind


def check_certifiable(type_id: int, certifiability: int, *, at_counter: bool) -> None:
    """ANPR's certifiability code (Motivi_di_non_certificabilita) against the type requested."""
    reason = certifiability_reasons().get(certifiability, "unknown")
    if certifiability in (0, 3):
        raise NotCertifiable(f"ANPR: {reason}")
    if certifiability == 1 and type_id not in RESIDENCE_AND_FAMILY:
        raise NotCertifiable(f"ANPR: {reason}")
    if certifiability == 4 and not at_counter:
        raise NotCertifiable(f"ANPR: {reason} — the guardian requests it at the counter")


_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def verification_code() -> str:
    """A 16-character code (80 bits) in groups of four, plus nothing personal."""
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def normalise_code(code: str) -> str:
    cleaned = "".join(ch for ch in (code or "").upper() if ch.isalnum())
    if len(cleaned) != 16 or any(ch not in _CODE_ALPHABET for ch in cleaned):
        raise ValidationFailed("a verification code has 16 letters and digits")
    return "-".join(cleaned[i:i + 4] for i in range(0, 16, 4))


def document_hash(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()


def qr_svg(url: str) -> str:
    """The QR code of the verification URL, as SVG (segno)."""
    import io

    import segno

    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", xmldecl=False, scale=4)
    return buffer.getvalue().decode("utf-8")
