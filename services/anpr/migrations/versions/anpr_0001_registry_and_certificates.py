"""anpr tables: operation ids, quota usage, audit trail, certificate requests and certificates.

Explicit operations (not `METADATA.create_all`): a migration must keep creating the schema of its
revision when models.py moves on. tests/unit/anpr/test_migration.py compares it with models.py.

Revision ID: anpr_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "anpr_0001"
down_revision = None
branch_labels = ("anpr",)
depends_on = "kernel_0001"

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "anpr_operation_ids",
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("eservice", sa.String(8), nullable=False),
        sa.Column("last_value", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "eservice", name="pk_anpr_operation_ids"),
    )
    op.create_table(
        "anpr_quota_usage",
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("eservice", sa.String(8), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("used", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "eservice", "day", name="pk_anpr_quota_usage"),
    )
    op.create_table(
        "anpr_audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(16), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("reference", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_anpr_audit"),
    )
    op.create_index("ix_anpr_audit_tenant", "anpr_audit", ["tenant"])
    op.create_table(
        "anpr_certificate_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("requester", sa.String(16), nullable=False),
        sa.Column("requester_surname", sa.String(80), nullable=True),
        sa.Column("requester_name", sa.String(80), nullable=True),
        sa.Column("subject", sa.String(16), nullable=False),
        sa.Column("subject_surname", sa.String(80), nullable=False),
        sa.Column("subject_name", sa.String(80), nullable=False),
        sa.Column("certificate_type", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("operator", sa.String(16), nullable=True),
        sa.Column("stamp_duty_cents", sa.Integer, nullable=False),
        sa.Column("exemption", sa.Integer, nullable=True),
        sa.Column("exemption_description", sa.String(256), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("failure", sa.Text, nullable=True),
        sa.Column("operation_seq", sa.Integer, nullable=False),
        sa.Column("io_service", sa.String(41), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_anpr_certificate_requests"),
    )
    op.create_index("ix_anpr_certificate_requests_tenant", "anpr_certificate_requests", ["tenant"])
    op.create_table(
        "anpr_certificates",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("verification_code", sa.String(19), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(30), nullable=True),
        sa.Column("document", sa.LargeBinary, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_anpr_certificates"),
        sa.UniqueConstraint("request_id", name="uq_anpr_certificates_request_id"),
        sa.UniqueConstraint("verification_code", name="uq_anpr_certificates_verification_code"),
    )
    op.create_index("ix_anpr_certificates_tenant", "anpr_certificates", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_anpr_certificates_tenant", table_name="anpr_certificates")
    op.drop_table("anpr_certificates")
    op.drop_index("ix_anpr_certificate_requests_tenant", table_name="anpr_certificate_requests")
    op.drop_table("anpr_certificate_requests")
    op.drop_index("ix_anpr_audit_tenant", table_name="anpr_audit")
    op.drop_table("anpr_audit")
    op.drop_table("anpr_quota_usage")
    op.drop_table("anpr_operation_ids")
