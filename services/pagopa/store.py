"""Persistence of payment positions and the IUV counter (SQLAlchemy Core; SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.pagopa.domain.positions import (
    Debtor,
    DigitalStamp,
    PaymentPosition,
    PositionRequest,
    PositionStatus,
    Transfer,
)
from services.pagopa.models import iuv_counters, positions


def allocate_iuv_bases(session: Session, tenant: str, segregation_code: str, count: int = 1) -> range:
    """Reserve `count` consecutive IUV bases for the tenant, inside the caller's transaction.

    The counter row is created on first use; the increment holds the row lock until commit, so two
    transactions never receive the same base (a rolled-back one leaves a harmless gap).
    """
    if count < 1:
        raise ValueError("count must be >= 1")
    dialect = session.get_bind().dialect.name
    make_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(make_insert(iuv_counters).values(tenant=tenant, segregation_code=segregation_code, last_value=0)
                    .on_conflict_do_nothing())
    last = session.execute(
        sa.update(iuv_counters)
        .where(iuv_counters.c.tenant == tenant, iuv_counters.c.segregation_code == segregation_code)
        .values(last_value=iuv_counters.c.last_value + count)
        .returning(iuv_counters.c.last_value)
    ).scalar_one()
    return range(int(last) - count + 1, int(last) + 1)


def _transfers_json(transfers: list[Transfer]) -> str:
    return json.dumps([asdict(t) for t in transfers], separators=(",", ":"))


def _transfers_from(text: str) -> list[Transfer]:
    out = []
    for item in json.loads(text):
        stamp = item.pop("stamp", None)
        out.append(Transfer(**item, stamp=DigitalStamp(**stamp) if stamp else None))
    return out


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def to_row(position: PaymentPosition) -> dict[str, Any]:
    r = position.request
    return dict(
        id=position.id, tenant=position.tenant, iupd=position.iupd, iuv=position.iuv,
        notice_number=position.notice_number, status=position.status.value, amount_cents=r.amount_cents,
        due_date=r.due_date, description=r.description, debtor_kind=r.debtor.kind,
        debtor_fiscal_code=r.debtor.fiscal_code, debtor_name=r.debtor.full_name,
        transfers=_transfers_json(r.transfers), purpose=r.purpose, reference=r.reference,
        campaign_id=r.campaign_id, io_service=r.io_service, paid_at=position.paid_at, receipt_id=position.receipt_id,
    )


def from_row(row: Any, *, payee_fiscal_code: str, company_name: str) -> PaymentPosition:
    m = row._mapping
    request = PositionRequest(
        description=m["description"], amount_cents=int(m["amount_cents"]), due_date=m["due_date"],
        debtor=Debtor(m["debtor_kind"], m["debtor_fiscal_code"], m["debtor_name"]),
        transfers=_transfers_from(m["transfers"]), purpose=m["purpose"], reference=m["reference"],
        campaign_id=m["campaign_id"], io_service=m["io_service"],
    )
    return PaymentPosition(
        id=m["id"], tenant=m["tenant"], iupd=m["iupd"], iuv=m["iuv"], notice_number=m["notice_number"],
        payee_fiscal_code=payee_fiscal_code, company_name=company_name, request=request,
        status=PositionStatus(m["status"]), created_at=_aware(m["created_at"]), paid_at=_aware(m["paid_at"]),
        receipt_id=m["receipt_id"],
    )


def insert(session: Session, position: PaymentPosition) -> None:
    now = datetime.now(UTC)
    session.execute(sa.insert(positions).values(**to_row(position), created_at=now, updated_at=now))


def save_state(session: Session, position: PaymentPosition) -> None:
    session.execute(
        sa.update(positions).where(positions.c.id == position.id, positions.c.tenant == position.tenant)
        .values(status=position.status.value, paid_at=position.paid_at, receipt_id=position.receipt_id,
                updated_at=datetime.now(UTC))
    )


def select_one(session: Session, tenant: str, *, position_id: str | None = None, reference: tuple[str, str] | None
               = None, notice_number: str | None = None, for_update: bool = False) -> Any:
    query = sa.select(positions).where(positions.c.tenant == tenant)
    if position_id is not None:
        query = query.where(positions.c.id == position_id)
    if reference is not None:
        query = query.where(positions.c.purpose == reference[0], positions.c.reference == reference[1])
    if notice_number is not None:
        query = query.where(positions.c.notice_number == notice_number)
    if for_update and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.execute(query).first()


def select_many(session: Session, tenant: str, *, status: str | None = None, debtor_fiscal_code: str | None = None,
                purpose: str | None = None, campaign_id: str | None = None, due_before: Any = None,
                notice_number: str | None = None, reference: str | None = None,
                limit: int = 50, offset: int = 0) -> list[Any]:
    query = sa.select(positions).where(positions.c.tenant == tenant)
    if notice_number is not None:
        query = query.where(positions.c.notice_number == notice_number)
    if reference is not None:
        query = query.where(positions.c.reference == reference)
    if status is not None:
        query = query.where(positions.c.status == status)
    if debtor_fiscal_code is not None:
        query = query.where(positions.c.debtor_fiscal_code == debtor_fiscal_code)
    if purpose is not None:
        query = query.where(positions.c.purpose == purpose)
    if campaign_id is not None:
        query = query.where(positions.c.campaign_id == campaign_id)
    if due_before is not None:
        query = query.where(positions.c.due_date < due_before)
    query = query.order_by(positions.c.created_at.desc(), positions.c.id).limit(limit).offset(offset)
    return list(session.execute(query))
