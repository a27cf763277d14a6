"""Real RabbitMQ and PostgreSQL for the tests: an isolated vhost and fresh databases per run.

There is no skipping here: a missing server fails the test with what to do about it (under
CI=true and everywhere else alike). `make test` starts or installs both servers first.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from kombu import Connection

AMQP_BASE = os.environ.get("SPORTELLO_TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN_URL = os.environ.get("SPORTELLO_TEST_DATABASE_URL",
                              "postgresql+psycopg2://sportello:sportello@127.0.0.1:5432/postgres")
HOW_TO_START = "run `scripts/ensure-services.sh rabbitmq postgresql` (or `make test`, which does it)"


def _unreachable(check: Callable[[], None]) -> str | None:
    try:
        check()
    except Exception as exc:
        return type(exc).__name__
    return None


def _ping_rabbitmq() -> None:
    with Connection(AMQP_BASE, connect_timeout=3) as connection:
        connection.ensure_connection(max_retries=1)


def _ping_postgresql() -> None:
    engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()


def require_rabbitmq() -> None:
    error = _unreachable(_ping_rabbitmq)
    if error:
        pytest.fail(f"RabbitMQ is needed at {AMQP_BASE.split('@')[-1]} and is not reachable ({error}); "
                    f"{HOW_TO_START}", pytrace=False)


def require_postgresql() -> None:
    error = _unreachable(_ping_postgresql)
    if error:
        pytest.fail(f"PostgreSQL is needed at {PG_ADMIN_URL.split('@')[-1]} and is not reachable ({error}); "
                    f"{HOW_TO_START}", pytrace=False)


def rabbitmqctl(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()[:500]}")
    return result.stdout


@contextmanager
def isolated_vhost() -> Iterator[str]:
    """A throw-away RabbitMQ vhost, so tests never see a running platform's queues (or vice versa)."""
    vhost = f"sportello-test-{uuid.uuid4().hex[:8]}"
    user = AMQP_BASE.split("://", 1)[1].split(":", 1)[0]
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    try:
        yield AMQP_BASE.rstrip("/") + "/" + quote(vhost, safe="")
    finally:
        rabbitmqctl("delete_vhost", vhost)


class Databases:
    """Creates fresh PostgreSQL databases (one per service, as in production) and drops them after."""

    def __init__(self, admin_url: str = PG_ADMIN_URL) -> None:
        self.prefix = f"sportello_t{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []
        self.admin_url = admin_url
        self._engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)

    def url(self, service: str) -> str:
        name = f"{self.prefix}_{service}"
        if name not in self.created:
            with self._engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            self.created.append(name)
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def drop_all(self) -> None:
        with self._engine.connect() as connection:
            for name in self.created:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._engine.dispose()


def queue_depth(amqp_uri: str, queue: str) -> int:
    with Connection(amqp_uri, connect_timeout=5) as connection:
        _name, count, _consumers = connection.default_channel.queue_declare(queue=queue, passive=True)
        return int(count)
