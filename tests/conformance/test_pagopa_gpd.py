"""Every request our GPD adapter sends and every response the GPD twin returns validates against
the official GPD OpenAPI files (v1 single positions, v2 bulk) in shared/specs/pagopa/gpd.

Two upstream defects are corrected in memory, and only those, before validation: boolean defaults
written as strings ("true"/"false"; the specs README notes it) and the Java-only regex class `\\h`
(horizontal whitespace) in the `iupd`/`organizationfiscalcode` path patterns of GET/DELETE, which
Python's `re` cannot compile (rewritten as a space or tab).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_spec_validator import validate
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox.gpd.app import GpdTwin
from services.pagopa.adapters.gpd import HttpGpd, gpd_limiter, position_payload
from services.pagopa.domain.iuv import notice_for
from services.pagopa.domain.positions import DigitalStamp, PaymentPosition, Transfer
from tests.unit.pagopa.support import IBAN, request, tenant

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "pagopa" / "gpd"
BASE = "http://gpd.test/gpd/debt-positions-service"


def _fix_boolean_defaults(node: Any) -> int:
    fixed = 0
    if isinstance(node, dict):
        if node.get("type") == "boolean" and node.get("default") in ("true", "false"):
            node["default"] = node["default"] == "true"
            fixed += 1
        for value in node.values():
            fixed += _fix_boolean_defaults(value)
    elif isinstance(node, list):
        for value in node:
            fixed += _fix_boolean_defaults(value)
    return fixed


def _fix_java_regex(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str) and "\\h" in node["pattern"]:
            node["pattern"] = node["pattern"].replace("\\h", " \\t")
        for value in node.values():
            _fix_java_regex(value)
    elif isinstance(node, list):
        for value in node:
            _fix_java_regex(value)


def load_spec(version: int) -> dict[str, Any]:
    path = SPECS / f"openapi_external_v{version}.json"
    assert path.is_file(), f"missing official spec {path} (shared/specs must sit beside the clone)"
    document = json.loads(path.read_text(encoding="utf-8"))
    fixed = copy.deepcopy(document)
    assert _fix_boolean_defaults(fixed) >= 1  # the known upstream bug is there
    _fix_java_regex(fixed)
    fixed["servers"] = [{"url": f"{BASE}/v{version}"}]
    return fixed


@pytest.fixture(scope="module")
def specs() -> dict[int, OpenAPI]:
    out = {}
    for version in (1, 2):
        document = load_spec(version)
        validate(document)  # valid OpenAPI once the string booleans are corrected
        out[version] = OpenAPI.from_dict(document)
    return out


@dataclass
class Recorder(httpx.BaseTransport):
    """Passes every call to the twin and keeps (request, response) pairs for validation."""

    twin: GpdTwin
    exchanges: list[tuple[httpx.Request, httpx.Response]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.inner = httpx.WSGITransport(app=self.twin)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.exchanges.append((request, response))
        return response


def as_werkzeug(request: httpx.Request, response: httpx.Response) -> tuple[Request, Response]:
    body = request.read()
    environ = EnvironBuilder(method=request.method, base_url="http://gpd.test", path=request.url.path,
                             query_string=request.url.query.decode(), data=body or None,
                             headers=dict(request.headers)).get_environ()
    return Request(environ), Response(response.content, status=response.status_code,
                                      headers=dict(response.headers))


def check(specs: dict[int, OpenAPI], exchanges: list[tuple[httpx.Request, httpx.Response]]) -> None:
    assert exchanges
    for sent, answered in exchanges:
        version = 2 if "/v2/" in sent.url.path else 1
        w_request, w_response = as_werkzeug(sent, answered)
        specs[version].validate_request(WerkzeugOpenAPIRequest(w_request))
        if answered.content and answered.status_code not in (401, 403, 429):  # documented without a schema
            specs[version].validate_response(WerkzeugOpenAPIRequest(w_request), WerkzeugOpenAPIResponse(w_response))


def position(n: int, *, stamp: bool = False) -> PaymentPosition:
    number = notice_for("47", n)
    req = request(amount=2600)
    transfers = [Transfer(1, 1000, "TARI 2027", iban=IBAN),
                 Transfer(2, 1600, "Bollo", stamp=DigitalStamp("a" * 44, "01", "CR")) if stamp
                 else Transfer(2, 1600, "TEFA", iban=IBAN)]
    req = req.__class__(**{**req.__dict__, "transfers": transfers})
    return PaymentPosition(id=f"p{n}", tenant="cremona", iupd=f"00297960197-p{n}", iuv=number.iuv,
                           notice_number=number.notice_number, payee_fiscal_code="00297960197",
                           company_name="Comune di Cremona", request=req)


def test_adapter_requests_and_twin_responses_follow_the_official_contract(specs: dict[int, OpenAPI]) -> None:
    recorder = Recorder(GpdTwin())
    gpd = HttpGpd(limiter=gpd_limiter(), client=httpx.Client(transport=recorder), sleep=lambda s: None)
    t = tenant(gpd_url=f"{BASE}/v1")
    gpd.create(t, position(1), publish=True)
    gpd.create(t, position(1), publish=True)  # 409 then GET
    gpd.create(t, position(2, stamp=True), publish=False)
    gpd.publish(t, position(2).iupd)
    gpd.get(t, position(2).iupd)
    gpd.get(t, "missing")
    gpd.invalidate(t, position(1).iupd)
    gpd.delete(t, position(2).iupd)
    gpd.create_many(t, [position(n) for n in range(3, 8)], publish=True)
    gpd.create_many(t, [position(n) for n in range(6, 10)], publish=True)  # 409 on v2, then singly
    statuses = {r.status_code for _, r in recorder.exchanges}
    assert {200, 201, 404, 409} <= statuses
    check(specs, recorder.exchanges)


def test_twin_400_and_401_answers_follow_the_contract(specs: dict[int, OpenAPI]) -> None:
    recorder = Recorder(GpdTwin(keys=["right"]))
    client = httpx.Client(transport=recorder)
    payload = position_payload(tenant(), position(1))
    payload["paymentOption"][0]["amount"] = 1  # sum of transfers differs: GPD's server-side rule
    url = f"{BASE}/v1/organizations/00297960197/debtpositions"
    assert client.post(url, json=payload, headers={"Ocp-Apim-Subscription-Key": "right"}).status_code == 400
    assert client.post(url, json=payload, headers={"Ocp-Apim-Subscription-Key": "wrong"}).status_code == 401
    check(specs, recorder.exchanges[:1])


def test_the_payload_we_build_is_a_valid_payment_position_model(specs: dict[int, OpenAPI]) -> None:
    from openapi_schema_validator import OAS30Validator

    document = load_spec(1)
    schema = {**document["components"]["schemas"]["PaymentPositionModel"], "components": document["components"]}
    resolved = json.loads(json.dumps(schema).replace("#/components/", "#/components/"))
    for stamp in (False, True):
        OAS30Validator(resolved).validate(position_payload(tenant(), position(1, stamp=stamp)))
