"""pagopa: a campaign upload remembers its Idempotency-Key and the hash of what was uploaded.

Why: an operator's browser (or a script) that retries an upload after a timeout must get the
campaign it already made, not a second TARI for every household; the same key with other content
is refused. Unique per tenant; NULL keys (uploads without one) never collide.

Revision ID: pagopa_0004
Revises: pagopa_0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pagopa_0004"
down_revision = "pagopa_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pagopa_campaigns", sa.Column("idempotency_key", sa.String(255), nullable=True))
    op.add_column("pagopa_campaigns", sa.Column("content_sha256", sa.String(64), nullable=True))
    op.create_index("uq_pagopa_campaigns_idempotency", "pagopa_campaigns", ["tenant", "idempotency_key"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_pagopa_campaigns_idempotency", table_name="pagopa_campaigns")
    with op.batch_alter_table("pagopa_campaigns") as batch:
        batch.drop_column("content_sha256")
        batch.drop_column("idempotency_key")
