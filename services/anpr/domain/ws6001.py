"""ANPR web service 6001 (`emissioneCertificato`): the SOAP messages, built and read through the XSDs.

Why: certificates must come from ANPR. The request is a plain mapping encoded by `xmlschema` with
ANPR's own XSDs (copied verbatim in services/anpr/resources/ws6001), so an element out of order, a
missing mandatory field or a value outside its pattern fails here, before ANPR sees it; the reply
is decoded (and so validated) the same way. The SOAP 1.1 envelope around it is built by hand
(document/literal, one body element) — see docs/adr/0008-ws6001-hand-built-soap-with-xmlschema.md.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import xmlschema

from services.anpr.domain.errors import AnprRefused, AnprUnavailable, NotCertifiable, ResidentNotFound

XSD = Path(__file__).resolve().parent.parent / "resources" / "ws6001" / "6001certificazione.xsd"
NAMESPACE = "http://sogei.it/ANPR/6001certificazione"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ACTION = '""'  # the WSDL's soapAction=""
OPERATION = "6001"
KO = f"{{{NAMESPACE}}}Risposta6001KO"  # global elements are namespace-qualified inside Risposta6001
OK = f"{{{NAMESPACE}}}Risposta6001OK"
DESTINATION = "ANPR"


@cache
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


@dataclass(frozen=True)
class Person:
    fiscal_code: str
    surname: str
    name: str

    def generalita(self) -> dict[str, Any]:
        return {"codiceFiscale": {"codFiscale": self.fiscal_code}, "cognome": self.surname, "nome": self.name}


@dataclass(frozen=True)
class CertificateOrder:
    """One `Richiesta6001`, in our words."""

    operation_id: str  # idOperazioneComune: [0-9a-zA-Z]{1,30}
    istat_code: str  # codMittente: the Comune
    certificate_type: int
    subject: Person
    requester: Person | None  # None: the subject asks for themself
    officer_surname: str
    officer_name: str
    at_counter: bool
    stamp_duty_cents: int
    exemption: int | None
    exemption_description: str | None
    fees_cents: int = 0
    send_type: str = "TEST"  # tipoInvio: TEST, PRE_SUB, PROD
    requested_at: datetime | None = None


def request_document(order: CertificateOrder) -> dict[str, Any]:
    """The mapping `xmlschema` encodes into `Richiesta6001` (element order as in the XSD)."""
    controls: dict[str, Any] = {
        "cognomeUffAnagrafe": order.officer_surname,
        "nomeUffAnagrafe": order.officer_name,
        # XSD tipoRichiedente: 1 = the requester is not the subject, 2 = the subject themself, 3 = a PA.
        "tipoRichiedente": "2" if order.requester is None else "1",
        "tipoRichiesta": "1",  # emission of the certificate
        "paEstera": "0",
        "emissione": "1" if order.at_counter else "2",
        "bollo": str(order.stamp_duty_cents),
    }
    if order.stamp_duty_cents:
        controls["bolloVirtuale"] = "1"  # paid through pagoPA: "assolto in modo virtuale"
    controls["diritti"] = str(order.fees_cents)
    if order.exemption is not None:
        controls["esenzioneBollo"] = str(order.exemption)
        if order.exemption_description:
            controls["descrizioneEsenzioneBollo"] = order.exemption_description
    document: dict[str, Any] = {
        "testataRichiesta": {
            "idOperazioneComune": order.operation_id,
            "codMittente": order.istat_code,
            "codDestinatario": DESTINATION,
            "operazioneRichiesta": OPERATION,
            "dataOraRichiesta": (order.requested_at or datetime.now()).replace(microsecond=0).isoformat(),
            "tipoOperazione": "C",  # a citizen's request
            "tipoInvio": order.send_type,
        },
        "listaTipiCertificati": {"tipoCertificato": [str(order.certificate_type)]},
    }
    if order.requester is not None:
        document["generalitaRichiedente"] = {"generalita": _generalita(order.requester)}
    document["soggettoIntestatario"] = {"generalita": _generalita(order.subject)}
    document["datiControllo"] = controls
    return document


def _generalita(person: Person) -> dict[str, Any]:
    return person.generalita()


def encode_body(element: str, document: dict[str, Any]) -> ElementTree.Element:
    """Encode and validate one root element of the 6001 schema (raises ValueError on invalid data)."""
    try:
        encoded: Any = schema().elements[element].encode(document, validation="strict")
    except xmlschema.XMLSchemaValidationError as exc:
        raise ValueError(f"{element} does not satisfy the WS 6001 XSD: {exc.reason}") from None
    return encoded  # type: ignore[no-any-return]


def envelope(body: ElementTree.Element) -> bytes:
    """A SOAP 1.1 envelope around one body element."""
    ElementTree.register_namespace("soapenv", SOAP_ENV)
    ElementTree.register_namespace("cert", NAMESPACE)
    root = ElementTree.Element(f"{{{SOAP_ENV}}}Envelope")
    ElementTree.SubElement(root, f"{{{SOAP_ENV}}}Header")
    ElementTree.SubElement(root, f"{{{SOAP_ENV}}}Body").append(body)
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


def request_envelope(order: CertificateOrder) -> bytes:
    return envelope(encode_body("Richiesta6001", request_document(order)))


def body_element(payload: bytes) -> ElementTree.Element:
    """The one element inside soap:Body; a Fault or anything else is a typed error."""
    try:
        root = ElementTree.fromstring(payload)  # noqa: S314 - expat resolves no external entities; ANPR over TLS
    except ElementTree.ParseError:
        raise AnprUnavailable("WS 6001 answered with a body that is not XML") from None
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if root.tag != f"{{{SOAP_ENV}}}Envelope" or body is None or len(body) != 1:
        raise AnprUnavailable("WS 6001 answered without a SOAP envelope and one body element")
    element = body[0]
    if element.tag == f"{{{SOAP_ENV}}}Fault":
        raise AnprUnavailable(f"WS 6001 fault: {element.findtext('faultstring') or 'unspecified'}")
    return element


def decode(element: ElementTree.Element, name: str) -> dict[str, Any]:
    if element.tag != f"{{{NAMESPACE}}}{name}":
        raise AnprUnavailable(f"WS 6001 answered {element.tag!r}, expected {name}")
    try:
        decoded: Any = schema().elements[name].decode(element, validation="strict")
    except xmlschema.XMLSchemaValidationError as exc:
        raise AnprUnavailable(f"WS 6001 answer does not satisfy the XSD: {exc.reason}") from None
    return decoded  # type: ignore[no-any-return]


@dataclass(frozen=True)
class IssuedDocument:
    protocol: str | None
    operation_anpr: str
    pdf: bytes
    warnings: tuple[str, ...]


# ANPR error codes worth their own meaning; the rest become AnprRefused with code and text.
NOT_FOUND = frozenset({"EN122", "EN087"})
NOT_CERTIFIABLE = frozenset({"EN080", "EN426"})


def _texts(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{e.get('codiceErroreAnomalia')}: {e.get('testoErroreAnomalia', '')}" for e in errors)


def read_response(payload: bytes) -> IssuedDocument:
    """The certificate from a `Risposta6001`, or ANPR's errors as a typed error."""
    answer = decode(body_element(payload), "Risposta6001")
    if KO in answer:
        errors = answer[KO]["listaErrori"]["errore"]
        codes = {str(e.get("codiceErroreAnomalia")) for e in errors}
        if codes & NOT_FOUND:
            raise ResidentNotFound(_texts(errors))
        if codes & NOT_CERTIFIABLE:
            raise NotCertifiable(_texts(errors))
        raise AnprRefused(_texts(errors))
    ok = answer.get(OK)
    if not ok:
        raise AnprUnavailable("WS 6001 answered neither OK nor KO")
    blocking = [e for lst in ok.get("listaErrori") or [] for e in lst.get("errore", [])
                if e.get("tipoErroreAnomalia") == "E"]
    if blocking:
        raise AnprRefused(_texts(blocking))
    pdf_b64 = (ok.get("file") or {}).get("certificatoPdf")
    if not pdf_b64:
        raise AnprUnavailable("WS 6001 answered OK without the certificate document")
    pdf = base64.b64decode(pdf_b64) if isinstance(pdf_b64, str) else bytes(pdf_b64)
    if not pdf.startswith(b"%PDF"):
        raise AnprUnavailable("WS 6001 returned a document that is not a PDF")
    warnings = tuple(f"{a.get('codiceErroreAnomalia')}: {a.get('testoErroreAnomalia', '')}"
                     for a in (ok.get("listaAnomalie") or {}).get("anomalie", []))
    protocol = (ok.get("protocolloANPR") or {}).get("numeroProtocolloANPR")
    return IssuedDocument(str(protocol) if protocol else None, str(ok["testataRisposta"]["idOperazioneANPR"]),
                          pdf, warnings)
