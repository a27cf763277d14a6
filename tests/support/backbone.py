"""Two small services that exercise the kernel's backbone in the integration tests.

`ledger` records entries and announces each through the outbox; `tally` applies each
announcement idempotently. Both are ordinary PlatformServices run by `sportello.edge.run`, against
real RabbitMQ and PostgreSQL. `tally` reads knobs from its own `controls` table so a test can make
it fail, or pause inside / after its transaction while the test kills it.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, ClassVar

from nameko.events import event_handler as stock_event_handler
from sqlalchemy import Column, Integer, String, Table, create_engine, insert, select
from sqlalchemy.orm import Session

from sportello.db import new_metadata
from sportello.edge.messaging import event_handler
from sportello.edge.rpc import rpc
from sportello.edge.service import PlatformService
from sportello.events import Envelope, EventPayload, new_event
from sportello.inbox import claim, claim_many
from sportello.outbox import add_event

TEST_METADATA = new_metadata()
entries = Table("entries", TEST_METADATA, Column("entry_id", String(64), primary_key=True),
                Column("tenant", String(63), nullable=False), Column("amount_cents", Integer, nullable=False))
effects = Table("effects", TEST_METADATA, Column("id", Integer, primary_key=True, autoincrement=True),
                Column("event_id", String(64), nullable=False), Column("entry_id", String(64), nullable=False),
                Column("amount_cents", Integer, nullable=False), Column("correlation_id", String(128), nullable=False))
progress = Table("progress", TEST_METADATA, Column("id", Integer, primary_key=True, autoincrement=True),
                 Column("event_id", String(64), nullable=False), Column("stage", String(32), nullable=False))
controls = Table("controls", TEST_METADATA, Column("name", String(64), primary_key=True),
                 Column("value", String(64), nullable=False))
stock_calls = Table("stock_calls", TEST_METADATA, Column("id", Integer, primary_key=True, autoincrement=True),
                    Column("body", String(2000), nullable=False))
# constant statements, values passed as parameters: compiled once, not built again per event
_INSERT_ENTRY = insert(entries)
_INSERT_EFFECT = insert(effects)


class EntryRecorded(EventPayload):
    """A ledger entry was recorded (test-only event)."""

    event_type: ClassVar[str] = "it.sportello.test.entry.recorded.v1"
    entry_id: str
    amount_cents: int


def record_entry(session: Session, *, tenant: str, amount_cents: int, correlation_id: str | None = None,
                 entry_id: str | None = None) -> Envelope[Any]:
    """The ledger's domain operation: the row and its event in the caller's one transaction."""
    entry_id = entry_id or uuid.uuid4().hex
    session.execute(_INSERT_ENTRY, {"entry_id": entry_id, "tenant": tenant, "amount_cents": amount_cents})
    envelope = new_event(EntryRecorded(entry_id=entry_id, amount_cents=amount_cents), service="ledger",
                         tenant=tenant, correlation_id=correlation_id, subject=entry_id)
    add_event(session, envelope)
    return envelope


class LedgerService(PlatformService):
    name = "ledger"

    @rpc  # type: ignore[untyped-decorator]
    def record(self, tenant: str, amount_cents: int) -> dict[str, str]:
        self.tenants.get(tenant)
        with self.db.transaction() as session:
            envelope = record_entry(session, tenant=tenant, amount_cents=amount_cents,
                                    correlation_id=self.request.correlation_id)
        return {"entry_id": envelope.data.entry_id, "event_id": envelope.id}


class TallyService(PlatformService):
    name = "tally"

    def _controls(self) -> dict[str, str]:
        if os.environ.get("TALLY_CONTROLS") == "off":  # benchmarks measure the pipeline, not this test hook
            return {}
        with self.db.transaction() as session:
            return {row.name: row.value for row in session.execute(select(controls))}

    def _mark(self, event_id: str, stage: str) -> None:
        with self.db.transaction() as session:
            session.execute(insert(progress).values(event_id=event_id, stage=stage))

    @event_handler(EntryRecorded.event_type)  # type: ignore[untyped-decorator]
    def on_entry_recorded(self, event: Envelope[EntryRecorded]) -> None:
        knobs = self._controls()
        with self.db.transaction() as session:
            if not claim(session, "tally.on_entry_recorded", event):
                return
            session.execute(_INSERT_EFFECT, {"event_id": event.id, "entry_id": event.data.entry_id,
                                             "amount_cents": event.data.amount_cents,
                                             "correlation_id": self.request.correlation_id})
            if knobs.get("fail") == "always":
                raise RuntimeError("tally was told to fail")
            if knobs.get("pause_in_transaction"):
                self._mark(event.id, "in_transaction")
                time.sleep(float(knobs["pause_in_transaction"]))
        if knobs.get("pause_after_commit"):
            self._mark(event.id, "committed")
            time.sleep(float(knobs["pause_after_commit"]))


class BatchTallyService(PlatformService):
    """`tally` with a batching handler: many events, one transaction (the benchmark compares both)."""

    name = "tally"

    @event_handler(EntryRecorded.event_type, batch=int(os.environ.get("TALLY_BATCH", "100")))  # type: ignore[untyped-decorator]
    def on_entries_recorded(self, events: list[Envelope[EntryRecorded]]) -> None:
        with self.db.transaction() as session:
            fresh = claim_many(session, "tally.on_entry_recorded", events)
            if any(event.data.amount_cents < 0 for event in fresh):
                raise ValueError("tally refuses a negative entry")  # a poison event, for the tests
            if fresh:
                session.execute(_INSERT_EFFECT, [
                    dict(event_id=event.id, entry_id=event.data.entry_id, amount_cents=event.data.amount_cents,
                         correlation_id=event.correlationid) for event in fresh])


class StockNamekoService:
    """A plain nameko 2.14 `event_handler` without `requeue_on_error`: shows why we do not use it."""

    name = "stock"

    @stock_event_handler("ledger", "stock.thing.happened", requeue_on_error=False)  # type: ignore[untyped-decorator]
    def on_thing(self, body: Any) -> None:
        engine = create_engine(os.environ["SPORTELLO_DATABASE_URL"])
        with engine.begin() as connection:
            connection.execute(insert(stock_calls).values(body=str(body)[:2000]))
        engine.dispose()
        raise RuntimeError("stock handler fails")
