"""The delivery state machine on SQLite with a fake IO port: never lose, never send twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from sandbox.appio import seed
from services.appio import delivery
from services.appio.domain import delivery as sm
from services.appio.domain.errors import (
    InvalidMessage,
    IOBadRequest,
    IOMalformedReply,
    IOOutcomeUnknown,
    IOServerError,
    IOThrottled,
    IOUnavailable,
)
from services.appio.models import messages
from sportello.db import Database
from sportello.errors import NotFound
from sportello.tables import outbox
from sportello.tenants import TenantRegistry

PAYMENT = {"description": "TARI 2027 prima rata", "amount_cents": 15_490, "notice_number": "347000000000012345",
           "payee_fiscal_code": "00297960197", "due_date": "2027-03-31"}


def record(db: Database, tenants: TenantRegistry, recipient: str, *, dedup: str = "k1", kind: str = "payment_notice",
           variables: dict[str, Any] | None = None, tenant: str = "cremona", io_service: str | None = None) -> str:
    with db.transaction() as session:
        recorded = delivery.record_message(session, tenant=tenants.get(tenant), dedup_key=dedup,
                                           io_service=io_service, kind=kind, recipient=recipient,
                                           variables=variables or PAYMENT, correlation_id="corr-12345678",
                                           reference="pos-1")
    return recorded.message_id


def events(db: Database) -> list[dict[str, Any]]:
    with db.transaction() as session:
        return [json.loads(row.body) for row in session.execute(select(outbox.c.body).order_by(outbox.c.id))]


def state(db: Database, message_id: str) -> Any:
    with db.transaction() as session:
        return session.execute(select(messages).where(messages.c.id == message_id)).one()


@pytest.fixture
def deliverer(appio_db, fake_io, tenants, clock) -> delivery.Deliverer:
    policy = sm.RetryPolicy(max_attempts=4, base_seconds=1, status_poll_seconds=2, follow_seconds=600)
    return delivery.Deliverer(appio_db, fake_io, tenants, policy=policy, lease_seconds=30, clock=clock)


def drain(deliverer: delivery.Deliverer, clock, *, rounds: int = 50, step: float = 5.0) -> None:
    for _ in range(rounds):
        deliverer.resolve_abandoned()
        for message_id in deliverer.due():
            deliverer.process(message_id)
        clock.advance(step)


def test_payment_message_is_checked_sent_followed_and_announced_once(appio_db, tenants, deliverer, fake_io,
                                                                     clock) -> None:
    citizen = seed.ON_IO[0]
    message_id = record(appio_db, tenants, citizen)
    assert deliverer.process(message_id) == sm.SUBMITTED
    assert fake_io.calls == ["profile", "submit"]
    limiter_key, sent_to, content = fake_io.sent[0]
    assert (limiter_key, sent_to) == ("cremona/anagrafe", citizen)
    body = content.to_io(citizen)["content"]
    assert body["payment_data"] == {"amount": 15_490, "notice_number": "347000000000012345",
                                    "invalid_after_due_date": False, "payee": {"fiscal_code": "00297960197"}}
    assert body["due_date"] == "2027-03-31T00:00:00.000Z" and "154,90" in body["markdown"]
    assert deliverer.due() == []  # the first status poll is not due yet
    drain(deliverer, clock)
    row = state(appio_db, message_id)
    assert row.state == sm.SENT and row.io_status == "PROCESSED"
    sent = [e for e in events(appio_db)]
    assert [e["type"] for e in sent] == ["it.sportello.appio.message.sent.v1"]
    assert sent[0]["data"]["io_message_id"] == row.io_message_id and sent[0]["subject"] == message_id
    assert len(fake_io.sent) == 1


def test_recording_twice_with_the_same_key_is_one_logical_message(appio_db, tenants) -> None:
    first = record(appio_db, tenants, seed.ON_IO[0])
    assert record(appio_db, tenants, seed.ON_IO[0]) == first
    assert record(appio_db, tenants, seed.ON_IO[0], tenant="lodi") != first  # keys are per tenant


@pytest.mark.parametrize(("citizen", "reason"), [(seed.NOT_ON_IO[0], "not_on_io"),
                                                  (seed.NOT_ALLOWED[0], "sender_not_allowed")])
def test_not_deliverable_is_terminal_reported_and_never_retried(appio_db, tenants, deliverer, fake_io, clock,
                                                                citizen, reason) -> None:
    message_id = record(appio_db, tenants, citizen)
    drain(deliverer, clock, rounds=5)
    row = state(appio_db, message_id)
    assert (row.state, row.outcome_reason) == (sm.NOT_DELIVERABLE, reason)
    assert fake_io.calls == ["profile"] and fake_io.sent == []
    [event] = events(appio_db)
    assert event["type"] == "it.sportello.appio.message.not_deliverable.v1" and event["data"]["reason"] == reason


def test_english_speakers_get_the_english_template(appio_db, tenants, deliverer, fake_io) -> None:
    deliverer.process(record(appio_db, tenants, seed.ENGLISH[0]))
    assert fake_io.sent[0][2].subject.startswith("Payment notice")


def test_transient_failures_are_retried_with_back_off_then_sent_once(appio_db, tenants, deliverer, fake_io,
                                                                     clock) -> None:
    throttled = IOThrottled("slow down")
    throttled.retry_after = 7
    fake_io.failures = {"profile": [IOServerError("500"), IOMalformedReply("junk")],
                        "submit": [throttled, IOUnavailable("refused")]}
    message_id = record(appio_db, tenants, seed.ON_IO[1])
    assert deliverer.process(message_id) == sm.PENDING
    assert deliverer.due() == []  # backing off
    drain(deliverer, clock)
    assert state(appio_db, message_id).state == sm.SENT
    assert len(fake_io.sent) == 1
    assert fake_io.calls.count("submit") == 3


def test_a_submission_whose_answer_is_lost_is_in_doubt_and_never_resent(appio_db, tenants, deliverer, fake_io,
                                                                        clock) -> None:
    fake_io.failures = {"submit": [IOOutcomeUnknown("read timeout")]}
    message_id = record(appio_db, tenants, seed.ON_IO[2])
    drain(deliverer, clock, rounds=10)
    row = state(appio_db, message_id)
    assert (row.state, row.outcome_reason) == (sm.IN_DOUBT, "submission_in_doubt")
    assert fake_io.calls.count("submit") == 1
    assert [e["data"]["reason"] for e in events(appio_db)] == ["submission_in_doubt"]


def test_a_worker_that_died_mid_submission_leaves_it_in_doubt_not_resent(appio_db, tenants, deliverer, fake_io,
                                                                         clock) -> None:
    """The crash window: intent committed, call made, process killed before the IO id was stored."""
    class Killed(BaseException):
        pass

    def die() -> None:
        raise Killed

    fake_io.on_submit = die
    message_id = record(appio_db, tenants, seed.ON_IO[3])
    with pytest.raises(Killed):
        deliverer.process(message_id)
    fake_io.on_submit = None
    assert state(appio_db, message_id).state == sm.SUBMITTING
    drain(deliverer, clock, rounds=3, step=5)  # lease (30 s) not yet expired: nobody touches it
    assert state(appio_db, message_id).state == sm.SUBMITTING
    drain(deliverer, clock, rounds=10, step=5)
    assert state(appio_db, message_id).state == sm.IN_DOUBT
    assert fake_io.calls.count("submit") == 0  # died before the fake recorded the call; never sent again


def test_a_crash_before_the_intent_is_recorded_is_simply_retried(appio_db, tenants, deliverer, fake_io,
                                                                 clock) -> None:
    class Killed(BaseException):
        pass

    message_id = record(appio_db, tenants, seed.ON_IO[4])
    original = fake_io.get_profile

    def die(*args: Any) -> Any:
        raise Killed

    fake_io.get_profile = die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        deliverer.process(message_id)
    fake_io.get_profile = original  # type: ignore[method-assign]
    drain(deliverer, clock)
    assert state(appio_db, message_id).state == sm.SENT and len(fake_io.sent) == 1


def test_refused_by_io_and_exhausted_retries_end_failed_with_an_event(appio_db, tenants, deliverer, fake_io,
                                                                      clock) -> None:
    fake_io.failures = {"submit": [IOBadRequest("HTTP 400")]}
    refused = record(appio_db, tenants, seed.ON_IO[0], dedup="a")
    deliverer.process(refused)
    fake_io.failures = {"profile": [IOServerError("x")] * 4}
    exhausted = record(appio_db, tenants, seed.ON_IO[1], dedup="b")
    drain(deliverer, clock)
    assert state(appio_db, refused).state == sm.FAILED
    assert (state(appio_db, exhausted).state, state(appio_db, exhausted).attempts) == (sm.FAILED, 4)
    assert [e["type"] for e in events(appio_db)] == ["it.sportello.appio.message.failed.v1"] * 2


def test_io_rejection_after_submission_is_a_failure(appio_db, tenants, deliverer, fake_io, clock) -> None:
    fake_io.statuses = ["ACCEPTED", "THROTTLED", "REJECTED"]
    message_id = record(appio_db, tenants, seed.ON_IO[0])
    drain(deliverer, clock)
    row = state(appio_db, message_id)
    assert (row.state, row.outcome_reason) == (sm.FAILED, "io_status_rejected")
    assert fake_io.calls.count("status") == 3


def test_invalid_content_is_refused_before_anything_is_stored(appio_db, tenants) -> None:
    with pytest.raises(InvalidMessage, match="amount"):
        record(appio_db, tenants, seed.ON_IO[0], variables={**PAYMENT, "amount_cents": 0})
    with pytest.raises(InvalidMessage, match="fiscal code"):
        record(appio_db, tenants, "RSSMRA85T10A562X")
    with appio_db.transaction() as session:
        assert session.execute(select(messages)).all() == []


def test_messages_are_visible_only_to_their_tenant(appio_db, tenants) -> None:
    message_id = record(appio_db, tenants, seed.ON_IO[0])
    with appio_db.transaction() as session:
        assert delivery.get_message(session, "cremona", message_id)["state"] == sm.PENDING
        with pytest.raises(NotFound):
            delivery.get_message(session, "lodi", message_id)


def test_the_named_io_service_is_used_and_an_unknown_one_refused(appio_db, tenants, deliverer, fake_io) -> None:
    deliverer.process(record(appio_db, tenants, seed.ON_IO[0], io_service="tributi"))
    assert fake_io.sent[0][0] == "cremona/tributi"
    with pytest.raises(Exception, match="no IO service named"):
        record(appio_db, tenants, seed.ON_IO[1], dedup="x", io_service="elettorale")


def test_campaign_delivers_once_per_citizen_and_reports_each_outcome(appio_db, tenants, deliverer, fake_io,
                                                                     clock) -> None:
    people = [seed.ON_IO[0], seed.ON_IO[1], seed.NOT_ON_IO[0], seed.NOT_ALLOWED[0], seed.ON_IO[0].lower()]
    with appio_db.transaction() as session:
        created = delivery.create_campaign(
            session, tenant=tenants.get("cremona"), name="Chiusura uffici", subject="Chiusura uffici anagrafe",
            markdown="Gli uffici dell'anagrafe resteranno chiusi lunedì 3 maggio per lavori di manutenzione. " * 2,
            fiscal_codes=people, io_service=None, correlation_id="corr-12345678", idempotency_key="c-1")
    assert (created["recipients"], created["duplicates_dropped"]) == (4, 1)
    with appio_db.transaction() as session:
        again = delivery.create_campaign(
            session, tenant=tenants.get("cremona"), name="x", subject="irrelevant", markdown="y",
            fiscal_codes=people, io_service=None, correlation_id="c", idempotency_key="c-1")
    assert again["campaign_id"] == created["campaign_id"]
    drain(deliverer, clock)
    with appio_db.transaction() as session:
        progress = delivery.campaign_progress(session, "cremona", created["campaign_id"])
        report = delivery.campaign_report(session, "cremona", created["campaign_id"])
    assert progress["done"] and progress["outcomes"] == {"pending": 0, "sent": 2, "not_on_io": 1,
                                                         "not_allowed": 1, "failed": 0, "in_doubt": 0}
    assert {item["fiscal_code"]: item["outcome"] for item in report["items"]} == {
        seed.ON_IO[0]: "sent", seed.ON_IO[1]: "sent", seed.NOT_ON_IO[0]: "not_on_io",
        seed.NOT_ALLOWED[0]: "not_allowed"}
    assert sorted(cf for _k, cf, _c in fake_io.sent) == sorted([seed.ON_IO[0], seed.ON_IO[1]])


def test_campaign_with_a_bad_fiscal_code_is_refused_whole(appio_db, tenants) -> None:
    with appio_db.transaction() as session, pytest.raises(InvalidMessage, match="position"):
        delivery.create_campaign(session, tenant=tenants.get("cremona"), name="n", subject="Oggetto valido",
                                 markdown="m" * 100, fiscal_codes=[seed.ON_IO[0], "NOTACODE"], io_service=None,
                                 correlation_id="c")

