"""App IO: messages (delivery state machine) and campaigns.

Revision ID: appio_0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "appio_0001"
down_revision = None
branch_labels = ("appio",)
depends_on = "kernel_0001"


def upgrade() -> None:
    op.create_table(
        "appio_messages",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("io_service", sa.String(41), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("recipient_fiscal_code", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(64), nullable=True),
        sa.Column("campaign_id", sa.String(36), nullable=True),
        sa.Column("variables", sa.JSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.String(36), nullable=True),
        sa.Column("language", sa.String(5), nullable=True),
        sa.Column("io_message_id", sa.String(64), nullable=True),
        sa.Column("io_status", sa.String(20), nullable=True),
        sa.Column("outcome_reason", sa.String(200), nullable=True),
        sa.Column("correlation_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitting_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_appio_messages"),
        sa.UniqueConstraint("tenant", "dedup_key", name="uq_appio_messages_tenant_dedup_key"),
    )
    op.create_index("ix_appio_messages_due", "appio_messages", ["state", "next_attempt_at"])
    op.create_index("ix_appio_messages_campaign", "appio_messages", ["campaign_id", "state"])
    op.create_table(
        "appio_campaigns",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("io_service", sa.String(41), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("variables", sa.JSON, nullable=False),
        sa.Column("recipients", sa.BigInteger, nullable=False),
        sa.Column("duplicates", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(16), nullable=True),
        sa.Column("correlation_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_appio_campaigns"),
        sa.UniqueConstraint("tenant", "dedup_key", name="uq_appio_campaigns_tenant_dedup_key"),
    )


def downgrade() -> None:
    op.drop_table("appio_campaigns")
    op.drop_index("ix_appio_messages_campaign", table_name="appio_messages")
    op.drop_index("ix_appio_messages_due", table_name="appio_messages")
    op.drop_table("appio_messages")
