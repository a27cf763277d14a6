from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.pagopa.application import Positions, position_view
from services.pagopa.domain.errors import GpdUnavailable, InvalidTransition
from services.pagopa.domain.iuv import is_valid_notice_number
from services.pagopa.domain.positions import PositionStatus
from sportello.contracts.anpr import StampDutyRequested
from sportello.db import Database
from sportello.errors import NotFound, ValidationFailed
from sportello.events import parse_event
from sportello.tables import outbox
from tests.unit.pagopa.support import CITIZEN, FakeGpd, migrated, registry, request, tenant

TODAY = date(2026, 11, 21)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = migrated(tmp_path)
    yield db
    db.dispose()


@pytest.fixture
def gpd() -> FakeGpd:
    return FakeGpd()


@pytest.fixture
def app(database: Database, gpd: FakeGpd) -> Positions:
    return Positions(database, registry(tenant(), tenant("lodi", segregation="12")), gpd, today=lambda: TODAY,
                     correlation_id="corr-test-0001")


def events(database: Database) -> list[dict[str, object]]:
    with database.transaction() as session:
        bodies = session.execute(sa.select(outbox.c.body).order_by(outbox.c.id)).scalars().all()
    return [json.loads(b) for b in bodies]


def test_create_publishes_on_gpd_and_emits_created(app: Positions, gpd: FakeGpd, database: Database) -> None:
    position = app.create("cremona", request())
    assert position.status is PositionStatus.PUBLISHED
    assert is_valid_notice_number(position.notice_number)
    assert position.notice_number[1:3] == "01" and position.iuv == position.notice_number[1:]
    assert gpd.positions[position.iupd] == "VALID"
    [event] = events(database)
    envelope = parse_event(event)
    assert envelope.type == "it.sportello.pagopa.payment.position.created.v1"
    assert envelope.tenant == "cremona" and envelope.correlationid == "corr-test-0001"
    assert envelope.data.notice_number == position.notice_number
    assert envelope.data.amount_cents == 1600 and envelope.data.payee_fiscal_code == "00297960197"


def test_notice_numbers_are_consecutive_and_per_tenant(app: Positions) -> None:
    a = app.create("cremona", request())
    b = app.create("cremona", request())
    c = app.create("lodi", request())
    assert int(a.notice_number[3:16]) + 1 == int(b.notice_number[3:16])
    assert c.notice_number[1:3] == "12" and int(c.notice_number[3:16]) == 1


def test_same_reference_gives_the_same_position(app: Positions, gpd: FakeGpd, database: Database) -> None:
    first = app.create("cremona", request(reference="req-1"))
    again = app.create("cremona", request(reference="req-1"))
    assert again.id == first.id
    assert [c for c in gpd.calls if c[0] == "create"] == [("create", first.iupd)]
    assert len(events(database)) == 1


def test_gpd_down_leaves_a_draft_that_a_retry_resumes(app: Positions, gpd: FakeGpd, database: Database) -> None:
    gpd.fail_next = 1
    with pytest.raises(GpdUnavailable):
        app.create("cremona", request(reference="req-2"))
    [draft] = app.list("cremona")
    assert draft.status is PositionStatus.DRAFT and events(database) == []
    resumed = app.create("cremona", request(reference="req-2"))
    assert resumed.id == draft.id and resumed.notice_number == draft.notice_number
    assert resumed.status is PositionStatus.PUBLISHED
    assert len(events(database)) == 1


def test_invalid_input_stores_nothing(app: Positions, database: Database, gpd: FakeGpd) -> None:
    with pytest.raises(ValidationFailed):
        app.create("cremona", request(amount=0))
    assert app.list("cremona") == [] and gpd.calls == []


def test_invalidate(app: Positions, gpd: FakeGpd, database: Database) -> None:
    position = app.create("cremona", request())
    done = app.invalidate("cremona", position.id)
    assert done.status is PositionStatus.INVALIDATED and gpd.positions[position.iupd] == "INVALID"
    assert events(database)[-1]["type"] == "it.sportello.pagopa.payment.position.invalidated.v1"
    with pytest.raises(InvalidTransition):
        app.invalidate("cremona", position.id)


def test_payment_once_and_duplicates_change_nothing(app: Positions, database: Database) -> None:
    position = app.create("cremona", request(reference="req-3"))
    when = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    paid, changed = app.record_payment("cremona", position.notice_number, receipt_id="rcpt-1", paid_at=when,
                                       amount_cents=1600)
    assert changed and paid.status is PositionStatus.PAID
    again, changed_again = app.record_payment("cremona", position.notice_number, receipt_id="rcpt-1", paid_at=when,
                                              amount_cents=1600)
    assert not changed_again and again.receipt_id == "rcpt-1"
    completed = [e for e in events(database) if e["type"] == "it.sportello.pagopa.payment.completed.v1"]
    assert len(completed) == 1
    assert completed[0]["data"]["reference"] == "req-3"  # type: ignore[index]
    with pytest.raises(InvalidTransition):
        app.invalidate("cremona", position.id)
    with pytest.raises(NotFound):
        app.record_payment("cremona", "3" + "0" * 17, receipt_id="x", paid_at=when, amount_cents=1)


def test_expiry(app: Positions, database: Database) -> None:
    position = app.create("cremona", request(due=TODAY))
    later = Positions(database, app.tenants, app.gpd, today=lambda: date(2026, 12, 1))
    assert later.expire_overdue("cremona") == 1
    assert later.get("cremona", position.id).status is PositionStatus.EXPIRED
    assert later.expire_overdue("cremona") == 0
    assert events(database)[-1]["type"] == "it.sportello.pagopa.payment.position.expired.v1"


def test_tenant_isolation(app: Positions) -> None:
    position = app.create("cremona", request())
    with pytest.raises(NotFound):
        app.get("lodi", position.id)
    assert app.list("lodi") == []
    assert [p.id for p in app.list("cremona", debtor_fiscal_code=CITIZEN)] == [position.id]


def test_stamp_duty_requested_is_idempotent_by_request_id(app: Positions, database: Database) -> None:
    event = StampDutyRequested(request_id="cert-42", debtor_fiscal_code=CITIZEN, amount_cents=1600,
                               description="Bollo certificato di residenza")
    first = app.on_stamp_duty_requested("cremona", event)
    second = app.on_stamp_duty_requested("cremona", event)
    assert first.id == second.id
    view = position_view(first)
    assert view["purpose"] == "certificate_stamp_duty" and view["reference"] == "cert-42"
    assert view["amount_cents"] == 1600 and view["status"] == "published"
    assert len(events(database)) == 1
