"""One platform for the resilience scenarios: every service, the gateway and the twins, on a
private RabbitMQ node and a private PostgreSQL cluster that the scenarios may restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.resilience.campaign import IO_LIMIT, campaign_platform, private_servers
from tests.resilience.servers import PrivatePostgres, PrivateRabbitMQ
from tests.support.platform import Platform

WINDOW_SECONDS = float(IO_LIMIT.split("/")[1])
HTTP_TIMEOUT, CONNECT_TIMEOUT = 2.0, 1.0
APPIO_ENV = {"SPORTELLO_APPIO_HTTP_TIMEOUT_SECONDS": str(HTTP_TIMEOUT),
             "SPORTELLO_APPIO_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT),
             # as short as appio allows (a killed worker's submissions are settled after it expires)
             "SPORTELLO_APPIO_LEASE_SECONDS": str(2 * (HTTP_TIMEOUT + CONNECT_TIMEOUT) + WINDOW_SECONDS + 1),
             "SPORTELLO_APPIO_MAX_ATTEMPTS": "12"}


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[PrivateRabbitMQ, PrivatePostgres]]:
    with private_servers() as both:
        yield both


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory,
             servers: tuple[PrivateRabbitMQ, PrivatePostgres]) -> Iterator[Platform]:
    rabbit, postgres = servers
    with campaign_platform(tmp_path_factory.mktemp("resilience"), rabbit, postgres, io_limit=IO_LIMIT,
                           env=APPIO_ENV) as running:
        yield running
        for process in running.processes.values():  # the verdict is in: no graceful stop needed
            if process.alive:
                process.kill9()
