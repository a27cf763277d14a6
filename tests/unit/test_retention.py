"""Retention deletes exactly what can no longer matter, on a real migrated SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from sportello.db import Database
from sportello.retention import RetentionPolicy, prune
from sportello.tables import dead_letters, inbox, outbox

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _outbox(db: Database, event_id: str, published_days_ago: float | None) -> None:
    published = None if published_days_ago is None else NOW - timedelta(days=published_days_ago)
    with db.transaction() as session:
        session.execute(insert(outbox).values(event_id=event_id, event_type="t.v1", tenant="cremona",
                                              correlation_id="c" * 8, body="{}", created_at=NOW - timedelta(days=60),
                                              published_at=published))


def _claim(db: Database, event_id: str, days_ago: float) -> None:
    with db.transaction() as session:
        session.execute(insert(inbox).values(consumer="appio.x", event_id=event_id, event_type="t.v1",
                                             tenant="cremona", processed_at=NOW - timedelta(days=days_ago)))


def _letter(db: Database, letter_id: str, replayed_days_ago: float | None) -> None:
    replayed = None if replayed_days_ago is None else NOW - timedelta(days=replayed_days_ago)
    with db.transaction() as session:
        session.execute(insert(dead_letters).values(
            dead_letter_id=letter_id, queue="appio.x", reason="r", attempts=3, body="{}",
            content_type="application/json", dead_lettered_at=NOW - timedelta(days=400), replayed_at=replayed))


def _ids(db: Database, column: object) -> set[str]:
    with db.transaction() as session:
        return set(session.execute(select(column)).scalars())  # type: ignore[call-overload]


def test_prune_keeps_what_may_still_matter(database: Database) -> None:
    _outbox(database, "published-long-ago", 8)
    _outbox(database, "published-recently", 6)
    _outbox(database, "never-published", None)  # the relay still owes it: never deleted
    _claim(database, "claimed-long-ago", 31)
    _claim(database, "claimed-recently", 29)
    _letter(database, "replayed-long-ago", 91)
    _letter(database, "replayed-recently", 89)
    _letter(database, "still-pending", None)  # nobody decided yet: never deleted by age

    removed = prune(database, RetentionPolicy(), now=NOW)

    assert removed == {"outbox": 1, "inbox": 1, "dead_letters": 1}
    assert _ids(database, outbox.c.event_id) == {"published-recently", "never-published"}
    assert _ids(database, inbox.c.event_id) == {"claimed-recently"}
    assert _ids(database, dead_letters.c.dead_letter_id) == {"replayed-recently", "still-pending"}
    assert prune(database, RetentionPolicy(), now=NOW) == {"outbox": 0, "inbox": 0, "dead_letters": 0}


def test_prune_goes_in_batches_until_done(database: Database) -> None:
    for i in range(25):
        _outbox(database, f"old-{i}", 10)
        _claim(database, f"old-{i}", 40)
    assert prune(database, RetentionPolicy(), now=NOW, batch=10) == {"outbox": 25, "inbox": 25, "dead_letters": 0}
    assert _ids(database, outbox.c.event_id) == set()


def test_a_policy_of_zero_days_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetentionPolicy(inbox_days=0)
