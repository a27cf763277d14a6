"""Every route of the contract is either protected — and then refuses missing, expired, forged and
other-tenant tokens with problem+json 401/403 — or on a short, reviewed list of public routes.

Walks the OpenAPI document itself, so a new route cannot slip in unprotected: it either declares
`security` (and is checked here against the running gateway) or must be added to PUBLIC below.
Role rules (citizen vs operator) are per domain and tested in each domain's e2e module.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from jose import jwt

from gateway.service import OPENAPI_PATH
from tests.support.platform import Platform, start_platform

pytestmark = pytest.mark.e2e

# Public by design: health and contracts, the login flows themselves, the key set, the pagoPA
# station (authenticated by the ingress: mutual TLS / pagoPA's addresses, ADR 0006), and the
# public verification of a certificate by its code.
PUBLIC = re.compile(
    r"^/v1/(health|openapi\.(yaml|json)|asyncapi\.json|\.well-known/jwks\.json|pagopa/paForNode"
    r"|tenants/\{tenant\}/auth/.*|public/.*)$"
)
METHODS = ("get", "post", "put", "patch", "delete")


def _operations() -> list[tuple[str, str, bool]]:
    document = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    default = document.get("security")
    found = []
    for path, operations in document["paths"].items():
        for method in METHODS:
            if method in operations:
                protected = bool(operations[method].get("security", default))
                found.append((method, path, protected))
    return found


OPERATIONS = _operations()
PROTECTED = [(m, p) for m, p, protected in OPERATIONS if protected]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with start_platform(tmp_path_factory.mktemp("enforcement"), twins=[]) as running:
        yield running


def _concrete(path: str, tenant: str = "cremona") -> str:
    return re.sub(r"\{[^}]+\}", lambda m: tenant if m.group(0) == "{tenant}" else "x0000000000000001", path)


def _send(platform: Platform, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body: dict[str, Any] = {"json": {}} if method in ("post", "put", "patch") else {}
    return httpx.request(method.upper(), platform.url(path), headers=headers, timeout=20, **body)


def _assert_problem(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, (reply.request.method, reply.request.url.path, reply.text[:300])
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == code


def test_every_route_is_protected_or_on_the_reviewed_public_list() -> None:
    unreviewed = [f"{m.upper()} {p}" for m, p, protected in OPERATIONS if not protected and not PUBLIC.match(p)]
    assert unreviewed == []
    assert len(PROTECTED) >= 20  # the walk found the domain routes


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m.upper()} {p}" for m, p in PROTECTED])
def test_protected_route_refuses_bad_tokens(platform: Platform, method: str, path: str) -> None:
    concrete = _concrete(path)
    _assert_problem(_send(platform, method, concrete, {}), 401, "auth.unauthenticated")
    key = platform.token("RSSMRA85T10A562S", roles=("citizen", "operator", "admin"))
    header, payload, signature = key.split(".")
    claims = jwt.get_unverified_claims(key)
    forged = {
        "expired": jwt.encode({**claims, "iat": int(time.time()) - 4000, "exp": int(time.time()) - 3000},
                              _private_key(platform), algorithm="RS256",
                              headers={"kid": jwt.get_unverified_header(key)["kid"]}),
        "alg none": ".".join([_b64({"alg": "none", "typ": "JWT"}), payload, ""]),
        "tampered": ".".join([header, _b64({**claims, "tenant": "lodi"}), signature]),
    }
    for name, token in forged.items():
        reply = _send(platform, method, concrete, {"Authorization": f"Bearer {token}"})
        assert reply.status_code == 401, (name, reply.text[:300])
    if "{tenant}" in path:
        other = platform.token("RSSMRA85T10A562S", roles=("citizen", "operator", "admin"), tenant="lodi")
        reply = _send(platform, method, concrete, {"Authorization": f"Bearer {other}"})
        _assert_problem(reply, 403, "access.forbidden")


def _b64(data: dict[str, Any]) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _private_key(platform: Platform) -> str:
    return (platform.secrets_dir / "GATEWAY_TOKEN_SIGNING_KEY").read_text()
