"""Idempotent consumers on a real SQLite file: the claim and the effect commit (or roll back) together."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from sportello.db import Database
from sportello.events import Envelope, EventPayload, new_event
from sportello.inbox import claim, claim_many
from sportello.tables import inbox


class ParcelDelivered(EventPayload):
    event_type = "it.sportello.test.parcel.delivered.v1"
    parcel_id: str


@pytest.fixture(scope="module", autouse=True)
def _unregister_test_payload() -> Iterator[None]:
    """The test type leaves the global registry (and the AsyncAPI document) with this module."""
    yield
    EventPayload.registry.pop(ParcelDelivered.event_type, None)


_EFFECTS = MetaData()
effects = Table("test_effects", _EFFECTS, Column("id", Integer, primary_key=True, autoincrement=True),
                Column("event_id", String(64), nullable=False))


@pytest.fixture
def db(database: Database) -> Iterator[Database]:
    _EFFECTS.create_all(database.engine)
    yield database


def event(parcel: str = "p-1", tenant: str = "cremona") -> Envelope[ParcelDelivered]:
    return new_event(ParcelDelivered(parcel_id=parcel), service="appio", tenant=tenant)


def handle(db: Database, consumer: str, envelope: Envelope[ParcelDelivered], *, fail: bool = False) -> bool:
    """What a handler does: claim first, then the effect, all in one transaction."""
    with db.transaction() as session:
        if not claim(session, consumer, envelope):
            return False
        session.execute(insert(effects).values(event_id=envelope.id))
        if fail:
            raise RuntimeError("handler failed after its effect")
    return True


def effect_count(db: Database) -> int:
    with db.transaction() as session:
        return int(session.execute(select(func.count()).select_from(effects)).scalar_one())


def test_claim_is_true_once_then_false(db: Database) -> None:
    envelope = event()
    with db.transaction() as session:
        assert claim(session, "appio.on_parcel", envelope) is True
    with db.transaction() as session:
        assert claim(session, "appio.on_parcel", envelope) is False
    with db.transaction() as session:
        row = session.execute(select(inbox)).one()
    assert (row.consumer, row.event_id, row.event_type, row.tenant) == (
        "appio.on_parcel", envelope.id, ParcelDelivered.event_type, "cremona")
    assert row.processed_at is not None


def test_claim_twice_in_one_transaction(db: Database) -> None:
    envelope = event()
    with db.transaction() as session:
        assert claim(session, "appio.on_parcel", envelope) is True
        assert claim(session, "appio.on_parcel", envelope) is False


def test_each_consumer_claims_for_itself(db: Database) -> None:
    envelope = event()
    with db.transaction() as session:
        assert claim(session, "appio.on_parcel", envelope) is True
        assert claim(session, "anpr.on_parcel", envelope) is True
        assert claim(session, "appio.on_parcel", event("p-2")) is True


def test_redelivery_applies_the_effect_once(db: Database) -> None:
    envelope = event()
    assert handle(db, "appio.on_parcel", envelope) is True
    assert handle(db, "appio.on_parcel", envelope) is False
    assert handle(db, "appio.on_parcel", envelope) is False
    assert effect_count(db) == 1


def test_effect_and_claim_roll_back_together(db: Database) -> None:
    envelope = event()
    with pytest.raises(RuntimeError, match="handler failed"):
        handle(db, "appio.on_parcel", envelope, fail=True)
    assert effect_count(db) == 0
    with db.transaction() as session:
        assert session.execute(select(func.count()).select_from(inbox)).scalar_one() == 0, (
            "a rolled-back effect must not leave its claim behind")
    # the retry applies the effect exactly once
    assert handle(db, "appio.on_parcel", envelope) is True
    assert handle(db, "appio.on_parcel", envelope) is False
    assert effect_count(db) == 1


def test_rollback_after_a_write_before_the_claim(db: Database) -> None:
    envelope = event()
    with pytest.raises(RuntimeError), db.transaction() as session:
        session.execute(insert(effects).values(event_id="unrelated"))
        assert claim(session, "appio.on_parcel", envelope) is True
        raise RuntimeError("fail")
    assert effect_count(db) == 0
    assert handle(db, "appio.on_parcel", envelope) is True


def test_claim_survives_across_connections(db_url: str, db: Database) -> None:
    envelope = event()
    assert handle(db, "appio.on_parcel", envelope) is True
    other = Database(db_url)  # e.g. the service restarted
    try:
        assert handle(other, "appio.on_parcel", envelope) is False
    finally:
        other.dispose()


def test_claim_many_returns_only_unseen_events_once_each_in_order(db: Database) -> None:
    first, second, third = event("p-1"), event("p-2"), event("p-3")
    with db.transaction() as session:
        assert claim(session, "appio.batch", second)
    with db.transaction() as session:
        fresh = claim_many(session, "appio.batch", [first, second, first, third])
    assert [envelope.id for envelope in fresh] == [first.id, third.id]
    with db.transaction() as session:
        assert claim_many(session, "appio.batch", [first, second, third]) == []
        assert claim_many(session, "another.consumer", [third]) == [third]
        assert claim_many(session, "appio.batch", []) == []


def test_claim_many_rolls_back_with_the_batch(db: Database) -> None:
    envelopes = [event(f"p-{i}") for i in range(5)]
    with pytest.raises(RuntimeError), db.transaction() as session:
        assert len(claim_many(session, "appio.batch", envelopes)) == 5
        raise RuntimeError("the batch's effect failed")
    with db.transaction() as session:
        assert len(claim_many(session, "appio.batch", envelopes)) == 5  # nothing was kept
