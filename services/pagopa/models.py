"""The pagopa service's own tables (its database only; other services never read them)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

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

# Every receipt that reached us (Nodo station or GPD receipts API), whatever became of it: the
# receipt id is unique per tenant, so a duplicate from either path changes nothing. `disposition`
# says what it did: applied (position paid), duplicate_payment (a second receipt for a paid
# position), unknown_position, expired_position, invalidated_position, not_paid (outcome KO).
receipts = sa.Table(
    "pagopa_receipts",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
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
    sa.UniqueConstraint("tenant", "receipt_id", name="uq_pagopa_receipts_receipt"),
    sa.Index("ix_pagopa_receipts_iuv", "tenant", "iuv"),
)

# A CSV campaign: its rows keep their own reference (the idempotency key of the position they
# make), so a campaign resumed after a crash creates each position exactly once.
campaigns = sa.Table(
    "pagopa_campaigns",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(63), nullable=False),
    sa.Column("name", sa.String(140), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # validated, running, done, failed
    sa.Column("total_rows", sa.Integer, nullable=False),
    sa.Column("valid_rows", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # pagopa_0004: the upload's Idempotency-Key and the SHA-256 of its name and CSV (a retried
    # upload finds its campaign; the same key with other content is refused)
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("content_sha256", sa.String(64), nullable=True),
    sa.Index("uq_pagopa_campaigns_idempotency", "tenant", "idempotency_key", unique=True),
)

campaign_rows = sa.Table(
    "pagopa_campaign_rows",
    metadata,
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(63), nullable=False),
    sa.Column("reference", sa.String(64), nullable=True),
    sa.Column("payload", sa.Text, nullable=True),
    sa.Column("status", sa.String(12), nullable=False),  # invalid, pending, created, failed
    sa.Column("error", sa.String(300), nullable=True),
    sa.Column("position_id", sa.String(36), nullable=True),
    sa.Index("ix_pagopa_campaign_rows_status", "campaign_id", "status"),
    sa.Index("ix_pagopa_campaign_rows_next", "campaign_id", "status", "row_number"),  # pagopa_0003
)

# Reporting flows (FlussoRiversamento) imported, and their payments, keyed so a re-import is a no-op.
flows = sa.Table(
    "pagopa_flows",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    sa.Column("flow_id", sa.String(70), primary_key=True),
    sa.Column("flow_date", sa.DateTime(timezone=True), nullable=False),
    sa.Column("settlement_id", sa.String(35), nullable=False),
    sa.Column("total_cents", sa.BigInteger, nullable=False),
    sa.Column("payments", sa.Integer, nullable=False),
    sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
)

flow_payments = sa.Table(
    "pagopa_flow_payments",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    sa.Column("flow_id", sa.String(70), primary_key=True),
    sa.Column("iuv", sa.String(35), primary_key=True),
    sa.Column("receipt_id", sa.String(64), primary_key=True),  # identificativoUnivocoRiscossione
    sa.Column("transfer_index", sa.Integer, primary_key=True),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("outcome_code", sa.String(1), nullable=False),
    sa.Column("paid_on", sa.Date, nullable=False),
)


def campaign_counts(session: Session) -> list[tuple[str, str, int]]:
    """Campaign rows by tenant and state, for the `sportello_campaign_items` metric."""
    rows = session.execute(sa.select(campaign_rows.c.tenant, campaign_rows.c.status, sa.func.count())
                           .group_by(campaign_rows.c.tenant, campaign_rows.c.status))
    return [(tenant, status, int(count)) for tenant, status, count in rows]
