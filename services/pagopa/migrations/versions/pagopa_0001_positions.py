"""pagopa: IUV counters and payment positions.

Revision ID: pagopa_0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pagopa_0001"
down_revision = None
branch_labels = ("pagopa",)
depends_on = "kernel_0001"


def upgrade() -> None:
    op.create_table(
        "pagopa_iuv_counters",
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("segregation_code", sa.String(2), nullable=False),
        sa.Column("last_value", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "segregation_code", name="pk_pagopa_iuv_counters"),
    )
    op.create_table(
        "pagopa_positions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("iupd", sa.String(100), nullable=False),
        sa.Column("iuv", sa.String(17), nullable=False),
        sa.Column("notice_number", sa.String(18), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("description", sa.String(140), nullable=False),
        sa.Column("debtor_kind", sa.String(1), nullable=False),
        sa.Column("debtor_fiscal_code", sa.String(16), nullable=False),
        sa.Column("debtor_name", sa.String(70), nullable=False),
        sa.Column("transfers", sa.Text, nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("reference", sa.String(64), nullable=True),
        sa.Column("campaign_id", sa.String(64), nullable=True),
        sa.Column("io_service", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("receipt_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pagopa_positions"),
        sa.UniqueConstraint("iupd", name="uq_pagopa_positions_iupd"),
        sa.UniqueConstraint("tenant", "iuv", name="uq_pagopa_positions_tenant_iuv"),
        sa.UniqueConstraint("tenant", "purpose", "reference", name="uq_pagopa_positions_reference"),
    )
    op.create_index("ix_pagopa_positions_debtor", "pagopa_positions", ["tenant", "debtor_fiscal_code"])
    op.create_index("ix_pagopa_positions_status", "pagopa_positions", ["tenant", "status", "due_date"])


def downgrade() -> None:
    op.drop_index("ix_pagopa_positions_status", table_name="pagopa_positions")
    op.drop_index("ix_pagopa_positions_debtor", table_name="pagopa_positions")
    op.drop_table("pagopa_positions")
    op.drop_table("pagopa_iuv_counters")
