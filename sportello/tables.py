"""The kernel's own tables, present in every service's database (migration branch `kernel`).

- `outbox`: events written in the same transaction as the state change they announce.
- `inbox`: ids of events a consumer has already applied (idempotency).
- `dead_letters`: messages a consumer gave up on, with the reason, listable and replayable.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Table, Text, text

from sportello.db import new_metadata

KERNEL_METADATA = new_metadata()

# BigInteger on PostgreSQL, INTEGER (so: rowid alias, autoincrement) on SQLite.
_ID = BigInteger().with_variant(Integer(), "sqlite")

outbox = Table(
    "outbox",
    KERNEL_METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("event_type", String(200), nullable=False),
    Column("tenant", String(63), nullable=False),
    Column("correlation_id", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Index(
        "ix_outbox_unpublished",
        "id",
        postgresql_where=text("published_at IS NULL"),
        sqlite_where=text("published_at IS NULL"),
    ),
)

inbox = Table(
    "inbox",
    KERNEL_METADATA,
    Column("consumer", String(200), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("event_type", String(200), nullable=False),
    Column("tenant", String(63), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)

dead_letters = Table(
    "dead_letters",
    KERNEL_METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("dead_letter_id", String(64), nullable=False, unique=True),
    Column("queue", String(255), nullable=False),
    Column("event_id", String(64), nullable=True),
    Column("event_type", String(200), nullable=True),
    Column("tenant", String(63), nullable=True),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("dead_lettered_at", DateTime(timezone=True), nullable=False),
    Column("replayed_at", DateTime(timezone=True), nullable=True),
    Column("replay_count", Integer, nullable=False, server_default=text("0")),
    Index("ix_dead_letters_tenant", "tenant", "id"),
)
