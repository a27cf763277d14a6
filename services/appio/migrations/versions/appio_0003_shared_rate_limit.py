"""App IO: IO's rate limit shared by every replica (sportello/ratelimit_db.py, docs/adr/0011).

Revision ID: appio_0003
Revises: appio_0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "appio_0003"
down_revision = "appio_0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# One admission in one round trip (sportello.ratelimit_db.PostgresWindowLimiter): the key's row is
# locked, then the time is read and the calls counted, each statement with a fresh snapshot (a
# VOLATILE plpgsql function under READ COMMITTED), so every admission and end committed before the
# lock was granted is seen.
ADMIT_FUNCTION = """
CREATE OR REPLACE FUNCTION rate_limit_admit(p_key text, p_limit integer, p_window double precision,
                                            p_max_call double precision)
RETURNS TABLE (call_id bigint, wait double precision)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_paused double precision;
    v_now double precision;
    v_counted integer;
    v_first double precision;
BEGIN
    SELECT k.paused_until INTO v_paused FROM rate_limit_keys k WHERE k.key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rate limit key not registered';
    END IF;
    v_now := extract(epoch FROM clock_timestamp());
    IF v_paused > v_now THEN
        call_id := NULL; wait := v_paused - v_now; RETURN NEXT; RETURN;
    END IF;
    SELECT count(*), min(coalesce(c.ended_at, c.deadline)) FILTER (WHERE c.ended_at IS NOT NULL OR c.deadline <= v_now)
      INTO v_counted, v_first
      FROM rate_limit_calls c WHERE c.key = p_key AND coalesce(c.ended_at, c.deadline) > v_now - p_window;
    IF v_counted >= p_limit THEN
        -- in flight: free at least a window from now; ended: a window after it ended
        call_id := NULL; wait := greatest(coalesce(v_first + p_window - v_now, p_window), 0.001); RETURN NEXT; RETURN;
    END IF;
    IF random() < 0.02 THEN
        DELETE FROM rate_limit_calls c WHERE c.key = p_key AND coalesce(c.ended_at, c.deadline) <= v_now - p_window;
    END IF;
    INSERT INTO rate_limit_calls (key, started_at, ended_at, deadline)
        VALUES (p_key, v_now, NULL, v_now + p_max_call) RETURNING id INTO call_id;
    wait := 0; RETURN NEXT; RETURN;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "rate_limit_keys",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("paused_until", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("key", name="pk_rate_limit_keys"),
    )
    op.create_table(
        "rate_limit_calls",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("deadline", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rate_limit_calls"),
    )
    op.create_index("ix_rate_limit_calls_key", "rate_limit_calls", ["key", "started_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ADMIT_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS rate_limit_admit(text, integer, double precision, double precision)")
    op.drop_index("ix_rate_limit_calls_key", table_name="rate_limit_calls")
    op.drop_table("rate_limit_calls")
    op.drop_table("rate_limit_keys")
