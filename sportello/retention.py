"""Retention of the kernel's bookkeeping: published outbox rows, inbox claims, replayed dead letters.

Why: these tables grow with every event, and dead-letter bodies may carry personal data, which must
not be kept longer than needed. What is deleted is only what can no longer matter:
- an outbox row once published (the broker and the consumers' inboxes have it);
- an inbox claim older than any redelivery can be: a message is redelivered within minutes
  (retries back off for seconds, a relay republishes within one poll), so a claim kept for
  `inbox_days` (default 30) still absorbs a dead letter replayed weeks later;
- a dead letter once replayed; one still pending is never deleted by age: someone must decide.
Rows go in bounded batches so a large backlog never holds a long lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, select, tuple_

from sportello.db import Database
from sportello.tables import dead_letters, inbox, outbox


@dataclass(frozen=True)
class RetentionPolicy:
    outbox_days: int = 7
    inbox_days: int = 30
    dead_letters_days: int = 90

    def __post_init__(self) -> None:
        if min(self.outbox_days, self.inbox_days, self.dead_letters_days) < 1:
            raise ValueError("retention periods are whole days, at least 1")


def prune(database: Database, policy: RetentionPolicy, *, now: datetime | None = None,
          batch: int = 5_000) -> dict[str, int]:
    """Delete what the policy no longer needs; returns how many rows went, per table."""
    now = now or datetime.now(UTC)
    removed = {"outbox": 0, "inbox": 0, "dead_letters": 0}
    outbox_done = and_(outbox.c.published_at.is_not(None),
                       outbox.c.published_at < now - timedelta(days=policy.outbox_days))
    removed["outbox"] = _in_batches(database, batch, select(outbox.c.id).where(outbox_done),
                                    lambda keys: delete(outbox).where(outbox.c.id.in_(keys)))
    old_claim = inbox.c.processed_at < now - timedelta(days=policy.inbox_days)
    removed["inbox"] = _in_batches(
        database, batch, select(inbox.c.consumer, inbox.c.event_id).where(old_claim),
        lambda keys: delete(inbox).where(tuple_(inbox.c.consumer, inbox.c.event_id).in_(keys)))
    replayed = and_(dead_letters.c.replayed_at.is_not(None),
                    dead_letters.c.replayed_at < now - timedelta(days=policy.dead_letters_days))
    removed["dead_letters"] = _in_batches(database, batch, select(dead_letters.c.id).where(replayed),
                                          lambda keys: delete(dead_letters).where(dead_letters.c.id.in_(keys)))
    return removed


def _in_batches(database: Database, batch: int, keys_query: Any, delete_for: Any) -> int:
    total = 0
    while True:
        with database.transaction() as session:
            rows = session.execute(keys_query.limit(batch)).all()
            keys = [row[0] if len(row) == 1 else tuple(row) for row in rows]
            if not keys:
                return total
            session.execute(delete_for(keys))
        total += len(keys)
        if len(keys) < batch:
            return total
