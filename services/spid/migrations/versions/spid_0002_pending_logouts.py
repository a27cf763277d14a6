"""spid: pending logout requests (single logout), session lookup by IdP NameID.

Revision ID: spid_0002
Revises: spid_0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "spid_0002"
down_revision = "spid_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spid_pending_logouts",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("idp_entity_id", sa.String(512), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_spid_pending_logouts"),
    )
    op.create_index("ix_spid_sessions_idp_name_id", "spid_sessions", ["tenant", "idp_entity_id", "name_id"])


def downgrade() -> None:
    op.drop_index("ix_spid_sessions_idp_name_id", table_name="spid_sessions")
    op.drop_table("spid_pending_logouts")
