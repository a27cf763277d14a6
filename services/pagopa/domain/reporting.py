"""The Nodo's reporting-flow service for creditor institutions (`nodeForPa`): the SOAP messages.

Why: the money a PSP settles reaches the Comune with a reporting flow (FlussoRiversamento); a
Comune asks the Nodo which flows it has (`nodoChiediElencoFlussiRendicontazione`) and fetches each
(`nodoChiediFlussoRendicontazione`, the flow XML base64 inside). Both sides of that exchange — the
requests our adapter sends, the answers our Nodo twin gives — are encoded and checked here with
pagoPA's own nodeForPa.xsd (verbatim in services/pagopa/resources/nodo). Pure: no HTTP, no nameko.

Faults are Nodo (`PPT_*`) codes inside the answer element (`ctRisposta.fault`), not SOAP Faults.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any
from xml.etree import ElementTree

import xmlschema

from services.pagopa.domain import nodo

XSD = nodo.RESOURCES / "wsdl" / "xsd" / "nodeForPa.xsd"
NAMESPACE = "http://ws.pagamenti.telematici.gov/"
LIST = "nodoChiediElencoFlussiRendicontazione"
FETCH = "nodoChiediFlussoRendicontazione"
MAX_FLOW_BYTES = 20 * 1024 * 1024  # a city's busiest day is far below; more is refused unread
MAX_MESSAGE_BYTES = MAX_FLOW_BYTES * 4 // 3 + 64 * 1024  # the flow travels base64 inside the answer
OPERATIONS: dict[str, tuple[str, str]] = {LIST: (LIST, f"{LIST}Risposta"), FETCH: (FETCH, f"{FETCH}Risposta")}

# The Nodo's fault codes for these two operations (pagoPA "faultcode Nodo", those that apply).
FAULTS: dict[str, str] = {
    "PPT_SINTASSI_XSD": "Errore di sintassi XSD.",
    "PPT_AUTENTICAZIONE": "Errore di autenticazione.",
    "PPT_INTERMEDIARIO_PA_SCONOSCIUTO": "Identificativo intermediario non riconosciuto.",
    "PPT_STAZIONE_INT_PA_SCONOSCIUTA": "Identificativo stazione non riconosciuto.",
    "PPT_DOMINIO_SCONOSCIUTO": "Identificativo dominio non riconosciuto.",
    "PPT_AUTORIZZAZIONE": "Il richiedente non ha i diritti per l'operazione.",
    "PPT_ID_FLUSSO_SCONOSCIUTO": "Identificativo flusso sconosciuto.",
    "PPT_SYSTEM_ERROR": "Errore generico.",
}


class NodoFault(Exception):
    """The Nodo answered with a `PPT_*` fault bean."""

    def __init__(self, code: str, description: str | None = None, *, operation: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.description = description
        self.operation = operation  # known when a request to answer breaks the schema


@dataclass(frozen=True)
class Credentials:
    """Who asks: the Comune's broker and station (and the station's password on the Nodo)."""

    id_broker_pa: str
    id_station: str
    password: str
    id_domain: str | None = None  # the creditor institution (its fiscal code); all of the station's if None


@dataclass(frozen=True)
class FlowRef:
    flow_id: str
    flow_date: datetime


@cache
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def _encode(element: str, document: dict[str, Any]) -> ElementTree.Element:
    return nodo.encode_with(schema(), element, document)


def _decode(element: ElementTree.Element, name: str) -> dict[str, Any]:
    return nodo.decode_with(schema(), element, name)


def envelope(element: ElementTree.Element) -> bytes:
    ElementTree.register_namespace("nfpa", NAMESPACE)
    return nodo.envelope(element)


def _credentials(credentials: Credentials) -> dict[str, Any]:
    document: dict[str, Any] = {"identificativoIntermediarioPA": credentials.id_broker_pa,
                                "identificativoStazioneIntermediarioPA": credentials.id_station,
                                "password": credentials.password}
    if credentials.id_domain:
        document["identificativoDominio"] = credentials.id_domain
    return document


# -- the creditor institution's side (our adapter) -------------------------------------------------
def list_request(credentials: Credentials) -> bytes:
    return envelope(_encode(LIST, _credentials(credentials)))


def fetch_request(credentials: Credentials, flow_id: str) -> bytes:
    return envelope(_encode(FETCH, {**_credentials(credentials), "identificativoFlusso": flow_id}))


def _answer(operation: str, payload: bytes) -> dict[str, Any]:
    """The decoded answer element; NodoFault when it carries a fault; ValueError when it is not one."""
    try:
        element = nodo.body_element(payload, limit=MAX_MESSAGE_BYTES)
    except nodo.NotSoap as exc:
        raise ValueError(str(exc)) from None
    expected = OPERATIONS[operation][1]
    if element.tag != f"{{{NAMESPACE}}}{expected}":
        raise ValueError(f"expected {expected}, got {element.tag}")
    decoded = _decode(element, expected)
    fault = decoded.get("fault")
    if fault:
        raise NodoFault(str(fault.get("faultCode")), fault.get("description"))
    return decoded


def read_list_response(payload: bytes) -> list[FlowRef]:
    decoded = _answer(LIST, payload)
    listed = (decoded.get("elencoFlussiRendicontazione") or {}).get("idRendicontazione") or []
    out = []
    for item in listed:
        if not item:  # nillable entries carry nothing
            continue
        when = datetime.fromisoformat(str(item["dataOraFlusso"]))
        out.append(FlowRef(str(item["identificativoFlusso"]), when if when.tzinfo else when.replace(tzinfo=nodo.ROME)))
    return out


def read_fetch_response(payload: bytes) -> bytes:
    """The flow XML (still to be validated against FlussoRiversamento by whoever imports it)."""
    decoded = _answer(FETCH, payload)
    encoded = decoded.get("xmlRendicontazione")
    if not encoded:
        raise ValueError("the answer carries no xmlRendicontazione")
    try:
        return base64.b64decode(str(encoded), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("xmlRendicontazione is not base64") from None


# -- the Nodo's side (our twin) ----------------------------------------------------------------------
def read_request(payload: bytes) -> tuple[str, dict[str, Any]]:
    """(operation, decoded request). nodo.NotSoap when it is not a nodeForPa request; NodoFault
    PPT_SINTASSI_XSD when the element breaks the schema."""
    element = nodo.body_element(payload)
    name = element.tag.split("}", 1)[-1]
    if not element.tag.startswith(f"{{{NAMESPACE}}}") or name not in OPERATIONS:
        raise nodo.NotSoap(f"{name} is not a nodeForPa request")
    try:
        return name, _decode(element, name)
    except ValueError as exc:
        raise NodoFault("PPT_SINTASSI_XSD", str(exc), operation=name) from None


def fault_response(operation: str, code: str, description: str | None = None) -> bytes:
    bean: dict[str, Any] = {"faultCode": code, "faultString": FAULTS.get(code, FAULTS["PPT_SYSTEM_ERROR"]),
                            "id": "NodoDeiPagamentiSPC"}
    if description:
        bean["description"] = description[:1000]
    return envelope(_encode(OPERATIONS[operation][1], {"fault": bean}))


def list_response(flows: list[FlowRef]) -> bytes:
    items = [{"identificativoFlusso": f.flow_id, "dataOraFlusso": f.flow_date.replace(microsecond=0).isoformat()}
             for f in flows]
    listing: dict[str, Any] = {"totRestituiti": len(items)}
    if items:
        listing["idRendicontazione"] = items
    return envelope(_encode(OPERATIONS[LIST][1], {"elencoFlussiRendicontazione": listing}))


def fetch_response(flow_xml: bytes) -> bytes:
    return envelope(_encode(OPERATIONS[FETCH][1], {"xmlRendicontazione": base64.b64encode(flow_xml).decode()}))


# -- the flow itself (FlussoRiversamento 1.0.4) --------------------------------------------------------
@dataclass(frozen=True)
class FlowPayment:
    """One line of a flow: the money of one receipt's transfer, as the PSP settled it."""

    iuv: str
    receipt_id: str  # identificativoUnivocoRiscossione
    amount_cents: int
    outcome_code: str  # 0 paid, 3 revoked, 4 stand-in, 8 stand-in without RPT, 9 paid without RPT
    paid_on: str  # YYYY-MM-DD
    index: int = 1


