"""spid: pending logins, used assertions, sessions.

Revision ID: spid_0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "spid_0001"
down_revision = None
branch_labels = ("spid",)
depends_on = "kernel_0001"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "spid_pending_logins",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("idp_entity_id", sa.String(512), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("acs_url", sa.String(512), nullable=False),
        sa.Column("relay_state", sa.String(80), nullable=False),
        sa.Column("return_url", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_spid_pending_logins"),
    )
    op.create_table(
        "spid_used_assertions",
        sa.Column("idp_entity_id", sa.String(512), nullable=False),
        sa.Column("assertion_id", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("idp_entity_id", "assertion_id", name="pk_spid_used_assertions"),
    )
    op.create_table(
        "spid_sessions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("subject", sa.String(16), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("idp_entity_id", sa.String(512), nullable=False),
        sa.Column("name_id", sa.String(256), nullable=True),
        sa.Column("name_qualifier", sa.String(512), nullable=True),
        sa.Column("session_index", sa.String(256), nullable=True),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("code_expires_at", _TS, nullable=True),
        sa.Column("refresh_hash", sa.String(64), nullable=True),
        sa.Column("refresh_expires_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_spid_sessions"),
        sa.UniqueConstraint("code_hash", name="uq_spid_sessions_code_hash"),
        sa.UniqueConstraint("refresh_hash", name="uq_spid_sessions_refresh_hash"),
    )


def downgrade() -> None:
    op.drop_table("spid_sessions")
    op.drop_table("spid_used_assertions")
    op.drop_table("spid_pending_logins")
