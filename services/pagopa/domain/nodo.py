"""The Nodo dei Pagamenti SOAP messages of the creditor-institution station (`paForNode`).

Why: the Nodo calls our station (`paVerifyPaymentNotice`, `paGetPaymentV2`, `paSendRTV2`) and
refuses anything that is not exactly its schema; a PSP refuses a notice whose answer is wrong. So
every message — the requests we receive and the replies we send — goes through `xmlschema` with
pagoPA's own XSDs (verbatim in services/pagopa/resources/nodo, checked identical to the specs by a
conformance test). The SOAP 1.1 envelope (document/literal, one body element, soapAction = the
operation name) is built by hand, as for WS 6001 (docs/adr/0008). Pure: no nameko, no database.

Faults: business errors are not SOAP Faults — the reply element carries `outcome KO` and a
`fault` bean whose `faultCode` is one of the `PAA_*` codes below (pagoPA "faultcode EC").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import xmlschema

RESOURCES = Path(__file__).resolve().parent.parent / "resources" / "nodo"
XSD = RESOURCES / "wsdl" / "xsd" / "paForNode.xsd"
FLOW_XSD = RESOURCES / "xsd-common" / "FlussoRiversamento_1_0_4.xsd"
FLOW_NAMESPACE = "http://www.digitpa.gov.it/schemas/2011/Pagamenti/"
NAMESPACE = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_MESSAGE_BYTES = 512 * 1024
ROME = ZoneInfo("Europe/Rome")

# operation (= soapAction) -> (request element, response element)
OPERATIONS: dict[str, tuple[str, str]] = {
    "paVerifyPaymentNotice": ("paVerifyPaymentNoticeReq", "paVerifyPaymentNoticeRes"),
    "paGetPayment": ("paGetPaymentReq", "paGetPaymentRes"),
    "paGetPaymentV2": ("paGetPaymentV2Request", "paGetPaymentV2Response"),
    "paSendRT": ("paSendRTReq", "paSendRTRes"),
    "paSendRTV2": ("paSendRTV2Request", "paSendRTV2Response"),
    "paDemandPaymentNotice": ("paDemandPaymentNoticeRequest", "paDemandPaymentNoticeResponse"),
}
BY_REQUEST = {request: operation for operation, (request, _response) in OPERATIONS.items()}

# PAA_* fault codes (creditor-institution side) with the fault strings pagoPA documents.
FAULTS: dict[str, str] = {
    "PAA_SINTASSI_XSD": "Errore di sintassi XSD.",
    "PAA_SINTASSI_EXTRAXSD": "Errore di sintassi extra XSD.",
    "PAA_ID_DOMINIO_ERRATO": "La PAA non corrisponde al Dominio indicato.",
    "PAA_ID_INTERMEDIARIO_ERRATO": "Identificativo intermediario non corrispondente.",
    "PAA_STAZIONE_INT_ERRATA": "Stazione intermediario non corrispondente.",
    "PAA_PAGAMENTO_SCONOSCIUTO": "Pagamento in attesa risulta sconosciuto all'Ente Creditore.",
    "PAA_PAGAMENTO_SCADUTO": "Pagamento in attesa risulta scaduto all'Ente Creditore.",
    "PAA_PAGAMENTO_ANNULLATO": "Pagamento in attesa risulta annullato all'Ente Creditore.",
    "PAA_PAGAMENTO_DUPLICATO": "Pagamento in attesa risulta concluso all'Ente Creditore.",
    "PAA_PAGAMENTO_IN_CORSO": "Pagamento in attesa risulta in corso all'Ente Creditore.",
    "PAA_RECEIPT_DUPLICATA": "La receipt risulta già ricevuta dall'Ente Creditore.",
    "PAA_SEMANTICA": "Errore semantico.",
    "PAA_SYSTEM_ERROR": "Errore generico.",
}


class StationFault(Exception):
    """A `PAA_*` answer: the reply carries outcome KO and this fault bean."""

    def __init__(self, code: str, description: str | None = None) -> None:
        if code not in FAULTS:
            raise ValueError(f"unknown PAA fault code {code}")
        super().__init__(code)
        self.code = code
        self.description = description


class NotSoap(Exception):
    """The HTTP body is not a SOAP envelope with one paForNode request (answered with a SOAP Fault)."""


@cache
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


@cache
def flow_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(FLOW_XSD))


# -- amounts: the Nodo writes decimal euros with exactly 2 decimals; we keep integer cents -------
def euros(cents: int) -> Decimal:
    return (Decimal(int(cents)) / 100).quantize(Decimal("0.01"))


def cents(amount: Any) -> int:
    value = Decimal(str(amount))
    return int((value * 100).to_integral_value())


# -- envelope ----------------------------------------------------------------------------------
def envelope(body: ElementTree.Element) -> bytes:
    ElementTree.register_namespace("soapenv", SOAP_ENV)
    ElementTree.register_namespace("pafn", NAMESPACE)
    root = ElementTree.Element(f"{{{SOAP_ENV}}}Envelope")
    ElementTree.SubElement(root, f"{{{SOAP_ENV}}}Header")
    ElementTree.SubElement(root, f"{{{SOAP_ENV}}}Body").append(body)
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


def soap_fault(reason: str) -> bytes:
    """A SOAP 1.1 Fault: only for bodies that are not a paForNode request at all."""
    ElementTree.register_namespace("soapenv", SOAP_ENV)
    root = ElementTree.Element(f"{{{SOAP_ENV}}}Envelope")
    fault = ElementTree.SubElement(ElementTree.SubElement(root, f"{{{SOAP_ENV}}}Body"), f"{{{SOAP_ENV}}}Fault")
    ElementTree.SubElement(fault, "faultcode").text = "soapenv:Client"
    ElementTree.SubElement(fault, "faultstring").text = reason
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


def body_element(payload: bytes, limit: int = MAX_MESSAGE_BYTES) -> ElementTree.Element:
    """The one element inside soapenv:Body; NotSoap otherwise."""
    if len(payload) > limit:
        raise NotSoap("message too large")
    if b"<!DOCTYPE" in payload or b"<!ENTITY" in payload:
        raise NotSoap("DTDs are not accepted")  # no entity expansion games
    try:
        root = ElementTree.fromstring(payload)  # noqa: S314 - DTDs refused above; expat loads no external entities
    except ElementTree.ParseError:
        raise NotSoap("body is not XML") from None
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if root.tag != f"{{{SOAP_ENV}}}Envelope" or body is None or len(body) != 1:
        raise NotSoap("not a SOAP 1.1 envelope with one body element")
    return body[0]


def encode_with(xsd: xmlschema.XMLSchema, element: str, document: dict[str, Any]) -> ElementTree.Element:
    """Encode and validate one element of `xsd` (ValueError naming the schema file and its reason)."""
    try:
        encoded: Any = xsd.elements[element].encode(document, validation="strict")
    except xmlschema.XMLSchemaValidationError as exc:
        raise ValueError(f"{element} does not satisfy {_file_of(xsd)}: {exc.reason}") from None
    return encoded  # type: ignore[no-any-return]


def decode_with(xsd: xmlschema.XMLSchema, element: ElementTree.Element, name: str) -> dict[str, Any]:
    """Decode and validate one element of `xsd` (ValueError naming the schema file and its reason)."""
    try:
        decoded: Any = xsd.elements[name].decode(element, validation="strict")
    except xmlschema.XMLSchemaValidationError as exc:
        raise ValueError(f"{name} does not satisfy {_file_of(xsd)}: {exc.reason}") from None
    return decoded  # type: ignore[no-any-return]


def _file_of(xsd: xmlschema.XMLSchema) -> str:
    return str(xsd.url or "the schema").rsplit("/", 1)[-1]


def encode(element: str, document: dict[str, Any]) -> ElementTree.Element:
    """Encode and validate one element of paForNode.xsd (ValueError if it breaks the schema)."""
    return encode_with(schema(), element, document)


def decode(element: ElementTree.Element, name: str) -> dict[str, Any]:
    """Decode and validate one element of paForNode.xsd (ValueError with the schema's reason)."""
    return decode_with(schema(), element, name)


def operation_of(element: ElementTree.Element) -> str:
    tag = element.tag
    if not tag.startswith(f"{{{NAMESPACE}}}"):
        raise NotSoap("body element is not in the paForNode namespace")
    operation = BY_REQUEST.get(tag.split("}", 1)[1])
    if operation is None:
        raise NotSoap(f"{tag.split('}', 1)[1]} is not a paForNode request")
    return operation


def request_envelope(operation: str, document: dict[str, Any]) -> bytes:
    """What the Nodo (our twin) sends: the request element of `operation`, in an envelope."""
    return envelope(encode(OPERATIONS[operation][0], document))


def fault_response(operation: str, fault: StationFault, *, id_pa: str | None) -> bytes:
    bean: dict[str, Any] = {"faultCode": fault.code, "faultString": FAULTS[fault.code],
                            "id": id_pa or "NodoDeiPagamentiSPC"}
    if fault.description:
        bean["description"] = fault.description[:1000]
    return envelope(encode(OPERATIONS[operation][1], {"outcome": "KO", "fault": bean}))


def ok_response(operation: str, document: dict[str, Any]) -> bytes:
    return envelope(encode(OPERATIONS[operation][1], {"outcome": "OK", **document}))


def read_response(operation: str, payload: bytes) -> dict[str, Any]:
    """The Nodo side: decode and validate our station's reply to `operation`."""
    element = body_element(payload)
    expected = OPERATIONS[operation][1]
    if element.tag != f"{{{NAMESPACE}}}{expected}":
        raise NotSoap(f"expected {expected}, got {element.tag}")
    return decode(element, expected)


# -- the requests, in our words ------------------------------------------------------------------
@dataclass(frozen=True)
class Addressing:
    """Who the Nodo says it is calling: creditor institution, its broker and station."""

    id_pa: str
    id_broker_pa: str
    id_station: str


@dataclass(frozen=True)
class NoticeQuery:
    """paVerifyPaymentNotice / paGetPayment(V2): which notice."""

    operation: str
    addressing: Addressing
    fiscal_code: str
    notice_number: str


@dataclass(frozen=True)
class Receipt:
    """paSendRT(V2): what the citizen paid (no personal data kept beyond the notice)."""

    addressing: Addressing
    receipt_id: str
    notice_number: str
    fiscal_code: str
    outcome: str
    creditor_reference_id: str
    amount_cents: int
    paid_at: datetime | None
    psp_id: str
    fee_cents: int | None
    stand_in: bool


def _addressing(data: dict[str, Any]) -> Addressing:
    return Addressing(str(data["idPA"]), str(data["idBrokerPA"]), str(data["idStation"]))


class RequestFault(Exception):
    """A request whose operation is known but which must be answered with a PAA fault."""

    def __init__(self, operation: str, fault: StationFault) -> None:
        super().__init__(fault.code)
        self.operation = operation
        self.fault = fault


def parse_request(payload: bytes) -> tuple[str, NoticeQuery | Receipt]:
    """(operation, request) from a SOAP message. NotSoap for a non-paForNode body; StationFault
    PAA_SINTASSI_XSD (with the operation known) when the element breaks the schema."""
    element = body_element(payload)
    operation = operation_of(element)
    try:
        data = decode(element, OPERATIONS[operation][0])
    except ValueError as exc:
        raise RequestFault(operation, StationFault("PAA_SINTASSI_XSD", str(exc))) from None
    if operation in ("paVerifyPaymentNotice", "paGetPayment", "paGetPaymentV2"):
        return operation, NoticeQuery(operation, _addressing(data), str(data["qrCode"]["fiscalCode"]),
                                      str(data["qrCode"]["noticeNumber"]))
    if operation in ("paSendRT", "paSendRTV2"):
        return operation, receipt_from(data)
    raise RequestFault(operation, StationFault("PAA_SEMANTICA", f"{operation} is not offered by this station"))


def receipt_from(data: dict[str, Any]) -> Receipt:
    """A `paSendRT(V2)Req` document (decoded) as a Receipt."""
    r = data["receipt"]
    paid_at = r.get("paymentDateTime")
    when = None
    if paid_at:
        when = datetime.fromisoformat(str(paid_at).replace("Z", "+00:00"))
        if when.tzinfo is None:  # the Nodo writes local (Italian) time without an offset
            when = when.replace(tzinfo=ROME)
    return Receipt(
        addressing=_addressing(data), receipt_id=str(r["receiptId"]), notice_number=str(r["noticeNumber"]),
        fiscal_code=str(r["fiscalCode"]), outcome=str(r["outcome"]),
        creditor_reference_id=str(r["creditorReferenceId"]), amount_cents=cents(r["paymentAmount"]),
        paid_at=when, psp_id=str(r["idPSP"]), fee_cents=cents(r["fee"]) if r.get("fee") is not None else None,
        stand_in=bool(r.get("standIn", False)),
    )


def parse_receipt_document(payload: bytes) -> Receipt:
    """A receipt as GPD's receipts API returns it: a `paSendRT(V2)Req` element, bare or enveloped."""
    if b"<!DOCTYPE" in payload or b"<!ENTITY" in payload:
        raise ValueError("DTDs are not accepted")
    try:
        root = ElementTree.fromstring(payload)  # noqa: S314 - DTDs refused above
    except ElementTree.ParseError:
        raise ValueError("receipt is not XML") from None
    try:
        element = body_element(payload) if root.tag == f"{{{SOAP_ENV}}}Envelope" else root
    except NotSoap as exc:
        raise ValueError(str(exc)) from None
    name = element.tag.split("}", 1)[-1]
    if name not in ("paSendRTV2Request", "paSendRTReq") or not element.tag.startswith(f"{{{NAMESPACE}}}"):
        raise ValueError(f"receipt element {name} is not paSendRT(V2)")
    return receipt_from(decode(element, name))


def iso_date(value: date) -> str:
    return value.isoformat()
