"""Transactional outbox: an event is stored with the state change it announces, then relayed.

Why: publishing after a commit loses the event if the process dies in between; publishing
before it announces a change that may roll back. Writing the event into `outbox` inside the
same transaction and letting a relay publish it (with publisher confirms) afterwards gives
at-least-once delivery; consumers are idempotent, so the effect happens once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from sportello.bus import OutgoingEvent
from sportello.db import Database
from sportello.events import Envelope
from sportello.tables import outbox
from sportello.tracing import current_traceparent

# Set on a session whose transaction wrote an outbox row: only such commits need to wake the relay.
OUTBOX_WRITTEN = "sportello.outbox_written"

# One constant statement with the values passed as parameters: SQLAlchemy compiles it once and
# looks it up by a fixed cache key, instead of building and keying a fresh `.values(...)` per event.
_INSERT = insert(outbox)


def add_event(session: Session, envelope: Envelope[Any]) -> None:
    """Store `envelope` in the outbox as part of the caller's transaction.

    The active span's traceparent is stamped on the event (unless it carries one), so the
    consumer's span joins the trace of the request that caused it.
    """
    if envelope.traceparent is None and (traceparent := current_traceparent()) is not None:
        envelope = envelope.model_copy(update={"traceparent": traceparent})
    session.info[OUTBOX_WRITTEN] = True
    session.execute(_INSERT, {
        "event_id": envelope.id,
        "event_type": envelope.type,
        "tenant": envelope.tenant,
        "correlation_id": envelope.correlationid,
        # the wire body (`Envelope.to_message()` as compact UTF-8 JSON), serialised once, in pydantic-core
        "body": envelope.model_dump_json(exclude_none=True),
        "created_at": datetime.now(UTC),
    })


class EventPublisher(Protocol):
    def publish_events(self, events: Sequence[OutgoingEvent]) -> int:
        """Publish in order; return how many from the start the broker confirmed (raise if none)."""
        ...


@dataclass(frozen=True)
class _Pending:
    id: int
    event_id: str
    event_type: str
    tenant: str
    correlation_id: str
    body: str


class OutboxRelay:
    """Moves outbox rows to the broker, oldest first; each row is marked only after its confirm.

    On PostgreSQL the batch is claimed with `FOR UPDATE SKIP LOCKED`, so several replicas can
    relay side by side without publishing a row twice. On SQLite (one process) the rows are read,
    published, then marked in a short second transaction, leaving the database free meanwhile.
    """

    def __init__(self, database: Database, publisher: EventPublisher, *, batch_size: int = 200) -> None:
        self._db = database
        self._publisher = publisher
        self._batch = batch_size

    def _select(self) -> Any:
        return (
            select(outbox.c.id, outbox.c.event_id, outbox.c.event_type, outbox.c.tenant,
                   outbox.c.correlation_id, outbox.c.body)
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.id)
            .limit(self._batch)
        )

    def relay_once(self) -> int:
        """Publish up to one batch. Returns how many rows were published and marked."""
        if self._db.is_sqlite:
            with self._db.transaction() as session:
                pending = [_Pending(*row) for row in session.execute(self._select())]
            published = self._publish(pending)
            if published:
                with self._db.transaction() as session:
                    self._mark(session, published)
            return len(published)
        with self._db.transaction() as session:
            pending = [_Pending(*row) for row in session.execute(self._select().with_for_update(skip_locked=True))]
            published = self._publish(pending)  # on a broker failure half-way, keeps what was confirmed
            self._mark(session, published)
            return len(published)

    def _publish(self, pending: list[_Pending]) -> list[int]:
        """Ids of the rows the broker confirmed; the rest stays for the next round."""
        if not pending:
            return []
        confirmed = self._publisher.publish_events([
            OutgoingEvent(body=row.body, event_type=row.event_type, event_id=row.event_id,
                          correlation_id=row.correlation_id, tenant=row.tenant) for row in pending])
        return [row.id for row in pending[:confirmed]]

    @staticmethod
    def _mark(session: Session, ids: list[int]) -> None:
        if ids:
            session.execute(update(outbox).where(outbox.c.id.in_(ids)).values(published_at=datetime.now(UTC)))

    def lag(self) -> dict[str, Any]:
        """How much is waiting: count and age in seconds of the oldest unpublished event."""
        with self._db.transaction() as session:
            count, oldest = session.execute(
                select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.published_at.is_(None))
            ).one()
        age = 0.0
        if oldest is not None:
            if oldest.tzinfo is None:  # SQLite returns naive datetimes
                oldest = oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        return {"pending": int(count), "oldest_seconds": round(age, 3)}
