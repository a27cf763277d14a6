"""ANPR's PDND e-services C001, C003, C030: where they live, what they are asked, what they answer.

Why: the three share the E002 envelope (`POST .../anpr-service-e002`, specs/anpr) but differ in
`idOperazioneClient` (C001: numeric and increasing — ANPR answers an old id with the old answer
and a lower new id with an error; C003/C030: alphanumeric, timestamp-based) and in what
`datiSoggetto` holds. The audience (ModI `aud`) is the e-service's name on the PDND card, which
differs from the URL called (`MinInternoPortaANPR` vs `MinInternoPortaANPR-PDND`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.anpr.domain.errors import AnprRefused, ReasonRequired, ResidentNotFound


@dataclass(frozen=True)
class EService:
    code: str
    segment: str  # the path segment of the e-service, as published (C001 has an en dash)
    numeric_operation_ids: bool
    default_daily_quota: int


ESERVICES: dict[str, EService] = {
    "C001": EService("C001", "C001\u2013servizioNotifica", True, 2000),
    "C003": EService("C003", "C003-servizioVerificaDichGeneralita", False, 1000),
    "C030": EService("C030", "C030-servizioAccertamentoIdUnicoNazionale", False, 5000),
}
OPERATION_PATH = "/anpr-service-e002"
MAX_REASON_LENGTH = 200


def eservice(code: str) -> EService:
    try:
        return ESERVICES[code]
    except KeyError:
        raise ValueError(f"unknown ANPR e-service {code!r}") from None


def endpoint(base_url: str, service: EService) -> str:
    """The URL called: `<base>/MinInternoPortaANPR-PDND/<segment>/v1/anpr-service-e002`."""
    return f"{base_url.rstrip('/')}/MinInternoPortaANPR-PDND/{service.segment}/v1{OPERATION_PATH}"


def audience(audience_base: str, service: EService) -> str:
    """The ModI audience: `<audience base>/<segment>/v1` — without `-PDND`, without the operation."""
    return f"{audience_base.rstrip('/')}/{service.segment}/v1"


def operation_id(service: EService, *, last_numeric: int | None = None, now: float | None = None) -> str:
    """The next `idOperazioneClient`: for C001 one more than the last sent; else a timestamp id."""
    if service.numeric_operation_ids:
        return str((last_numeric or 0) + 1)
    stamp = int((now if now is not None else time.time()) * 1_000_000)
    return f"SPT{stamp}"


def check_reason(reason: str | None) -> str:
    """`motivoRichiesta` is mandatory: the protocol/file number the look-up is for."""
    cleaned = (reason or "").strip()
    if not cleaned:
        raise ReasonRequired("state the reason (protocol or file number) for the look-up")
    if len(cleaned) > MAX_REASON_LENGTH:
        raise ReasonRequired(f"the reason must be at most {MAX_REASON_LENGTH} characters")
    return cleaned


def build_request(service: EService, *, operation: str, fiscal_code: str, reason: str,
                  reference_date: date, verify: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `RichiestaE002` body."""
    body: dict[str, Any] = {
        "idOperazioneClient": operation,
        "criteriRicerca": {"codiceFiscale": fiscal_code},
        "datiRichiesta": {
            "dataRiferimentoRichiesta": reference_date.isoformat(),
            "motivoRichiesta": check_reason(reason),
            "casoUso": service.code,
        },
    }
    if verify is not None:
        body["verifica"] = {"generalita": verify}
    return body


def raise_for_errors(body: dict[str, Any]) -> None:
    """Turn a `RispostaKO` into a typed error (codes and texts kept, no personal data)."""
    errors = body.get("listaErrori") or []
    if not errors:
        raise AnprRefused("ANPR refused the request without saying why")
    codes = [str(e.get("codiceErroreAnomalia", "?")) for e in errors]
    texts = "; ".join(f"{e.get('codiceErroreAnomalia', '?')}: {e.get('testoErroreAnomalia', '')}".strip()
                      for e in errors)
    if any(code in NOT_FOUND_CODES for code in codes):
        raise ResidentNotFound(texts)
    raise AnprRefused(texts)


NOT_FOUND_CODES = frozenset({"EN122"})  # "nessun soggetto trovato" in ANPR's E002 answers


def subjects(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = (body.get("listaSoggetti") or {}).get("datiSoggetto") or []
    if not found:
        raise ResidentNotFound("ANPR found no subject for these criteria")
    return list(found)


@dataclass(frozen=True)
class Resident:
    """What C001 tells about a resident (generalità and residence)."""

    id_anpr: str | None
    fiscal_code: str
    surname: str
    name: str
    sex: str | None
    birth_date: str | None
    birth_place: str | None
    address: str | None
    municipality: str | None
    residence_since: str | None
    certifiability: int | None = None  # Motivi_di_non_certificabilita, when ANPR tells it (else 6001 decides)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_c001(body: dict[str, Any]) -> Resident:
    subject = subjects(body)[0]
    generalita = subject.get("generalita") or {}
    residence = (subject.get("residenza") or [{}])[0]
    address = residence.get("indirizzo") or {}
    toponimo = address.get("toponimo") or {}
    civico = address.get("numeroCivico") or {}
    street = " ".join(p for p in (toponimo.get("specie"), toponimo.get("denominazioneToponimo"),
                                  civico.get("numero")) if p) or None
    birth = (generalita.get("luogoNascita") or {}).get("comune") or {}
    return Resident(
        id_anpr=(subject.get("identificativi") or {}).get("idANPR"),
        fiscal_code=(generalita.get("codiceFiscale") or {}).get("codFiscale", ""),
        surname=generalita.get("cognome", ""),
        name=generalita.get("nome", ""),
        sex=generalita.get("sesso"),
        birth_date=generalita.get("dataNascita"),
        birth_place=birth.get("nomeComune"),
        address=street,
        municipality=(address.get("comune") or {}).get("nomeComune"),
        residence_since=residence.get("dataDecorrenzaResidenza"),
        certifiability=_certifiability(subject),
    )


CERTIFIABILITY_KEY = "soggettoCertificabile"  # as in WS 6001's tipoAttributiSoggetto


def _certifiability(subject: dict[str, Any]) -> int | None:
    """The subject's certifiability, if ANPR adds it to `infoSoggettoEnte` (key `soggettoCertificabile`)."""
    for item in subject.get("infoSoggettoEnte") or []:
        if item.get("chiave") == CERTIFIABILITY_KEY:
            text = str(item.get("valoreTesto") or "").strip()
            return int(text) if text.isdigit() else None
    return None


def parse_c030(body: dict[str, Any]) -> str:
    id_anpr = (subjects(body)[0].get("identificativi") or {}).get("idANPR")
    if not id_anpr:
        raise ResidentNotFound("ANPR returned no national id")
    return str(id_anpr)


def parse_c003(body: dict[str, Any]) -> dict[str, str]:
    """Each verified item: `chiave` -> S (matches), N (does not), A (not applicable)."""
    info = subjects(body)[0].get("infoSoggettoEnte") or []
    return {str(item.get("chiave") or item.get("id")): str(item.get("valore")) for item in info}
