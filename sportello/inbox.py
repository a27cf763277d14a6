"""Idempotent consumers: an event's effect and the record that it was applied commit together.

Why: the broker delivers at least once (redelivery after a crash, a relay republishing after a
lost confirm, a replayed dead letter). `claim()` inserts (consumer, event id) in the caller's
transaction; if the row already exists the event was applied before and the caller skips it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sportello.events import Envelope
from sportello.tables import inbox


def claim(session: Session, consumer: str, envelope: Envelope[Any]) -> bool:
    """True the first time `consumer` sees this event id (the claim commits with the effect).

    One statement on PostgreSQL and SQLite: INSERT ... ON CONFLICT DO NOTHING, where a duplicate
    (earlier or concurrent) simply inserts no row — no read first, no SAVEPOINT.
    """
    values = {"consumer": consumer, "event_id": envelope.id, "event_type": envelope.type, "tenant": envelope.tenant,
              "processed_at": datetime.now(UTC)}
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        result = session.execute(_CLAIM[dialect], values)
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
    already = session.execute(
        select(inbox.c.event_id).where(inbox.c.consumer == consumer, inbox.c.event_id == envelope.id)
    ).first()
    if already is not None:
        return False
    try:
        with session.begin_nested():  # a concurrent duplicate loses on the primary key, cleanly
            session.execute(insert(inbox).values(**values))
    except IntegrityError:
        return False
    return True


def claim_many(session: Session, consumer: str, envelopes: Sequence[Envelope[Any]]) -> list[Envelope[Any]]:
    """The envelopes `consumer` has not applied before, claimed in the caller's transaction.

    For batch handlers: one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING instead of one
    statement per event. Copies of one event inside the batch count once; order is kept.
    """
    unique: dict[str, Envelope[Any]] = {}
    for envelope in envelopes:
        unique.setdefault(envelope.id, envelope)
    if not unique:
        return []
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        return [envelope for envelope in unique.values() if claim(session, consumer, envelope)]
    now = datetime.now(UTC)
    rows = [{"consumer": consumer, "event_id": e.id, "event_type": e.type, "tenant": e.tenant, "processed_at": now}
            for e in unique.values()]
    # One constant statement executed with many parameter sets: SQLAlchemy's "insertmanyvalues"
    # sends it as multi-row INSERTs (up to 1000 rows each) and gathers the RETURNING rows. A
    # `.values(rows)` statement was built, keyed and compiled afresh for every batch: measured,
    # most of the batching consumer's SQL time.
    fresh = set(session.execute(_CLAIM_MANY[dialect], rows).scalars())
    return [envelope for event_id, envelope in unique.items() if event_id in fresh]


# Constant statements, values passed as parameters: compiled once per process and found in
# SQLAlchemy's cache by a fixed key, instead of built, keyed and looked up again for every event.
_CLAIM = {
    "postgresql": postgresql.insert(inbox).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(inbox).on_conflict_do_nothing(),
}
_CLAIM_MANY = {dialect: statement.returning(inbox.c.event_id) for dialect, statement in _CLAIM.items()}
