"""App IO: who resolved an in-doubt message, how and when (docs/adr/0007).

Revision ID: appio_0002
Revises: appio_0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "appio_0002"
down_revision = "appio_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("appio_messages", sa.Column("resolution", sa.String(20), nullable=True))
    op.add_column("appio_messages", sa.Column("resolved_by", sa.String(16), nullable=True))
    op.add_column("appio_messages", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("appio_messages") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("resolved_by")
        batch.drop_column("resolution")
