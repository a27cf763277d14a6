"""The audit trail is append-only in the database itself: UPDATE and DELETE are refused.

Why: "who looked up or issued what for whom, why and when" must be a record operators cannot
edit — not by a route (there is none) and not by a stray statement either. A trigger raises on
any UPDATE or DELETE of `anpr_audit`, on PostgreSQL and on SQLite alike.

Revision ID: anpr_0002
Revises: anpr_0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "anpr_0002"
down_revision = "anpr_0001"
branch_labels = None
depends_on = None

MESSAGE = "anpr_audit is append-only"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION anpr_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$""")
        op.execute("""CREATE TRIGGER anpr_audit_append_only BEFORE UPDATE OR DELETE ON anpr_audit
                      FOR EACH ROW EXECUTE FUNCTION anpr_audit_refuse_change()""")
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"""CREATE TRIGGER anpr_audit_no_{action.lower()} BEFORE {action} ON anpr_audit
                           BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER anpr_audit_append_only ON anpr_audit")
        op.execute("DROP FUNCTION anpr_audit_refuse_change()")
    else:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER anpr_audit_no_{action}")
