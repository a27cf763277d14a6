"""spid: pending CIE (OpenID Connect) logins.

Revision ID: spid_0003
Revises: spid_0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "spid_0003"
down_revision = "spid_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spid_cie_pending",
        sa.Column("state", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("provider", sa.String(512), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("return_url", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("state", name="pk_spid_cie_pending"),
    )


def downgrade() -> None:
    op.drop_table("spid_cie_pending")
