"""The Nodo's reporting-flow contract (nodeForPa.wsdl + XSDs in shared/specs/pagopa/nodo): every request
our adapter sends and every answer the Nodo twin returns validates against the official XSDs, loaded
from the specs folder (not from our copy); each flow inside validates against the official
FlussoRiversamento XSD; soapAction is the WSDL's; the copies the service ships are identical.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
import xmlschema
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from sandbox.nodo.app import REPORTING_PATH, NodoTwin
from services.pagopa.domain.errors import NodoRejected
from sportello.db import Database
from tests.unit.pagopa.support import migrated
from tests.unit.pagopa.test_reporting_flows import ORG, World, nodo_tenant

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "pagopa" / "nodo"
OURS = Path(__file__).resolve().parents[2] / "services" / "pagopa" / "resources" / "nodo"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
WSDL = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "soap": "http://schemas.xmlsoap.org/wsdl/soap/"}


@pytest.fixture(scope="module")
def official() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SPECS / "wsdl" / "xsd" / "nodeForPa.xsd"))


@pytest.fixture(scope="module")
def official_flow() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SPECS / "xsd-common" / "FlussoRiversamento_1_0_4.xsd"))


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = migrated(tmp_path)
    yield db
    db.dispose()


def test_the_service_ships_the_official_nodeforpa_files_unchanged() -> None:
    for relative in ("wsdl/nodeForPa.wsdl", "wsdl/xsd/nodeForPa.xsd"):
        assert (OURS / relative).read_bytes() == (SPECS / relative).read_bytes(), relative


def soap_actions() -> dict[str, str]:
    wsdl = ElementTree.parse(SPECS / "wsdl" / "nodeForPa.wsdl").getroot()
    return {op.get("name"): op.find("soap:operation", WSDL).get("soapAction")  # type: ignore[misc,union-attr]
            for op in wsdl.findall("wsdl:binding/wsdl:operation", WSDL)}


def body_of(message: bytes) -> ElementTree.Element:
    root = ElementTree.fromstring(message)
    assert root.tag == f"{SOAP}Envelope"
    body = root.find(f"{SOAP}Body")
    assert body is not None and len(body) == 1
    return body[0]


def test_every_reporting_exchange_validates_against_the_official_xsds(
        official: xmlschema.XMLSchema, official_flow: xmlschema.XMLSchema, database: Database) -> None:
    world = World(database, nodo_tenant())
    actions = soap_actions()
    seen: list[tuple[str, str]] = []
    flows_seen: list[str] = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        sent = body_of(http_request.content)
        official.validate(sent)  # our adapter's request
        operation = sent.tag.split("}")[1]
        assert http_request.headers["SOAPAction"] == actions[operation]
        assert http_request.url.path == REPORTING_PATH
        environ = EnvironBuilder(method="POST", path=http_request.url.path, data=http_request.content,
                                 headers={"Content-Type": http_request.headers["Content-Type"]}).get_environ()
        response = Response.from_app(world.twin, environ)
        answered = body_of(response.get_data())
        official.validate(answered)  # the twin's answer
        seen.append((operation, answered.tag.split("}")[1]))
        encoded = answered.find("xmlRendicontazione")
        if encoded is not None and encoded.text:
            flow = ElementTree.fromstring(base64.b64decode(encoded.text))
            official_flow.validate(flow)  # the flow inside
            flows_seen.append(flow.findtext(f"{{{official_flow.target_namespace}}}identificativoFlusso") or "")
        return httpx.Response(response.status_code, content=response.get_data(),
                              headers={"Content-Type": "text/xml"})

    world.nodo.client = httpx.Client(transport=httpx.MockTransport(handler))
    world.paid(1000)
    world.paid(2500)
    world.control("/__twin/flows", {"fiscalCode": ORG, "extra": [{"iuv": "01000000000099999", "amount": "7.00"}]})
    assert world.reconciliation.fetch_from_nodo("cremona")["imported"] == 1
    assert world.reconciliation.fetch_from_nodo("cremona")["known"] == 1
    with pytest.raises(NodoRejected):
        world.nodo.get_flow(nodo_tenant(), "2026-11-21SANDBOXPSP0-0000")  # a fault answer validates too
    with pytest.raises(NodoRejected):
        world.nodo.list_flows(nodo_tenant(password="not-the-one"))
    list_op, fetch_op = "nodoChiediElencoFlussiRendicontazione", "nodoChiediFlussoRendicontazione"
    assert seen == [(list_op, f"{list_op}Risposta"), (fetch_op, f"{fetch_op}Risposta"),
                    (list_op, f"{list_op}Risposta"), (fetch_op, f"{fetch_op}Risposta"),
                    (list_op, f"{list_op}Risposta")]
    assert len(flows_seen) == 1 and flows_seen[0]


def test_the_twin_answers_a_request_that_breaks_the_schema_with_ppt_sintassi_xsd(official: xmlschema.XMLSchema
                                                                                 ) -> None:
    twin = NodoTwin(station_url="http://station.test/", stations={ORG: (ORG, f"{ORG}_01")})
    bad = (b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
           b'xmlns:nfpa="http://ws.pagamenti.telematici.gov/"><soapenv:Body>'
           b'<nfpa:nodoChiediElencoFlussiRendicontazione><password>x</password>'
           b'</nfpa:nodoChiediElencoFlussiRendicontazione></soapenv:Body></soapenv:Envelope>')
    response = Response.from_app(twin, EnvironBuilder(method="POST", path=REPORTING_PATH, data=bad,
                                                      headers={"Content-Type": "text/xml"}).get_environ())
    answered = body_of(response.get_data())
    official.validate(answered)
    assert answered.findtext("fault/faultCode") == "PPT_SINTASSI_XSD"