def flow_xml(*, flow_id: str, flow_date: datetime, settlement_id: str, settlement_date: str, psp_id: str,
             receiver_fiscal_code: str, payments: list[FlowPayment]) -> bytes:
    """A FlussoRiversamento, encoded and validated against the XSD (ValueError if it breaks it)."""
    document: dict[str, Any] = {
        "versioneOggetto": "1.0", "identificativoFlusso": flow_id,
        "dataOraFlusso": flow_date.replace(microsecond=0, tzinfo=None).isoformat(),
        "identificativoUnivocoRegolamento": settlement_id, "dataRegolamento": settlement_date,
        "istitutoMittente": {"identificativoUnivocoMittente": {"tipoIdentificativoUnivoco": "B",
                                                                "codiceIdentificativoUnivoco": psp_id}},
        "istitutoRicevente": {"identificativoUnivocoRicevente": {"tipoIdentificativoUnivoco": "G",
                                                                  "codiceIdentificativoUnivoco": receiver_fiscal_code}},
        "numeroTotalePagamenti": Decimal(len(payments)),
        "importoTotalePagamenti": nodo.euros(sum(p.amount_cents for p in payments)),
        "datiSingoliPagamenti": [
            {"identificativoUnivocoVersamento": p.iuv, "identificativoUnivocoRiscossione": p.receipt_id,
             "indiceDatiSingoloPagamento": p.index, "singoloImportoPagato": nodo.euros(p.amount_cents),
             "codiceEsitoSingoloPagamento": p.outcome_code, "dataEsitoSingoloPagamento": p.paid_on}
            for p in payments],
    }
    try:
        element: Any = nodo.flow_schema().elements["FlussoRiversamento"].encode(
            document, validation="strict", namespaces={"": nodo.FLOW_NAMESPACE})
    except xmlschema.XMLSchemaValidationError as exc:
        raise ValueError(f"FlussoRiversamento does not satisfy its XSD: {exc.reason}") from None
    return bytes(ElementTree.tostring(element, encoding="utf-8", xml_declaration=True))
