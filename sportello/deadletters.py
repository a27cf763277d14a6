"""Dead letters: what a consumer gave up on, kept with its reason until someone replays it.

Why: a failed or malformed event must never be acked and forgotten. The consumer edge publishes
it to the service's dead-letter queue with the reason; a recorder stores it here (once, keyed by
its dead-letter id); operators list it and replay it into the queue it came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from sportello.db import Database
from sportello.errors import NotFound, ValidationFailed
from sportello.tables import dead_letters


@dataclass(frozen=True)
class DeadLetter:
    """What operators see of a dead letter (no body: it may carry personal data)."""

    id: int
    queue: str
    event_id: str | None
    event_type: str | None
    tenant: str | None
    reason: str
    attempts: int
    dead_lettered_at: str
    replayed_at: str | None
    replay_count: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IncomingDeadLetter:
    dead_letter_id: str
    queue: str
    reason: str
    attempts: int
    body: str
    content_type: str
    event_id: str | None = None
    event_type: str | None = None
    tenant: str | None = None


class QueueRepublisher(Protocol):
    def republish(self, queue: str, body: str, content_type: str, *, dead_letter_id: str) -> None:
        ...


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


_COLUMNS = (dead_letters.c.id, dead_letters.c.queue, dead_letters.c.event_id, dead_letters.c.event_type,
            dead_letters.c.tenant, dead_letters.c.reason, dead_letters.c.attempts,
            dead_letters.c.dead_lettered_at, dead_letters.c.replayed_at, dead_letters.c.replay_count)


def _row(row: Any) -> DeadLetter:
    return DeadLetter(id=row.id, queue=row.queue, event_id=row.event_id, event_type=row.event_type,
                      tenant=row.tenant, reason=row.reason, attempts=row.attempts,
                      dead_lettered_at=_iso(row.dead_lettered_at) or "", replayed_at=_iso(row.replayed_at),
                      replay_count=row.replay_count)


class DeadLetterStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def record(self, letter: IncomingDeadLetter) -> bool:
        """Store a dead letter once; False when it was already recorded (redelivered DLQ message)."""
        try:
            with self._db.transaction() as session:
                session.execute(insert(dead_letters).values(
                    dead_letter_id=letter.dead_letter_id, queue=letter.queue, event_id=letter.event_id,
                    event_type=letter.event_type, tenant=letter.tenant, reason=letter.reason[:2000],
                    attempts=letter.attempts, body=letter.body, content_type=letter.content_type,
                    dead_lettered_at=datetime.now(UTC),
                ))
        except IntegrityError:
            return False
        return True

    def list(self, *, tenant: str | None = None, pending_only: bool = True, limit: int = 100) -> list[DeadLetter]:
        if not 1 <= limit <= 1000:
            raise ValidationFailed("limit must be between 1 and 1000")
        query = select(*_COLUMNS).order_by(dead_letters.c.id).limit(limit)
        if tenant is not None:
            query = query.where(dead_letters.c.tenant == tenant)
        if pending_only:
            query = query.where(dead_letters.c.replayed_at.is_(None))
        with self._db.transaction() as session:
            return [_row(row) for row in session.execute(query)]

    def count_pending(self) -> int:
        with self._db.transaction() as session:
            return int(session.execute(
                select(func.count()).select_from(dead_letters).where(dead_letters.c.replayed_at.is_(None))
            ).scalar_one())

    def replay(self, letter_id: int, republisher: QueueRepublisher, *, tenant: str | None = None) -> DeadLetter:
        """Put the message back into its original queue (fresh attempt count) and mark it replayed.

        The message is republished before the mark commits: a crash in between means a second
        replay, which the idempotent consumer absorbs — never a lost message.
        """
        with self._db.transaction() as session:
            row = session.execute(
                select(dead_letters.c.dead_letter_id, dead_letters.c.queue, dead_letters.c.body,
                       dead_letters.c.content_type, dead_letters.c.tenant)
                .where(dead_letters.c.id == letter_id)
            ).first()
            if row is None or (tenant is not None and row.tenant != tenant):
                raise NotFound(f"no dead letter {letter_id}")
            republisher.republish(row.queue, row.body, row.content_type, dead_letter_id=row.dead_letter_id)
            session.execute(update(dead_letters).where(dead_letters.c.id == letter_id).values(
                replayed_at=datetime.now(UTC), replay_count=dead_letters.c.replay_count + 1))
        with self._db.transaction() as session:
            return _row(session.execute(select(*_COLUMNS).where(dead_letters.c.id == letter_id)).one())
