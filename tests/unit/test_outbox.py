"""Transactional outbox on a real SQLite file: stored with the change, relayed in order, never lost."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from threading import Event

import pytest
from pydantic import Field
from sqlalchemy import func, select, update

from sportello.bus import OutgoingEvent
from sportello.db import Database
from sportello.edge.kernel import ServiceDatabase
from sportello.events import Envelope, EventPayload, new_event, parse_event
from sportello.outbox import EventPublisher, OutboxRelay, add_event
from sportello.tables import outbox


class ItemCounted(EventPayload):
    event_type = "it.sportello.test.item.counted.v1"
    n: int = Field(ge=0)


@pytest.fixture(scope="module", autouse=True)
def _unregister_test_payload() -> Iterator[None]:
    """The test type leaves the global registry (and the AsyncAPI document) with this module."""
    yield
    EventPayload.registry.pop(ItemCounted.event_type, None)


class BrokerDown(ConnectionError):
    pass


@dataclass
class FakePublisher:
    """Implements sportello.outbox.EventPublisher; records every confirmed publish, fails on demand."""

    fail_on_call: int | None = None  # 1-based number of the call that raises (then healthy again)
    calls: int = 0
    published: list[dict[str, str]] = field(default_factory=list)

    def publish_event(self, body: str, *, event_type: str, event_id: str, correlation_id: str, tenant: str) -> None:
        self.calls += 1
        if self.fail_on_call == self.calls:
            self.fail_on_call = None
            raise BrokerDown("broker went away")
        self.published.append({"body": body, "event_type": event_type, "event_id": event_id,
                               "correlation_id": correlation_id, "tenant": tenant})

    def publish_events(self, batch: Sequence[OutgoingEvent]) -> int:
        """Like the real one: in order; a failure after some confirms returns the confirmed count."""
        for done, event in enumerate(batch):
            try:
                self.publish_event(event.body, event_type=event.event_type, event_id=event.event_id,
                                   correlation_id=event.correlation_id, tenant=event.tenant)
            except BrokerDown:
                if done == 0:
                    raise
                return done
        return len(batch)

    @property
    def ids(self) -> list[str]:
        return [p["event_id"] for p in self.published]


def events(count: int, tenant: str = "cremona") -> list[Envelope[ItemCounted]]:
    return [new_event(ItemCounted(n=i), service="anpr", tenant=tenant, correlation_id=f"corr-{i:08d}")
            for i in range(count)]


def store(database: Database, envelopes: list[Envelope[ItemCounted]]) -> None:
    with database.transaction() as session:
        for envelope in envelopes:
            add_event(session, envelope)


def pending_ids(database: Database) -> list[str]:
    with database.transaction() as session:
        return list(session.scalars(select(outbox.c.event_id).where(outbox.c.published_at.is_(None))
                                    .order_by(outbox.c.id)))


def test_fake_publisher_implements_the_port() -> None:
    publisher: EventPublisher = FakePublisher()
    assert publisher is not None


def test_add_event_stores_the_wire_body(database: Database) -> None:
    envelope = new_event(ItemCounted(n=7), service="anpr", tenant="cremona", correlation_id="corr-00000007",
                         subject="item-7")
    store(database, [envelope])
    with database.transaction() as session:
        row = session.execute(select(outbox)).one()
    assert row.event_id == envelope.id
    assert row.event_type == "it.sportello.test.item.counted.v1"
    assert row.tenant == "cremona"
    assert row.correlation_id == "corr-00000007"
    assert row.published_at is None
    assert json.loads(row.body) == envelope.to_message()
    assert parse_event(json.loads(row.body)) == envelope


def test_add_event_in_a_rolled_back_transaction_leaves_no_row(database: Database) -> None:
    with pytest.raises(RuntimeError, match="state change failed"), database.transaction() as session:
        add_event(session, events(1)[0])
        raise RuntimeError("state change failed")
    with database.transaction() as session:
        assert session.execute(select(func.count()).select_from(outbox)).scalar_one() == 0


def test_same_event_twice_is_refused(database: Database) -> None:
    envelope = events(1)[0]
    store(database, [envelope])
    with pytest.raises(Exception, match="UNIQUE"):
        store(database, [envelope])
    assert pending_ids(database) == [envelope.id]


def test_relay_publishes_in_order_and_marks_published(database: Database) -> None:
    envelopes = events(5)
    store(database, envelopes[:3])
    store(database, envelopes[3:])
    publisher = FakePublisher()
    relay = OutboxRelay(database, publisher)
    assert relay.relay_once() == 5
    assert publisher.ids == [e.id for e in envelopes]
    first = publisher.published[0]
    assert first["event_type"] == ItemCounted.event_type
    assert first["correlation_id"] == "corr-00000000"
    assert first["tenant"] == "cremona"
    assert parse_event(json.loads(first["body"])) == envelopes[0]
    assert pending_ids(database) == []
    with database.transaction() as session:
        marked = list(session.scalars(select(outbox.c.published_at)))
    assert len(marked) == 5 and all(m is not None for m in marked)
    # a second round finds nothing to do
    assert relay.relay_once() == 0
    assert len(publisher.published) == 5


def test_relay_respects_batch_size(database: Database) -> None:
    envelopes = events(5)
    store(database, envelopes)
    publisher = FakePublisher()
    relay = OutboxRelay(database, publisher, batch_size=2)
    assert [relay.relay_once() for _ in range(4)] == [2, 2, 1, 0]
    assert publisher.ids == [e.id for e in envelopes]


def test_failure_half_way_keeps_confirmed_ones_and_the_rest_pending(database: Database) -> None:
    envelopes = events(5)
    store(database, envelopes)
    publisher = FakePublisher(fail_on_call=3)
    relay = OutboxRelay(database, publisher)
    assert relay.relay_once() == 2
    assert publisher.ids == [e.id for e in envelopes[:2]]
    assert pending_ids(database) == [e.id for e in envelopes[2:]]
    # the broker is back: the rest goes out, the confirmed ones are not sent again
    assert relay.relay_once() == 3
    assert publisher.ids == [e.id for e in envelopes]
    assert len(set(publisher.ids)) == 5
    assert pending_ids(database) == []


def test_failure_on_the_first_row_raises_and_marks_nothing(database: Database) -> None:
    envelopes = events(3)
    store(database, envelopes)
    publisher = FakePublisher(fail_on_call=1)
    relay = OutboxRelay(database, publisher)
    with pytest.raises(BrokerDown):
        relay.relay_once()
    assert publisher.published == []
    assert pending_ids(database) == [e.id for e in envelopes]
    assert relay.relay_once() == 3
    assert publisher.ids == [e.id for e in envelopes]


def test_events_added_while_relaying_wait_for_the_next_round(database: Database) -> None:
    first, second = events(2)
    store(database, [first])

    class AddingPublisher(FakePublisher):
        def publish_event(self, body: str, **kwargs: str) -> None:  # type: ignore[override]
            super().publish_event(body, **kwargs)
            if len(self.published) == 1:
                store(database, [second])  # a worker commits while the relay is publishing

    publisher = AddingPublisher()
    relay = OutboxRelay(database, publisher)
    assert relay.relay_once() == 1
    assert pending_ids(database) == [second.id]
    assert relay.relay_once() == 1
    assert publisher.ids == [first.id, second.id]


def test_lag_counts_pending(database: Database) -> None:
    relay = OutboxRelay(database, FakePublisher(fail_on_call=3))
    assert relay.lag() == {"pending": 0, "oldest_seconds": 0.0}
    store(database, events(4))
    with database.transaction() as session:  # pretend the oldest waited a minute
        first_id = session.execute(select(func.min(outbox.c.id))).scalar_one()
        session.execute(update(outbox).where(outbox.c.id == first_id)
                        .values(created_at=datetime.now(UTC) - timedelta(seconds=60)))
    lag = relay.lag()
    assert lag["pending"] == 4
    assert 59 <= lag["oldest_seconds"] < 120
    relay.relay_once()
    lag = relay.lag()
    assert lag["pending"] == 2
    assert 0 <= lag["oldest_seconds"] < 59
    relay.relay_once()
    assert relay.lag() == {"pending": 0, "oldest_seconds": 0.0}


def test_only_commits_that_wrote_events_wake_the_relay(database: Database) -> None:
    wake = Event()  # the service's wake-up event (green under eventlet)
    service_db = ServiceDatabase(database, wake)
    with service_db.transaction() as session:  # a commit with no event: nothing for the relay
        session.execute(select(func.count()).select_from(outbox))
    assert not wake.is_set()
    with pytest.raises(RuntimeError), service_db.transaction() as session:  # rolled back: nothing either
        add_event(session, events(1)[0])
        raise RuntimeError("state change failed")
    assert not wake.is_set()
    with service_db.transaction() as session:
        add_event(session, events(1)[0])
    assert wake.is_set()
