"""An operator settles an in-doubt message: 'mark sent' only when IO confirms the id; 'resend' only
when explicitly confirmed; both only while the message is still in doubt (docs/adr/0007)."""

from __future__ import annotations

import pytest

from sandbox.appio import seed
from services.appio import delivery
from services.appio.domain import delivery as sm
from services.appio.domain.errors import IOOutcomeUnknown, MessageNotInDoubt, NotConfirmedByIO
from sportello.errors import NotFound, ValidationFailed
from tests.unit.appio.test_delivery import drain, events, record, state

OPERATOR = "VRDLGU70A01D150D"


@pytest.fixture
def deliverer(appio_db, fake_io, tenants, clock) -> delivery.Deliverer:
    policy = sm.RetryPolicy(max_attempts=4, base_seconds=1, status_poll_seconds=2, follow_seconds=600)
    return delivery.Deliverer(appio_db, fake_io, tenants, policy=policy, lease_seconds=30, clock=clock)


def in_doubt(appio_db, tenants, deliverer, fake_io, clock, citizen: str, dedup: str = "k1") -> str:
    fake_io.failures = {"submit": [IOOutcomeUnknown("read timeout")]}
    message_id = record(appio_db, tenants, citizen, dedup=dedup)
    drain(deliverer, clock, rounds=5)
    assert state(appio_db, message_id).state == sm.IN_DOUBT
    return message_id


def test_mark_sent_when_io_confirms_the_id(appio_db, tenants, deliverer, fake_io, clock) -> None:
    citizen = seed.ON_IO[0]
    message_id = in_doubt(appio_db, tenants, deliverer, fake_io, clock, citizen)
    io_id = fake_io.hold(citizen)
    view = deliverer.resolve_in_doubt("cremona", message_id, action="mark_sent", operator=OPERATOR,
                                      io_message_id=f" {io_id} ")
    assert (view["state"], view["io_message_id"], view["io_status"]) == ("sent", io_id, "PROCESSED")
    assert view["resolution"]["action"] == "mark_sent" and view["resolution"]["by"] == OPERATOR
    assert [e["type"].rsplit(".", 2)[-2] for e in events(appio_db)] == ["failed", "sent"]
    assert fake_io.sent == []  # nothing submitted again
    with pytest.raises(MessageNotInDoubt):
        deliverer.resolve_in_doubt("cremona", message_id, action="resend", operator=OPERATOR, confirm=True)


def test_mark_sent_of_an_accepted_message_is_followed_until_final(appio_db, tenants, deliverer, fake_io,
                                                                   clock) -> None:
    citizen = seed.ON_IO[1]
    message_id = in_doubt(appio_db, tenants, deliverer, fake_io, clock, citizen)
    io_id = fake_io.hold(citizen)
    fake_io.statuses = ["ACCEPTED", "ACCEPTED"]
    view = deliverer.resolve_in_doubt("cremona", message_id, action="mark_sent", operator=OPERATOR,
                                      io_message_id=io_id)
    assert view["state"] == sm.SUBMITTED
    drain(deliverer, clock)
    assert (state(appio_db, message_id).state, state(appio_db, message_id).io_status) == (sm.SENT, "PROCESSED")


def test_mark_sent_with_an_id_io_does_not_have_changes_nothing(appio_db, tenants, deliverer, fake_io,
                                                               clock) -> None:
    citizen = seed.ON_IO[2]
    message_id = in_doubt(appio_db, tenants, deliverer, fake_io, clock, citizen)
    other = fake_io.hold(seed.ON_IO[3])  # IO has it, but for another citizen
    for io_id in ("01UNKNOWN", other):
        with pytest.raises(NotConfirmedByIO):
            deliverer.resolve_in_doubt("cremona", message_id, action="mark_sent", operator=OPERATOR,
                                       io_message_id=io_id)
    fake_io.statuses = ["REJECTED"]
    with pytest.raises(NotConfirmedByIO, match="REJECTED"):
        deliverer.resolve_in_doubt("cremona", message_id, action="mark_sent", operator=OPERATOR,
                                   io_message_id=fake_io.hold(citizen))
    with pytest.raises(ValidationFailed):
        deliverer.resolve_in_doubt("cremona", message_id, action="mark_sent", operator=OPERATOR)
    assert state(appio_db, message_id).state == sm.IN_DOUBT and state(appio_db, message_id).resolution is None


def test_resend_needs_confirmation_then_sends_exactly_once(appio_db, tenants, deliverer, fake_io, clock) -> None:
    citizen = seed.ON_IO[4]
    message_id = in_doubt(appio_db, tenants, deliverer, fake_io, clock, citizen)
    for confirm in (False, "yes"):
        with pytest.raises(ValidationFailed, match="confirm"):
            deliverer.resolve_in_doubt("cremona", message_id, action="resend", operator=OPERATOR,
                                       confirm=confirm)  # type: ignore[arg-type]
    assert state(appio_db, message_id).state == sm.IN_DOUBT
    view = deliverer.resolve_in_doubt("cremona", message_id, action="resend", operator=OPERATOR, confirm=True)
    assert view["state"] == sm.PENDING and view["resolution"]["action"] == "resend"
    with pytest.raises(MessageNotInDoubt):  # a second operator clicking too late
        deliverer.resolve_in_doubt("cremona", message_id, action="resend", operator=OPERATOR, confirm=True)
    drain(deliverer, clock)
    assert state(appio_db, message_id).state == sm.SENT
    assert [cf for _key, cf, _content in fake_io.sent] == [citizen]


def test_resolution_is_per_tenant_and_for_known_actions(appio_db, tenants, deliverer, fake_io, clock) -> None:
    message_id = in_doubt(appio_db, tenants, deliverer, fake_io, clock, seed.ON_IO[0])
    with pytest.raises(NotFound):
        deliverer.resolve_in_doubt("lodi", message_id, action="resend", operator=OPERATOR, confirm=True)
    with pytest.raises(ValidationFailed):
        deliverer.resolve_in_doubt("cremona", message_id, action="forget", operator=OPERATOR)
    sent = record(appio_db, tenants, seed.ON_IO[1], dedup="k2")
    drain(deliverer, clock)
    with pytest.raises(MessageNotInDoubt):
        deliverer.resolve_in_doubt("cremona", sent, action="resend", operator=OPERATOR, confirm=True)
    with appio_db.transaction() as session:
        listed = delivery.list_messages(session, "cremona", state=sm.IN_DOUBT)
        assert [m["message_id"] for m in listed] == [message_id]
        assert delivery.list_messages(session, "lodi") == []
        with pytest.raises(ValidationFailed):
            delivery.list_messages(session, "cremona", state="lost")
