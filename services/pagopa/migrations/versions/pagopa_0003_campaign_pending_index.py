"""pagopa: campaign rows found by (campaign, state) in row order.

Why: the campaign worker takes "the next 20 pending rows of this campaign by row number" once per
GPD call; with only (campaign_id, status) PostgreSQL sorts every pending row of a 33,000-row
campaign each time. With row_number in the index it reads the 20 it needs.

Revision ID: pagopa_0003
Revises: pagopa_0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "pagopa_0003"
down_revision = "pagopa_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_pagopa_campaign_rows_next", "pagopa_campaign_rows", ["campaign_id", "status", "row_number"])


def downgrade() -> None:
    op.drop_index("ix_pagopa_campaign_rows_next", table_name="pagopa_campaign_rows")
