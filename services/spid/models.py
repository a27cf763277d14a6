"""The spid service's own tables: pending logins, used assertions, sessions (refresh tokens)."""

from __future__ import annotations

import sqlalchemy as sa

from sportello.db import new_metadata

metadata = new_metadata()
_TS = sa.DateTime(timezone=True)

# An AuthnRequest we sent and whose Response we still accept (InResponseTo); deleted when used.
pending_logins = sa.Table(
    "spid_pending_logins", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(63), nullable=False),
    sa.Column("idp_entity_id", sa.String(512), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("issued_at", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("acs_url", sa.String(512), nullable=False),
    sa.Column("relay_state", sa.String(80), nullable=False),
    sa.Column("return_url", sa.String(512), nullable=True),
)

# Assertion ids already consumed, kept until the assertion would have expired anyway (replay).
used_assertions = sa.Table(
    "spid_used_assertions", metadata,
    sa.Column("idp_entity_id", sa.String(512), primary_key=True),
    sa.Column("assertion_id", sa.String(128), primary_key=True),
    sa.Column("tenant", sa.String(63), nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
)

# One row per login: the one-time login code, then the (rotating) refresh token; only hashes.
sessions = sa.Table(
    "spid_sessions", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(63), nullable=False),
    sa.Column("subject", sa.String(16), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("idp_entity_id", sa.String(512), nullable=False),
    sa.Column("name_id", sa.String(256), nullable=True),
    sa.Column("name_qualifier", sa.String(512), nullable=True),
    sa.Column("session_index", sa.String(256), nullable=True),
    sa.Column("code_hash", sa.String(64), nullable=True, unique=True),
    sa.Column("code_expires_at", _TS, nullable=True),
    sa.Column("refresh_hash", sa.String(64), nullable=True, unique=True),
    sa.Column("refresh_expires_at", _TS, nullable=True),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("provider_tokens", sa.Text, nullable=True),  # CIE: the OP's tokens, a JWE to our own key
    sa.Column("revoked_at", _TS, nullable=True),
)

# A LogoutRequest we sent to an IdP (SP-initiated logout); its LogoutResponse must answer it.
pending_logouts = sa.Table(
    "spid_pending_logouts", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(63), nullable=False),
    sa.Column("idp_entity_id", sa.String(512), nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
)

# IdP-initiated single logout finds the sessions by the NameID the IdP gave us.
sa.Index("ix_spid_sessions_idp_name_id", sessions.c.tenant, sessions.c.idp_entity_id, sessions.c.name_id)

# A CIE (OIDC) login we started: the callback's `state` finds it; nonce and PKCE verifier stay here.
cie_pending = sa.Table(
    "spid_cie_pending", metadata,
    sa.Column("state", sa.String(128), primary_key=True),
    sa.Column("tenant", sa.String(63), nullable=False),
    sa.Column("provider", sa.String(512), nullable=False),
    sa.Column("nonce", sa.String(128), nullable=False),
    sa.Column("code_verifier", sa.String(128), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("return_url", sa.String(512), nullable=True),
)
