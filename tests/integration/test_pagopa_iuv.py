"""IUV allocation on PostgreSQL under concurrency: every notice number unique, no gaps, per tenant."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from services.pagopa import store
from services.pagopa.application import Positions
from services.pagopa.domain.iuv import is_valid_notice_number
from services.pagopa.models import positions
from sportello.db import Database
from sportello.migrate import upgrade
from tests.support.servers import Databases
from tests.unit.pagopa.support import FakeGpd, registry, request, tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database(databases: Databases) -> Database:
    url = databases.url("pagopa_iuv")
    upgrade("pagopa", url)
    db = Database(url, pool_size=20, max_overflow=0)
    yield db  # type: ignore[misc]
    db.dispose()


def test_concurrent_allocations_never_collide(database: Database) -> None:
    def allocate(_: int) -> list[int]:
        with database.transaction() as session:
            return list(store.allocate_iuv_bases(session, "cremona", "47", 3))

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = [n for chunk in pool.map(allocate, range(200)) for n in chunk]
    assert len(results) == len(set(results)) == 600
    assert sorted(results) == list(range(1, 601))
    with database.transaction() as session:
        assert list(store.allocate_iuv_bases(session, "lodi", "47")) == [1]  # per tenant


def test_concurrent_position_creation_on_postgresql(database: Database) -> None:
    app = Positions(database, registry(tenant("bergamo")), FakeGpd())

    def create(n: int) -> str:
        return app.create("bergamo", request(reference=f"ref-{n % 40}")).notice_number

    with ThreadPoolExecutor(max_workers=12) as pool:
        numbers = list(pool.map(create, range(120)))
    assert all(is_valid_notice_number(n) for n in numbers)
    assert len(set(numbers)) == 40  # the same reference always gives the same position
    with database.transaction() as session:
        stored = session.execute(sa.select(positions.c.notice_number, positions.c.status)
                                 .where(positions.c.tenant == "bergamo")).all()
    assert len(stored) == 40 and {s for _, s in stored} == {"published"}
