"""ANPR contracts: what our clients send and what the twin answers validate against the official specs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
import xmlschema
import yaml
from openapi_schema_validator import OAS30Validator

from sandbox import secrets as sandbox_secrets
from sandbox.anpr.app import AnprTwin
from sandbox.pdnd.app import PdndAuthority, PdndTwin
from services.anpr.adapters.anpr_rest import AnprRestClient
from services.anpr.domain import eservices, ws6001
from services.anpr.domain.modi import AuditContext
from sportello.tenants import SecretSource, Tenant, load_tenants

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs"
OPENAPIS = {"C001": "C001\u2013servizioNotifica.yaml", "C003": "anprApiC003.openapi.yaml",
            "C030": "anprApiC030.openapi.yaml"}
OURS = Path(__file__).resolve().parents[2] / "services" / "anpr" / "resources"


def schema_validator(code: str, name: str) -> OAS30Validator:
    document = yaml.safe_load((SPECS / "anpr" / OPENAPIS[code]).read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    return OAS30Validator({**schemas[name], "components": document["components"]})


@pytest.fixture(scope="module")
def tenant_and_twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tenant, PdndTwin, AnprTwin]:
    folder = tmp_path_factory.mktemp("secrets")
    sandbox_secrets.generate(folder)
    registry = load_tenants(sandbox_secrets.TENANTS_DIR, SecretSource(environ={}, secrets_dir=folder))
    pdnd = PdndTwin(PdndAuthority.from_tenants(registry))
    return registry.get("cremona"), pdnd, AnprTwin.from_tenants(registry, jwks=pdnd.authority.jwks)


def test_our_copies_of_the_ws6001_and_tables_are_the_official_ones() -> None:
    for name in ("6001certificazione.xsd", "vocabolario6001certificazione.xsd", "tipoDato.xsd"):
        assert (OURS / "ws6001" / name).read_bytes() == (SPECS / "anpr" / "ws6001" / name).read_bytes()
    for path in (SPECS / "anpr" / "tables").glob("*.csv"):
        assert (OURS / "tables" / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("code", ["C001", "C003", "C030"])
def test_requests_and_answers_validate_against_each_openapi(tenant_and_twins: Any, code: str) -> None:
    tenant, pdnd, anpr = tenant_and_twins
    sent: list[tuple[int, Any]] = []

    def router(environ: dict[str, Any], start_response: Any) -> Any:
        environ["PATH_INFO"] = environ["PATH_INFO"].encode("utf-8").decode("latin-1")
        app = pdnd if environ["SERVER_PORT"] == "8104" else anpr
        return app(environ, start_response)

    def capture(response: httpx.Response) -> None:
        response.read()
        if "anpr-service-e002" in str(response.request.url):
            sent.append((response.status_code, response.json()))

    http = httpx.Client(transport=httpx.WSGITransport(app=router), event_hooks={"response": [capture]})
    client = AnprRestClient(http, sleep=lambda s: None)
    service = eservices.eservice(code)
    audit = AuditContext("u1", "sportello-test", "SPID_L2")
    for fiscal_code, operation in (("RSSMRA85T10A562S", "1000"), ("ZZZZZZ80A01D150Q", "1001")):
        body = eservices.build_request(service, operation=operation if code == "C001" else f"T{operation}",
                                       fiscal_code=fiscal_code, reason="prot. 1/2026",
                                       reference_date=__import__("datetime").date(2026, 1, 2),
                                       verify={"cognome": "ROSSI"} if code == "C003" else None)
        schema_validator(code, "RichiestaE002").validate(body)
        try:
            client.e002(tenant, service, body, audit)
        except Exception:
            pass
    assert [status for status, _ in sent] == [200, 404]
    schema_validator(code, "RispostaE002OK").validate(sent[0][1])
    schema_validator(code, "RispostaKO").validate(sent[1][1])
    assert anpr.calls and all(json.dumps(c["body"]) for c in anpr.calls)


def official_ws6001() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SPECS / "anpr" / "ws6001" / "6001certificazione.xsd"))


def body_of(envelope: bytes) -> ElementTree.Element:
    root = ElementTree.fromstring(envelope)
    body = root.find(f"{{{ws6001.SOAP_ENV}}}Body")
    assert body is not None and len(body) == 1
    return body[0]


@pytest.mark.parametrize("subject, exemption, expected", [
    (("RSSMRA85T10A562S", "ROSSI", "MARIO"), None, "OK"),
    (("BNCGLI90D45D150M", "BIANCHI", "GIULIA"), (99, "uso borsa di studio"), "OK"),
    (("ZZZZZZ80A01D150Q", "NESSUNO", "NESSUNO"), None, "KO"),
])
def test_ws6001_requests_and_replies_validate_against_the_xsds(tenant_and_twins: Any, subject: tuple[str, ...],
                                                                exemption: Any, expected: str) -> None:
    _, _, anpr = tenant_and_twins
    order = ws6001.CertificateOrder(
        operation_id="S1abc", istat_code="019036", certificate_type=8, subject=ws6001.Person(*subject),
        requester=None, officer_surname="BIANCHI", officer_name="ANNA", at_counter=False,
        stamp_duty_cents=0 if exemption else 1600, exemption=exemption[0] if exemption else None,
        exemption_description=exemption[1] if exemption else None)
    request = ws6001.request_envelope(order)
    official_ws6001().validate(body_of(request))
    http = httpx.Client(transport=httpx.WSGITransport(app=anpr))
    reply = http.post("http://127.0.0.1:8105/anpr/ws6001", content=request,
                      headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
    element = body_of(reply.content)
    official_ws6001().validate(element)
    assert element[0].tag.endswith(f"Risposta6001{expected}")


def test_invalid_request_never_leaves_our_client() -> None:
    order = ws6001.CertificateOrder(
        operation_id="not valid!", istat_code="019036", certificate_type=8,
        subject=ws6001.Person("RSSMRA85T10A562S", "ROSSI", "MARIO"), requester=None, officer_surname="B",
        officer_name="A", at_counter=False, stamp_duty_cents=1600, exemption=None, exemption_description=None)
    with pytest.raises(ValueError, match="XSD"):
        ws6001.request_envelope(order)
