"""The Nodo SOAP contract (paForNode.wsdl + XSDs in shared/specs/pagopa/nodo): every request the Nodo
twin sends and every reply our station returns validates against the official XSDs, loaded from the
specs folder (not from our copy); the copy the service ships is identical to the specs; the GPD
receipts API answers of the twin validate against gpd_payments.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
import xmlschema
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox.gpd.app import GpdTwin
from sandbox.nodo.app import NodoTwin
from services.pagopa.adapters.gpd import HttpGpd, position_payload
from services.pagopa.application import Positions
from services.pagopa.domain import nodo
from services.pagopa.receipts import Receipts
from sportello.db import Database
from tests.unit.pagopa.support import FakeGpd, migrated, registry, request, tenant

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "pagopa"
OURS = Path(__file__).resolve().parents[2] / "services" / "pagopa" / "resources" / "nodo"
ORG = "00297960197"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"


@pytest.fixture(scope="module")
def official() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SPECS / "nodo" / "wsdl" / "xsd" / "paForNode.xsd"))


def test_the_service_ships_the_official_files_unchanged() -> None:
    for relative in ("wsdl/paForNode.wsdl", "wsdl/xsd/paForNode.xsd", "xsd-common/sac-common-types-1.0.xsd",
                     "xsd-common/FlussoRiversamento_1_0_4.xsd"):
        assert (OURS / relative).read_bytes() == (SPECS / "nodo" / relative).read_bytes(), relative


def test_the_wsdl_offers_the_operations_we_answer() -> None:
    wsdl = ElementTree.parse(SPECS / "nodo" / "wsdl" / "paForNode.wsdl").getroot()
    ns = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "soap": "http://schemas.xmlsoap.org/wsdl/soap/"}
    actions = {op.get("name"): op.find("soap:operation", ns).get("soapAction")  # type: ignore[union-attr]
               for op in wsdl.findall("wsdl:binding/wsdl:operation", ns)}
    assert set(nodo.OPERATIONS) == set(actions)
    assert all(name == action for name, action in actions.items())


def body_of(message: bytes) -> ElementTree.Element:
    root = ElementTree.fromstring(message)
    assert root.tag == f"{SOAP}Envelope"
    body = root.find(f"{SOAP}Body")
    assert body is not None and len(body) == 1
    return body[0]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = migrated(tmp_path)
    yield db
    db.dispose()


def test_every_exchange_of_a_payment_validates_against_the_official_xsds(
        official: xmlschema.XMLSchema, database: Database) -> None:
    positions = Positions(database, registry(tenant()), FakeGpd())
    station = Receipts(positions)
    seen: list[tuple[str, str]] = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        sent = body_of(http_request.content)
        official.validate(sent)  # the Nodo twin's request
        reply = station.handle(http_request.content)
        answered = body_of(reply)
        official.validate(answered)  # our station's reply
        seen.append((sent.tag.split("}")[1], answered.tag.split("}")[1]))
        assert http_request.headers["SOAPAction"] == nodo.BY_REQUEST[sent.tag.split("}")[1]]
        return httpx.Response(200, content=reply, headers={"Content-Type": "text/xml"})

    twin = NodoTwin(station_url="http://station.test/paForNode",
                    stations={ORG: ("00297960197", "00297960197_01")},
                    client=httpx.Client(transport=httpx.MockTransport(handler)))
    position = positions.create("cremona", request(amount=4200))

    def pay(number: str, **extra: Any) -> dict[str, Any]:
        environ = EnvironBuilder(method="POST", path="/__twin/pay",
                                 json={"fiscalCode": ORG, "noticeNumber": number, **extra}).get_environ()
        response = Response.from_app(twin, environ)
        assert response.status_code == 200
        return dict(json.loads(response.get_data()))

    first = pay(position.notice_number)
    assert [first[s]["outcome"] for s in ("verify", "get", "send")] == ["OK", "OK", "OK"]
    assert pay(position.notice_number)["verify"]["faultCode"] == "PAA_PAGAMENTO_DUPLICATO"
    stray = pay("301000000000999990"[:16] + "00", steps=["send"])
    assert stray["send"]["faultCode"] in ("PAA_PAGAMENTO_SCONOSCIUTO",)
    assert seen[:3] == [("paVerifyPaymentNoticeReq", "paVerifyPaymentNoticeRes"),
                        ("paGetPaymentV2Request", "paGetPaymentV2Response"),
                        ("paSendRTV2Request", "paSendRTV2Response")]
    assert len(seen) == 5


def _spec(name: str) -> OpenAPI:
    return OpenAPI.from_dict(json.loads((SPECS / "gpd" / name).read_text()))


def test_gpd_receipts_api_of_the_twin_and_our_calls_follow_gpd_payments_json(
        official: xmlschema.XMLSchema, database: Database) -> None:
    spec = _spec("gpd_payments.json")
    twin = GpdTwin()
    checked: list[str] = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        url = str(http_request.url).replace("http://gpd.test", "https://api.platform.pagopa.it")
        environ = EnvironBuilder(method=http_request.method, base_url="https://api.platform.pagopa.it",
                                 path=url.split("api.platform.pagopa.it", 1)[1].split("?")[0],
                                 query_string=http_request.url.query.decode(),
                                 headers={k: v for k, v in http_request.headers.items() if k.lower() != "host"},
                                 data=http_request.content).get_environ()
        response = Response.from_app(twin, environ)
        if "payments-receipts-service" in url:
            werkzeug_request = Request(environ)
            spec.validate_request(WerkzeugOpenAPIRequest(werkzeug_request))
            if response.status_code == 200 and response.mimetype == "application/xml":
                # the spec says `application/xml` string (openapi-core would parse it into an Element):
                # the receipt document itself is checked against the official paForNode XSD
                official.validate(ElementTree.fromstring(response.get_data()))
            elif response.status_code == 200:
                spec.validate_response(WerkzeugOpenAPIRequest(werkzeug_request), WerkzeugOpenAPIResponse(response))
            checked.append(f"{http_request.method} {response.status_code}")
        return httpx.Response(response.status_code, content=response.get_data(), headers=dict(response.headers))

    gpd = HttpGpd(client=httpx.Client(transport=httpx.MockTransport(handler)))
    t = tenant(gpd_url="http://gpd.test/gpd/debt-positions-service/v1")
    positions = Positions(database, registry(t), gpd)
    position = positions.create("cremona", request(amount=1234))
    assert position_payload(t, position)["paymentOption"][0]["iuv"] == position.iuv
    assert gpd.list_receipts(t, since="2026-01-01", page=0) == ([], 0)  # GPD answers 404 when there are none
    Response.from_app(twin, EnvironBuilder(method="POST",
                                           path=f"/__twin/pay/{ORG}/{position.notice_number}").get_environ())
    items, pages = gpd.list_receipts(t, since="2000-01-01", page=0)
    assert [i.iuv for i in items] == [position.iuv] and pages == 1
    xml = gpd.get_receipt(t, position.iuv)
    assert xml is not None
    receipt = nodo.parse_receipt_document(xml)
    assert receipt.notice_number == position.notice_number and receipt.amount_cents == 1234
    assert checked == ["GET 404", "GET 200", "GET 200"]
