"""Several workers on one campaign (e.g. two pagopa replicas) on PostgreSQL: every row makes one
position, one GPD creation and one PaymentPositionCreated, whoever gets to it."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
import sqlalchemy as sa

from services.pagopa.application import Positions
from services.pagopa.campaigns import Campaigns
from services.pagopa.domain.positions import PaymentPosition
from services.pagopa.models import positions
from sportello.db import Database
from sportello.migrate import upgrade
from sportello.tables import outbox
from sportello.tenants import Tenant
from tests.support.servers import Databases
from tests.unit.pagopa.support import registry, tenant
from tests.unit.pagopa.test_campaigns import BulkGpd, good_csv

pytestmark = pytest.mark.integration
ROWS = 300


class LockedGpd(BulkGpd):
    """GPD is one system: its "exists? then 409" is atomic, whoever calls."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.RLock()

    def create(self, tenant: Tenant, position: PaymentPosition, *, publish: bool):  # type: ignore[no-untyped-def]
        with self.lock:
            return super().create(tenant, position, publish=publish)

    def create_many(self, tenant: Tenant, batch: list[PaymentPosition], *, publish: bool) -> None:
        with self.lock:
            super().create_many(tenant, batch, publish=publish)


def test_workers_racing_on_one_campaign_never_double_anything(databases: Databases) -> None:
    url = databases.url("pagopa_campaign_race")
    upgrade("pagopa", url)
    database = Database(url, pool_size=10, max_overflow=0)
    gpd = LockedGpd()
    try:
        app = Positions(database, registry(tenant()), gpd, today=lambda: date(2026, 11, 21))
        cid = Campaigns(app).upload("cremona", "TARI", good_csv(ROWS))["campaign_id"]

        def worker(_: int) -> int:
            campaigns = Campaigns(app, batch_size=7)
            done = 0
            while campaigns.running("cremona"):
                done += campaigns.process("cremona", budget_seconds=5)
            return done

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(worker, range(4)))
        progress = Campaigns(app).progress("cremona", cid)
        with database.transaction() as session:
            stored = session.execute(sa.select(positions.c.id, positions.c.status)).all()
            bodies = session.execute(sa.select(outbox.c.body)).scalars().all()
    finally:
        database.dispose()
    assert progress["status"] == "done" and progress["counts"]["created"] == ROWS
    assert len(stored) == ROWS and {s.status for s in stored} == {"published"}
    assert len(gpd.created) == ROWS and set(gpd.created.values()) == {1}
    events = Counter(json.loads(b)["data"]["position_id"] for b in bodies)
    assert set(events) == {s.id for s in stored} and set(events.values()) == {1}
