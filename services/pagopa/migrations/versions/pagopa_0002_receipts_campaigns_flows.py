"""pagopa: receipts, CSV campaigns, reporting flows.

Revision ID: pagopa_0002
Revises: pagopa_0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pagopa_0002"
down_revision = "pagopa_0001"
branch_labels = None
depends_on = None
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pagopa_receipts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("receipt_id", sa.String(64), nullable=False),
        sa.Column("notice_number", sa.String(18), nullable=False),
        sa.Column("iuv", sa.String(35), nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("psp_id", sa.String(35), nullable=True),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("disposition", sa.String(24), nullable=False),
        sa.Column("position_id", sa.String(36), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pagopa_receipts"),
        sa.UniqueConstraint("tenant", "receipt_id", name="uq_pagopa_receipts_receipt"),
    )
    op.create_index("ix_pagopa_receipts_iuv", "pagopa_receipts", ["tenant", "iuv"])
    op.create_table(
        "pagopa_campaigns",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("name", sa.String(140), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("total_rows", sa.Integer, nullable=False),
        sa.Column("valid_rows", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pagopa_campaigns"),
    )
    op.create_table(
        "pagopa_campaign_rows",
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("reference", sa.String(64), nullable=True),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("error", sa.String(300), nullable=True),
        sa.Column("position_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("campaign_id", "row_number", name="pk_pagopa_campaign_rows"),
    )
    op.create_index("ix_pagopa_campaign_rows_status", "pagopa_campaign_rows", ["campaign_id", "status"])
    op.create_table(
        "pagopa_flows",
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("flow_id", sa.String(70), nullable=False),
        sa.Column("flow_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settlement_id", sa.String(35), nullable=False),
        sa.Column("total_cents", sa.BigInteger, nullable=False),
        sa.Column("payments", sa.Integer, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "flow_id", name="pk_pagopa_flows"),
    )
    op.create_table(
        "pagopa_flow_payments",
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("flow_id", sa.String(70), nullable=False),
        sa.Column("iuv", sa.String(35), nullable=False),
        sa.Column("receipt_id", sa.String(64), nullable=False),
        sa.Column("transfer_index", sa.Integer, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("outcome_code", sa.String(1), nullable=False),
        sa.Column("paid_on", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "flow_id", "iuv", "receipt_id", "transfer_index",
                                name="pk_pagopa_flow_payments"),
    )


def downgrade() -> None:
    op.drop_table("pagopa_flow_payments")
    op.drop_table("pagopa_flows")
    op.drop_index("ix_pagopa_campaign_rows_status", table_name="pagopa_campaign_rows")
    op.drop_table("pagopa_campaign_rows")
    op.drop_table("pagopa_campaigns")
    op.drop_index("ix_pagopa_receipts_iuv", table_name="pagopa_receipts")
    op.drop_table("pagopa_receipts")
