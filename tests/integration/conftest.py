"""Integration fixtures: a fresh RabbitMQ vhost and fresh PostgreSQL databases for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.secrets import generate
from tests.support.processes import ROOT
from tests.support.servers import Databases, isolated_vhost, require_postgresql, require_rabbitmq


@pytest.fixture(scope="session")
def amqp_uri() -> Iterator[str]:
    require_rabbitmq()
    with isolated_vhost() as uri:
        yield uri


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    require_postgresql()
    dbs = Databases()
    try:
        yield dbs
    finally:
        dbs.drop_all()


@pytest.fixture(scope="session")
def tenant_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    secrets_dir = tmp_path_factory.mktemp("secrets")
    generate(secrets_dir)
    return ROOT / "sandbox" / "tenants", secrets_dir
