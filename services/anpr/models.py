"""Tables of the `anpr` service (migration branch `anpr`, services/anpr/migrations/versions).

- `anpr_operation_ids`: the last numeric `idOperazioneClient` sent per tenant and e-service (C001).
- `anpr_quota_usage`: calls made per tenant, e-service and day (refuse before ANPR does).
- `anpr_audit`: who looked up or issued what for whom, why and when — append-only.
- `anpr_certificate_requests`, `anpr_certificates`: the certificate flow and the documents issued.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, LargeBinary, String, Table, Text, UniqueConstraint

from sportello.db import new_metadata

METADATA = new_metadata()
_ID = BigInteger().with_variant(Integer(), "sqlite")

operation_ids = Table(
    "anpr_operation_ids", METADATA,
    Column("tenant", String(63), primary_key=True),
    Column("eservice", String(8), primary_key=True),
    Column("last_value", BigInteger, nullable=False),
)

quota_usage = Table(
    "anpr_quota_usage", METADATA,
    Column("tenant", String(63), primary_key=True),
    Column("eservice", String(8), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("used", Integer, nullable=False),
)

audit = Table(
    "anpr_audit", METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("tenant", String(63), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(16), nullable=False),
    Column("actor_role", String(16), nullable=False),
    Column("action", String(40), nullable=False),
    Column("subject", String(16), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("reference", String(64), nullable=True),
)

certificate_requests = Table(
    "anpr_certificate_requests", METADATA,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(63), nullable=False, index=True),
    Column("requester", String(16), nullable=False),
    Column("requester_surname", String(80), nullable=True),  # only when someone else asks at the counter
    Column("requester_name", String(80), nullable=True),
    Column("subject", String(16), nullable=False),
    Column("subject_surname", String(80), nullable=False),
    Column("subject_name", String(80), nullable=False),
    Column("certificate_type", Integer, nullable=False),
    Column("channel", String(10), nullable=False),
    Column("operator", String(16), nullable=True),
    Column("stamp_duty_cents", Integer, nullable=False),
    Column("exemption", Integer, nullable=True),
    Column("exemption_description", String(256), nullable=True),
    Column("status", String(20), nullable=False),
    Column("failure", Text, nullable=True),
    Column("operation_seq", Integer, nullable=False),
    Column("io_service", String(41), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

certificates = Table(
    "anpr_certificates", METADATA,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(63), nullable=False, index=True),
    Column("request_id", String(36), nullable=False),
    Column("verification_code", String(19), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("protocol", String(30), nullable=True),
    Column("document", LargeBinary, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("request_id", name="uq_anpr_certificates_request_id"),
    UniqueConstraint("verification_code", name="uq_anpr_certificates_verification_code"),
)
