"""The App IO service's tables (migration branch `appio`).

- `appio_messages`: one row per logical message and its delivery state machine. `dedup_key` is
  unique per tenant, so an event redelivered, a campaign resumed or a back-office retry with the
  same idempotency key can never create a second logical message.
- `appio_campaigns`: one message to many citizens; its recipients are message rows.
- `rate_limit_keys`, `rate_limit_calls`: IO's limit shared by every replica (`sportello.ratelimit_db`,
  docs/adr/0011); used on PostgreSQL only, created everywhere so the schema is one.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Session

from sportello.db import new_metadata
from sportello.ratelimit_db import rate_limit_tables

APPIO_METADATA = new_metadata()

messages = Table(
    "appio_messages",
    APPIO_METADATA,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(63), nullable=False),
    Column("dedup_key", String(200), nullable=False),
    Column("io_service", String(41), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("recipient_fiscal_code", String(16), nullable=False),
    Column("reference", String(64), nullable=True),
    Column("campaign_id", String(36), nullable=True),
    Column("variables", JSON, nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("lease_token", String(36), nullable=True),
    Column("language", String(5), nullable=True),
    Column("io_message_id", String(64), nullable=True),
    Column("io_status", String(20), nullable=True),
    Column("outcome_reason", String(200), nullable=True),
    Column("correlation_id", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("submitting_at", DateTime(timezone=True), nullable=True),
    Column("submitted_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("resolution", String(20), nullable=True),  # an operator's decision on an in-doubt message
    Column("resolved_by", String(16), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("tenant", "dedup_key", name="uq_appio_messages_tenant_dedup_key"),
    Index("ix_appio_messages_due", "state", "next_attempt_at"),
    Index("ix_appio_messages_campaign", "campaign_id", "state"),
)

campaigns = Table(
    "appio_campaigns",
    APPIO_METADATA,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(63), nullable=False),
    Column("dedup_key", String(200), nullable=False),
    Column("io_service", String(41), nullable=False),
    Column("name", String(120), nullable=False),
    Column("variables", JSON, nullable=False),
    Column("recipients", BigInteger, nullable=False),
    Column("duplicates", BigInteger, nullable=False),
    Column("created_by", String(16), nullable=True),
    Column("correlation_id", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=True),
    UniqueConstraint("tenant", "dedup_key", name="uq_appio_campaigns_tenant_dedup_key"),
)

rate_limit_keys, rate_limit_calls = rate_limit_tables(APPIO_METADATA)


def campaign_counts(session: Session) -> list[tuple[str, str, int]]:
    """Campaign messages by tenant and state, for the `sportello_campaign_items` metric."""
    rows = session.execute(select(messages.c.tenant, messages.c.state, func.count())
                           .where(messages.c.campaign_id.is_not(None))
                           .group_by(messages.c.tenant, messages.c.state))
    return [(tenant, state, int(count)) for tenant, state, count in rows]
