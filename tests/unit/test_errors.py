"""Typed errors with stable codes, and the gateway's one table from code to HTTP status."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re

import eventlet
import pytest

import gateway
import services
import sportello
from gateway.errors import HTTP_STATUS, PROBLEM_JSON, MethodNotAllowed, RouteNotFound, UpstreamTimeout, problem
from sportello import errors
from sportello.errors import NotFound, SportelloError, ValidationFailed

CODE = re.compile(r"^[a-z_]+(\.[a-z_]+)*$")


# Process entry points: importing them has effects (sportello.edge.run monkey-patches with eventlet).
ENTRY_POINTS = {"sportello.edge.run", "sportello.devserver"}


def _import_all(package: object) -> None:
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):  # type: ignore[attr-defined]
        if ".migrations" in module.name or module.name.endswith("__main__") or module.name in ENTRY_POINTS:
            continue
        importlib.import_module(module.name)


def project_errors() -> dict[str, type[SportelloError]]:
    """Every error class the kernel, the gateway and the services define (all their modules imported)."""
    for package in (sportello, gateway, services):
        _import_all(package)
    assert not eventlet.patcher.is_monkey_patched("thread"), "a library module monkey-patched on import"
    return {code: cls for code, cls in SportelloError.registry.items()
            if cls.__module__.split(".")[0] in {"sportello", "gateway", "services"}}


def test_kernel_errors_are_registered_by_code() -> None:
    assert SportelloError.registry["resource.not_found"] is NotFound
    assert SportelloError.registry["request.invalid"] is ValidationFailed
    assert SportelloError.registry["route.not_found"] is RouteNotFound


def test_codes_are_unique_and_stable_shaped() -> None:
    classes = [cls for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, SportelloError)]
    classes += [RouteNotFound, MethodNotAllowed, UpstreamTimeout]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), codes
    for cls in classes:
        assert CODE.match(cls.code), cls
        assert cls.title and cls.title[0].isupper(), cls


def test_duplicate_code_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"'resource\.not_found' already used by sportello\.errors\.NotFound"):

        class MissingThing(SportelloError):
            code = "resource.not_found"

    assert SportelloError.registry["resource.not_found"] is NotFound


def test_every_project_code_has_an_http_status() -> None:
    found = project_errors()
    assert len(found) >= 11
    missing = sorted(code for code in found if code not in HTTP_STATUS)
    assert not missing, f"codes without an HTTP status in gateway.errors.HTTP_STATUS: {missing}"
    assert "internal" in HTTP_STATUS  # the base class's code


def test_http_statuses_are_errors_and_table_has_no_stale_codes() -> None:
    known = set(project_errors()) | {"internal"}
    assert set(HTTP_STATUS) <= known, set(HTTP_STATUS) - known
    assert all(400 <= status <= 599 for status in HTTP_STATUS.values())
    assert HTTP_STATUS["request.invalid"] == 400
    assert HTTP_STATUS["resource.not_found"] == 404
    assert HTTP_STATUS["service.unavailable"] == 503
    assert HTTP_STATUS["upstream.timeout"] == 504


def test_detail_defaults_to_title() -> None:
    assert NotFound().detail == "Resource not found"
    assert NotFound("no certificate c-1").detail == "no certificate c-1"
    assert str(NotFound("no certificate c-1")) == "no certificate c-1"


def test_errors_pickle_by_one_detail_argument() -> None:
    # the RPC edge rebuilds errors on the caller's side from their single `detail` argument
    for cls in project_errors().values():
        rebuilt = cls(*cls("some detail").args)
        assert rebuilt.detail == "some detail"


# -- problem+json --------------------------------------------------------------------------------


def body_of(response: object) -> dict[str, object]:
    return json.loads(response.get_data(as_text=True))  # type: ignore[attr-defined]


def test_problem_renders_rfc9457_fields() -> None:
    response = problem(NotFound("no certificate c-1"), request_id="req-12345678", instance="/v1/certificates/c-1")
    assert response.status_code == 404
    assert response.mimetype == PROBLEM_JSON
    assert response.headers["X-Request-ID"] == "req-12345678"
    assert body_of(response) == {
        "type": "urn:sportello:problem:resource.not_found",
        "title": "Resource not found",
        "status": 404,
        "detail": "no certificate c-1",
        "code": "resource.not_found",
        "request_id": "req-12345678",
        "instance": "/v1/certificates/c-1",
    }


def test_problem_without_instance_and_with_extra_headers() -> None:
    response = problem(MethodNotAllowed("use GET"), request_id="req-12345678", headers={"Allow": "GET"})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert "instance" not in body_of(response)


@pytest.mark.parametrize("code", sorted(HTTP_STATUS))
def test_every_known_code_renders_with_its_status(code: str) -> None:
    cls = SportelloError.registry.get(code, SportelloError)
    response = problem(cls("detail"), request_id="r-12345678")
    assert response.status_code == HTTP_STATUS[code]
    assert body_of(response)["code"] == code


def test_unknown_error_is_an_opaque_500() -> None:
    class LeakyError(SportelloError):
        code = "test.leaky_internal"
        title = "Leaky"

    try:
        response = problem(LeakyError("db password is hunter2 for RSSMRA85T10A562S"), request_id="req-12345678")
    finally:
        del SportelloError.registry[LeakyError.code]
    body = body_of(response)
    assert response.status_code == 500
    assert body["code"] == "internal"
    assert body["title"] == "Internal error"
    assert body["type"] == "urn:sportello:problem:internal"
    raw = response.get_data(as_text=True)
    assert "hunter2" not in raw and "RSSMRA85T10A562S" not in raw and "Leaky" not in raw
    assert "request id" in str(body["detail"])


def test_no_error_is_an_opaque_500() -> None:
    body = body_of(problem(None, request_id="req-12345678"))
    assert body["status"] == 500
    assert body["code"] == "internal"


def test_bare_base_error_is_an_opaque_500_too() -> None:
    response = problem(SportelloError("secret internals"), request_id="req-12345678")
    assert response.status_code == 500
    assert body_of(response)["code"] == "internal"
    assert "secret internals" not in response.get_data(as_text=True)
