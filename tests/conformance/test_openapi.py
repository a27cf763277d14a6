"""gateway/openapi.yaml is the contract: valid OpenAPI 3, versioned paths, problem+json errors that match
what gateway.errors.problem renders, and exactly the routes the gateway serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from nameko.containers import ServiceContainer
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from gateway.errors import HTTP_STATUS, PROBLEM_JSON, problem
from gateway.http import ApiRoute
from gateway.service import OPENAPI_PATH, GatewayService
from sportello.errors import NotFound, SportelloError

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
CATCH_ALL = "/<path:path>"
SERVER = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(Path(OPENAPI_PATH).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for path, item in document["paths"].items()
            for method, operation in item.items() if method in METHODS]


def problem_body(error: SportelloError | None, **kwargs: Any) -> dict[str, Any]:
    response = problem(error, request_id="req-12345678", **kwargs)
    return json.loads(response.get_data(as_text=True))  # type: ignore[no-any-return]


# -- the document itself ----------------------------------------------------------------------------


def test_is_a_valid_openapi_3_document(document: dict[str, Any]) -> None:
    assert str(document["openapi"]).startswith("3.")
    validate(document)


def test_every_path_is_versioned(document: dict[str, Any]) -> None:
    assert document["paths"]
    for path in document["paths"]:
        assert path.startswith("/v1/"), path


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))


# -- errors: problem+json as gateway.errors.problem renders it --------------------------------------


def problem_schemas(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every problem+json schema of an error response (4xx, 5xx, default), in operations and components."""
    responses: list[tuple[str, dict[str, Any]]] = [
        (f"{method.upper()} {path} {status}", response)
        for method, path, operation in operations(document)
        for status, response in operation["responses"].items()
        if status == "default" or str(status)[0] in "45"
    ]
    responses += [(f"components.responses.{name}", response)
                  for name, response in document.get("components", {}).get("responses", {}).items()]
    found = []
    for where, response in responses:
        content = resolve(document, response).get("content", {})
        if PROBLEM_JSON in content:
            found.append((where, resolve(document, content[PROBLEM_JSON]["schema"])))
    return found


def test_problem_schemas_have_the_fields_problem_renders(document: dict[str, Any]) -> None:
    rendered_always = set(problem_body(NotFound("x")))
    rendered_at_most = set(problem_body(NotFound("x"), instance="/v1/x"))
    schemas = problem_schemas(document)
    assert schemas, "the contract declares no problem+json error response"
    for where, schema in schemas:
        assert schema["type"] == "object", where
        assert set(schema["properties"]) == rendered_at_most, where
        assert set(schema["required"]) <= rendered_always, where
        assert {"type", "title", "status", "code", "request_id"} <= set(schema["required"]), where


def test_every_error_response_is_problem_json(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            content = resolve(document, response).get("content", {})
            if status == "default" or (str(status)[0] in "45" and path != "/v1/health"):
                assert set(content) == {PROBLEM_JSON}, f"{method.upper()} {path} {status}"


def test_every_operation_declares_its_problem_response(document: dict[str, Any]) -> None:
    # any route can fail (an unexpected error is an opaque 500 problem): the contract must say how
    for method, path, operation in operations(document):
        assert "default" in operation["responses"], f"{method.upper()} {path} has no default problem response"


def test_problem_schema_has_a_pattern_every_code_matches(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["Problem"]
    validator = OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER)
    for code in HTTP_STATUS:
        error_class = SportelloError.registry.get(code, SportelloError)
        body = problem_body(error_class("some detail"), instance="/v1/health")
        errors = sorted(validator.iter_errors(body), key=str)
        assert not errors, (code, [e.message for e in errors])
        assert body["status"] == (HTTP_STATUS[code] if code != "internal" else 500)


def test_opaque_500_validates(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["Problem"]
    OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER).validate(problem_body(None))


def test_invalid_problem_is_rejected_by_the_schema(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["Problem"]
    validator = OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER)
    body = problem_body(NotFound("x"))
    assert not list(validator.iter_errors(body))
    assert list(validator.iter_errors({**body, "status": 200}))
    assert list(validator.iter_errors({**body, "code": "Not A Code"}))
    assert list(validator.iter_errors({k: v for k, v in body.items() if k != "request_id"}))


@pytest.mark.parametrize("error", [NotFound("no such certificate"), None], ids=["not_found", "opaque_500"])
def test_rendered_problem_validates_as_an_operation_response(document: dict[str, Any],
                                                             error: SportelloError | None) -> None:
    """A whole HTTP answer (status, media type, X-Request-ID, body) checked by openapi-core."""
    # openapi-core only knows application/json; problem+json is JSON too (RFC 9457)
    openapi = OpenAPI.from_dict(document, config=Config(extra_media_type_deserializers={PROBLEM_JSON: json.loads}))
    request = Request(EnvironBuilder(path="/v1/health", method="GET", base_url=SERVER,
                                     headers={"X-Request-ID": "req-12345678"}).get_environ())
    response: Response = problem(error, request_id="req-12345678", instance="/v1/health")
    openapi.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))


# -- the gateway serves exactly the contract's routes -----------------------------------------------


def gateway_routes() -> set[tuple[str, str]]:
    container = ServiceContainer(GatewayService, {"AMQP_URI": "amqp://unused:unused@127.0.0.1:1/"})
    routes: set[tuple[str, str]] = set()
    for entrypoint in container.entrypoints:
        if isinstance(entrypoint, ApiRoute):
            for method in entrypoint.method.split(","):
                routes.add((method.strip().upper(), entrypoint.url))
    return routes


def contract_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path.replace("{", "<").replace("}", ">")) for method, path, _ in operations(document)}


def test_gateway_serves_exactly_the_contract(document: dict[str, Any]) -> None:
    served = {route for route in gateway_routes() if route[1] != CATCH_ALL}
    assert served == contract_routes(document)


def test_everything_else_falls_to_the_problem_route() -> None:
    catch_all = {method for method, url in gateway_routes() if url == CATCH_ALL}
    assert catch_all == {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def test_route_decorators_agree_with_entrypoints(document: dict[str, Any]) -> None:
    """The same table read straight from the @api decorators on the class."""
    decorated = set()
    for attribute in [a for klass in GatewayService.__mro__ for a in vars(klass).values()]:  # route mixins too
        for entrypoint in getattr(attribute, "nameko_entrypoints", ()):
            if isinstance(entrypoint, ApiRoute) and entrypoint.url != CATCH_ALL:
                decorated |= {(m.upper(), entrypoint.url) for m in entrypoint.method.split(",")}
    assert decorated == contract_routes(document)


def test_openapi_core_check_is_not_vacuous(document: dict[str, Any]) -> None:
    openapi = OpenAPI.from_dict(document, config=Config(extra_media_type_deserializers={PROBLEM_JSON: json.loads}))
    request = Request(EnvironBuilder(path="/v1/health", method="GET", base_url=SERVER).get_environ())
    body = problem_body(NotFound("x"))
    del body["code"]
    broken = Response(json.dumps(body), status=404, mimetype=PROBLEM_JSON)
    with pytest.raises(Exception, match="code"):
        openapi.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(broken))
