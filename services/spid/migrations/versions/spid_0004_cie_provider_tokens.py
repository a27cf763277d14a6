"""spid: the CIE OP's tokens of a session (sealed), for refresh and revocation at logout.

Revision ID: spid_0004
Revises: spid_0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "spid_0004"
down_revision = "spid_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spid_sessions") as batch:
        batch.add_column(sa.Column("provider_tokens", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spid_sessions") as batch:
        batch.drop_column("provider_tokens")
