"""Fixtures of the anpr unit tests: the demo tenant with generated keys, the twins in-process.

The twins are the real sandbox servers (WSGI apps) reached through httpx's WSGI transport: the
adapters under test speak real HTTP semantics to them, without sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox import secrets as sandbox_secrets
from sandbox.anpr.app import AnprTwin
from sandbox.pdnd.app import PdndAuthority, PdndTwin
from sportello.db import Database
from sportello.tenants import SecretSource, Tenant, TenantRegistry, load_tenants


@pytest.fixture(scope="session")
def anpr_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("anpr-secrets")
    sandbox_secrets.generate(folder)
    return folder


@pytest.fixture(scope="session")
def registry(anpr_secrets: Path) -> TenantRegistry:
    return load_tenants(sandbox_secrets.TENANTS_DIR, SecretSource(environ={}, secrets_dir=anpr_secrets))


@pytest.fixture(scope="session")
def tenant(registry: TenantRegistry) -> Tenant:
    return registry.get("cremona")


@pytest.fixture
def pdnd_twin(registry: TenantRegistry) -> PdndTwin:
    return PdndTwin(PdndAuthority.from_tenants(registry))


@pytest.fixture
def anpr_twin(registry: TenantRegistry, pdnd_twin: PdndTwin) -> AnprTwin:
    return AnprTwin.from_tenants(registry, jwks=pdnd_twin.authority.jwks)


class Router:
    """Sends each request to the twin that owns its port (as the network would)."""

    def __init__(self, apps: dict[int, object]) -> None:
        self.apps = apps

    def __call__(self, environ: dict, start_response: object) -> object:  # type: ignore[type-arg]
        port = int(environ["SERVER_PORT"])
        # httpx's WSGI transport passes PATH_INFO unquoted as text; WSGI wants it latin-1 (PEP 3333),
        # as a real server gives it: C001's en dash would not survive otherwise.
        environ["PATH_INFO"] = environ["PATH_INFO"].encode("utf-8").decode("latin-1")
        return self.apps[port](environ, start_response)  # type: ignore[operator]


@pytest.fixture
def http(pdnd_twin: PdndTwin, anpr_twin: AnprTwin) -> Iterator[httpx.Client]:
    client = httpx.Client(transport=httpx.WSGITransport(app=Router({8104: pdnd_twin, 8105: anpr_twin})))
    yield client
    client.close()


@pytest.fixture
def anpr_database(tmp_path: Path) -> Iterator[Database]:
    from sportello.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'anpr.sqlite3'}"
    upgrade("anpr", url)
    database = Database(url)
    yield database
    database.dispose()
