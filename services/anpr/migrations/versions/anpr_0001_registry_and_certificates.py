"""anpr tables: operation ids, quota usage, audit trail, certificate requests and certificates.

Revision ID: anpr_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

from services.anpr.models import METADATA

revision = "anpr_0001"
down_revision = None
branch_labels = ("anpr",)
depends_on = "kernel_0001"


def upgrade() -> None:
    bind = op.get_bind()
    METADATA.create_all(bind)


def downgrade() -> None:
    bind = op.get_bind()
    METADATA.drop_all(bind)
