"""App IO: every request our adapter sends, and every answer the twin gives, validates against the
official Services API contract (`shared/specs/appio/index.yaml`, Swagger 2.0).

The contract's custom formats (FiscalCode, UTCISODateFromString, Ulid, OrganizationFiscalCode,
EmailString) and `x-extensible-enum` are ignored, as the specs README says; patterns, lengths,
ranges, required fields and types are enforced (JSON Schema draft 4, which Swagger 2.0 uses).
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft4Validator

from sandbox.appio import seed
from sandbox.appio.server import IOTwin, ServiceKey, TwinState
from services.appio.adapters.io_http import IOServicesClient
from services.appio.domain import templates
from services.appio.domain.errors import IONotFound
from services.appio.ports import ServiceKeys

SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "appio" / "index.yaml"
KEY = "conformance-primary-key"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    assert SPEC_PATH.is_file(), f"the official IO contract is missing at {SPEC_PATH}"
    loaded = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert loaded["swagger"] == "2.0"
    return loaded  # type: ignore[no-any-return]


def schema_validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft4Validator:
    return Draft4Validator({**schema, "definitions": spec["definitions"]})  # no format checker: custom formats


def find_operation(spec: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    relative = path.removeprefix(spec["basePath"])
    for template, item in spec["paths"].items():
        regex = "^" + re.sub(r"\{([^}]+)\}", r"(?P<\1>[^/]+)", template) + "$"
        match = re.match(regex, relative)
        if match and method.lower() in item:
            return template, item[method.lower()], match.groupdict()
    raise AssertionError(f"{method} {path} is not an operation of the IO contract")


def resolve_parameter(spec: dict[str, Any], parameter: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in parameter:
        return spec["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]  # type: ignore[no-any-return]
    return parameter


def validate_request(spec: dict[str, Any], request: httpx.Request) -> str:
    _template, operation, path_values = find_operation(spec, request.method, request.url.path)
    assert spec["basePath"] == "/api/v1" and request.url.path.startswith("/api/v1/")
    assert {"SubscriptionKey": []} in operation["security"]
    assert request.headers.get("Ocp-Apim-Subscription-Key"), "the subscription key header is missing"
    for parameter in map(lambda p: resolve_parameter(spec, p), operation.get("parameters", [])):
        if parameter["in"] == "path":
            value = path_values[parameter["name"]]
            if "pattern" in parameter:
                assert re.search(parameter["pattern"], value), f"path {parameter['name']} breaks the pattern"
            assert parameter.get("minLength", 0) <= len(value) <= parameter.get("maxLength", 10**6)
        elif parameter["in"] == "body":
            assert request.headers["content-type"].startswith("application/json")
            body = json.loads(request.content)
            errors = sorted(schema_validator(spec, parameter["schema"]).iter_errors(body), key=str)
            assert not errors, f"{operation['operationId']}: {[e.message for e in errors]}"
    return str(operation["operationId"])


def validate_response(spec: dict[str, Any], request: httpx.Request, response: httpx.Response) -> None:
    _template, operation, _ = find_operation(spec, request.method, request.url.path)
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"{operation['operationId']} does not document HTTP {response.status_code}"
    for header in documented.get("headers", {}):
        assert header in response.headers, f"{operation['operationId']} {response.status_code} lacks {header}"
    if "schema" in documented:
        assert response.headers["content-type"].split(";")[0] in ("application/json", "application/problem+json")
        errors = sorted(schema_validator(spec, documented["schema"]).iter_errors(response.json()), key=str)
        assert not errors, f"{operation['operationId']} {response.status_code}: {[e.message for e in errors]}"


class Recorder(httpx.BaseTransport):
    """Passes every request to the twin (in-process WSGI) and keeps the exchange for validation."""

    def __init__(self, twin: IOTwin) -> None:
        self.inner = httpx.WSGITransport(app=twin)
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.exchanges.append((request, response))
        return response


@pytest.fixture
def recorded() -> tuple[IOServicesClient, Recorder, TwinState]:
    state = TwinState({KEY: ServiceKey("01SANDBOXANAGRAFE0000000000", "00297960197", "t/anagrafe#primary")},
                      processing_seconds=0)
    recorder = Recorder(IOTwin(state, sleep=lambda s: None))
    return IOServicesClient("http://io.test/api/v1", transport=recorder), recorder, state


KEYS = ServiceKeys(limiter_key="t/anagrafe", primary=KEY)


def test_the_spec_says_what_the_adapter_relies_on(spec: dict[str, Any]) -> None:
    assert spec["securityDefinitions"]["SubscriptionKey"]["name"] == "Ocp-Apim-Subscription-Key"
    content = spec["definitions"]["MessageContentBase"]["properties"]
    assert (content["subject"]["minLength"], content["subject"]["maxLength"]) == (10, 120)
    assert (content["markdown"]["minLength"], content["markdown"]["maxLength"]) == (80, 10000)
    ttl = spec["definitions"]["TimeToLiveSeconds"]
    assert (ttl["minimum"], ttl["maximum"]) == (3600, 604800)
    payment = spec["definitions"]["PaymentDataBase"]["properties"]
    assert (payment["amount"]["minimum"], payment["amount"]["maximum"]) == (1, 9999999999)
    assert payment["notice_number"]["pattern"] == "^[0123][0-9]{17}$"


def test_every_adapter_request_and_every_twin_answer_follows_the_contract(spec, recorded) -> None:
    client, recorder, _state = recorded
    citizen, english = seed.ON_IO[0], seed.ENGLISH[0]
    assert client.get_profile(KEYS, citizen).sender_allowed is True
    assert client.get_profile(KEYS, english).preferred_languages[0] == "en_GB"
    assert client.get_profile(KEYS, seed.NOT_ALLOWED[0]).sender_allowed is False
    with pytest.raises(IONotFound):
        client.get_profile(KEYS, seed.NOT_ON_IO[0])
    payment = templates.payment_notice(comune="Comune di Cremona", description="TARI 2027 prima rata",
                                       amount_cents=12_345, notice_number="347000000000012345",
                                       payee_fiscal_code="00297960197", due_date=date(2027, 3, 31))
    ready = templates.certificate_ready(comune="Comune di Cremona", certificate_type=8, verification_code="AB12CD34",
                                        language="en")
    io_ids = [client.submit_message(KEYS, citizen, payment), client.submit_message(KEYS, english, ready)]
    assert client.get_message(KEYS, citizen, io_ids[0]).status == "PROCESSED"
    operations = set()
    for request, response in recorder.exchanges:
        operations.add(validate_request(spec, request))
        validate_response(spec, request, response)
    assert operations == {"getProfileByPOST", "submitMessageforUserWithFiscalCodeInBody", "getMessage"}


def test_the_twin_refuses_what_the_contract_forbids_with_a_documented_problem(spec, recorded) -> None:
    _client, recorder, _state = recorded
    http = httpx.Client(transport=recorder, base_url="http://io.test")
    headers = {"Ocp-Apim-Subscription-Key": KEY}
    good = {"fiscal_code": seed.ON_IO[1], "content": {"subject": "Oggetto di prova", "markdown": "x" * 80}}
    bad_bodies = [
        {**good, "content": {**good["content"], "subject": "corto"}},
        {**good, "content": {**good["content"], "markdown": "x" * 79}},
        {**good, "time_to_live": 60},
        {**good, "content": {**good["content"], "payment_data": {"amount": 0, "notice_number": "3" * 18}}},
        {**good, "content": {**good["content"], "payment_data": {"amount": 10, "notice_number": "4" * 18}}},
        {**good, "content": {**good["content"], "payment_data": {"amount": 10, "notice_number": "3" * 18,
                                                                 "payee": {"fiscal_code": "123"}}}},
        {**good, "fiscal_code": "rssmra85t10a562s"},
        {"content": good["content"]},
    ]
    for body in bad_bodies:
        reply = http.post("/api/v1/messages", json=body, headers=headers)
        assert reply.status_code == 400, body
        assert reply.headers["content-type"] == "application/problem+json"
    assert http.post("/api/v1/messages", json=good, headers={"Ocp-Apim-Subscription-Key": "wrong"}).status_code == 401
    assert http.post("/api/v1/messages", json=good, headers=headers).status_code == 201
    for request, response in recorder.exchanges:
        validate_response(spec, request, response)
