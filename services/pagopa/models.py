"""The pagopa service's own tables (its database only; other services never read them)."""

from __future__ import annotations

import sqlalchemy as sa

from sportello.db import new_metadata

metadata = new_metadata()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# One row per (tenant, segregation code): the last IUV base handed out. Allocation is one
# `UPDATE ... SET last_value = last_value + n RETURNING last_value`, so concurrent writers queue on
# the row lock (PostgreSQL) or the write lock (SQLite) and never get the same number.
iuv_counters = sa.Table(
    "pagopa_iuv_counters",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    sa.Column("segregation_code", sa.String(2), primary_key=True),
    sa.Column("last_value", sa.BigInteger, nullable=False),
)

positions = sa.Table(
    "pagopa_positions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
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
    sa.UniqueConstraint("iupd", name="uq_pagopa_positions_iupd"),
    sa.UniqueConstraint("tenant", "iuv", name="uq_pagopa_positions_tenant_iuv"),
    sa.UniqueConstraint("tenant", "purpose", "reference", name="uq_pagopa_positions_reference"),
    sa.Index("ix_pagopa_positions_debtor", "tenant", "debtor_fiscal_code"),
    sa.Index("ix_pagopa_positions_status", "tenant", "status", "due_date"),
)
