"""Dead letters on a real SQLite file: recorded once, listed per tenant, replayed into their queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pytest

from sportello.db import Database
from sportello.deadletters import DeadLetter, DeadLetterStore, IncomingDeadLetter, QueueRepublisher
from sportello.errors import NotFound, ValidationFailed


@dataclass
class FakeRepublisher:
    """Implements sportello.deadletters.QueueRepublisher; records calls, fails when told to."""

    fail: bool = False
    calls: list[dict[str, str]] = field(default_factory=list)

    def republish(self, queue: str, body: str, content_type: str, *, dead_letter_id: str) -> None:
        if self.fail:
            raise ConnectionError("broker went away")
        self.calls.append({"queue": queue, "body": body, "content_type": content_type,
                           "dead_letter_id": dead_letter_id})


def letter(n: int, tenant: str | None = "cremona", **overrides: object) -> IncomingDeadLetter:
    values: dict[str, object] = {
        "dead_letter_id": f"dl-{n}", "queue": "anpr.on_payment_completed",
        "reason": "event.malformed: it.sportello.pagopa.payment.completed.v1: invalid data.iuv (missing)",
        "attempts": 3, "body": f'{{"id": "e-{n}", "tenant": "{tenant}"}}', "content_type": "application/json",
        "event_id": f"e-{n}", "event_type": "it.sportello.pagopa.payment.completed.v1", "tenant": tenant,
    }
    values.update(overrides)
    return IncomingDeadLetter(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(database: Database) -> DeadLetterStore:
    return DeadLetterStore(database)


def test_fake_republisher_implements_the_port() -> None:
    republisher: QueueRepublisher = FakeRepublisher()
    assert republisher is not None


def test_record_and_list(store: DeadLetterStore) -> None:
    assert store.record(letter(1)) is True
    [listed] = store.list()
    assert isinstance(listed, DeadLetter)
    assert listed.queue == "anpr.on_payment_completed"
    assert listed.event_id == "e-1"
    assert listed.event_type == "it.sportello.pagopa.payment.completed.v1"
    assert listed.tenant == "cremona"
    assert listed.attempts == 3
    assert listed.reason.startswith("event.malformed:")
    assert listed.replayed_at is None and listed.replay_count == 0
    assert datetime.fromisoformat(listed.dead_lettered_at).tzinfo is not None
    assert "body" not in listed.as_dict(), "operators never see the body (it may carry personal data)"


def test_record_is_idempotent_by_dead_letter_id(store: DeadLetterStore) -> None:
    assert store.record(letter(1)) is True
    assert store.record(letter(1, reason="redelivered copy")) is False
    assert len(store.list()) == 1
    assert store.count_pending() == 1


def test_long_reason_is_cut(store: DeadLetterStore) -> None:
    store.record(letter(1, reason="x" * 5000))
    assert len(store.list()[0].reason) == 2000


def test_letter_without_event_metadata(store: DeadLetterStore) -> None:
    store.record(letter(1, tenant=None, event_id=None, event_type=None, body="\ufffd not json",
                        content_type="application/octet-stream"))
    [listed] = store.list()
    assert (listed.tenant, listed.event_id, listed.event_type) == (None, None, None)
    assert store.list(tenant="cremona") == []


def test_list_filters_by_tenant_and_pending(store: DeadLetterStore) -> None:
    for n, tenant in enumerate(["cremona", "crema", "cremona", "lodi"], start=1):
        store.record(letter(n, tenant=tenant))
    assert [d.event_id for d in store.list()] == ["e-1", "e-2", "e-3", "e-4"]
    assert [d.event_id for d in store.list(tenant="cremona")] == ["e-1", "e-3"]
    assert [d.event_id for d in store.list(tenant="crema")] == ["e-2"]
    assert store.list(tenant="milano") == []
    cremona_first = store.list(tenant="cremona")[0]
    store.replay(cremona_first.id, FakeRepublisher(), tenant="cremona")
    assert [d.event_id for d in store.list(tenant="cremona")] == ["e-3"]
    assert [d.event_id for d in store.list(tenant="cremona", pending_only=False)] == ["e-1", "e-3"]
    assert [d.event_id for d in store.list()] == ["e-2", "e-3", "e-4"]
    assert store.count_pending() == 3


def test_list_limit(store: DeadLetterStore) -> None:
    for n in range(5):
        store.record(letter(n))
    assert [d.event_id for d in store.list(limit=2)] == ["e-0", "e-1"]
    assert len(store.list(limit=1000)) == 5


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limit_bounds(store: DeadLetterStore, limit: int) -> None:
    with pytest.raises(ValidationFailed, match="limit must be between 1 and 1000"):
        store.list(limit=limit)


def test_replay_republishes_into_the_original_queue(store: DeadLetterStore) -> None:
    original = letter(1, queue="pagopa.on_certificate_requested", body='{"id":"e-1","data":{"x":1}}',
                      content_type="application/cloudevents+json")
    store.record(original)
    [listed] = store.list()
    republisher = FakeRepublisher()
    replayed = store.replay(listed.id, republisher)
    assert republisher.calls == [{"queue": "pagopa.on_certificate_requested",
                                  "body": '{"id":"e-1","data":{"x":1}}',
                                  "content_type": "application/cloudevents+json", "dead_letter_id": "dl-1"}]
    assert replayed.id == listed.id
    assert replayed.replay_count == 1
    assert replayed.replayed_at is not None
    assert datetime.fromisoformat(replayed.replayed_at).tzinfo is not None
    assert store.list() == []
    assert store.count_pending() == 0
    again = store.replay(listed.id, republisher)
    assert again.replay_count == 2
    assert len(republisher.calls) == 2


def test_replay_with_the_right_tenant(store: DeadLetterStore) -> None:
    store.record(letter(1, tenant="cremona"))
    letter_id = store.list()[0].id
    assert store.replay(letter_id, FakeRepublisher(), tenant="cremona").replay_count == 1


def test_replay_of_another_tenants_letter_is_not_found(store: DeadLetterStore) -> None:
    store.record(letter(1, tenant="crema"))
    store.record(letter(2, tenant=None))
    crema_id, anonymous_id = (d.id for d in store.list())
    republisher = FakeRepublisher()
    for letter_id in (crema_id, anonymous_id):
        with pytest.raises(NotFound, match=f"no dead letter {letter_id}"):
            store.replay(letter_id, republisher, tenant="cremona")
    assert republisher.calls == []
    assert store.count_pending() == 2


def test_replay_of_unknown_letter(store: DeadLetterStore) -> None:
    with pytest.raises(NotFound, match="no dead letter 999"):
        store.replay(999, FakeRepublisher())


def test_failed_republish_leaves_the_letter_pending(store: DeadLetterStore) -> None:
    store.record(letter(1))
    letter_id = store.list()[0].id
    with pytest.raises(ConnectionError):
        store.replay(letter_id, FakeRepublisher(fail=True))
    [still] = store.list()
    assert still.replayed_at is None and still.replay_count == 0
    assert store.replay(letter_id, FakeRepublisher()).replay_count == 1
