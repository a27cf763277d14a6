"""The relay's batch publish (`ConfirmingPublisher.publish_events`) against a real RabbitMQ.

A batch goes out in one socket write and its confirms are awaited at once; what must still hold
is what the outbox relies on: every message arrives whole, persistent and in order, and the count
returned is exactly the prefix the broker confirmed, so the relay marks those rows and no others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Queue, binding

from sportello import bus

pytestmark = pytest.mark.integration
EVENT_TYPE = "it.sportello.test.batch.published.v1"


def events(count: int, start: int = 0) -> list[bus.OutgoingEvent]:
    return [bus.OutgoingEvent(body=json.dumps({"n": i, "text": "è" * (i % 7)}), event_type=EVENT_TYPE,
                              event_id=f"event-{i:06d}", correlation_id=f"corr-{i:08d}", tenant="cremona")
            for i in range(start, start + count)]


def drain(amqp_uri: str, queue: str) -> list[Any]:
    messages = []
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            messages.append(message)
    return messages


@pytest.fixture
def declared(amqp_uri: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, Any]]]:
    arguments: dict[str, Any] = getattr(request, "param", {})
    name = f"test.publisher.{request.node.name[:40]}"
    queue = Queue(name, bindings=[binding(bus.EVENTS_EXCHANGE, routing_key=EVENT_TYPE)], durable=True,
                  queue_arguments=arguments)
    with Connection(amqp_uri) as connection:
        bus.declare(connection, [queue])
    yield name, arguments
    with Connection(amqp_uri) as connection:
        queue(connection.default_channel).delete()


def test_batches_arrive_whole_persistent_and_in_order(amqp_uri: str, declared: tuple[str, dict[str, Any]]) -> None:
    queue, _ = declared
    publisher = bus.ConfirmingPublisher(amqp_uri)
    sent = events(450) + events(450, start=450)
    try:
        assert publisher.publish_events(sent[:450]) == 450
        assert publisher.publish_events(sent[450:]) == 450  # the same channel, confirm tags carry on
    finally:
        publisher.close()
    received = drain(amqp_uri, queue)
    assert [m.properties["message_id"] for m in received] == [e.event_id for e in sent]
    for message, event in zip(received, sent, strict=True):
        body = message.body
        assert (body.decode("utf-8") if isinstance(body, bytes) else body) == event.body
        assert message.properties["delivery_mode"] == 2
        assert message.properties["type"] == EVENT_TYPE
        assert message.headers == {bus.H_CORRELATION: event.correlation_id, bus.H_TENANT: "cremona"}


@pytest.mark.parametrize("declared", [{"x-max-length": 5, "x-overflow": "reject-publish"}], indirect=True)
def test_only_the_confirmed_prefix_is_reported_when_the_broker_refuses_the_rest(
        amqp_uri: str, declared: tuple[str, dict[str, Any]]) -> None:
    queue, _ = declared
    publisher = bus.ConfirmingPublisher(amqp_uri)
    try:
        assert publisher.publish_events(events(12)) == 5  # the broker nacks 6..12: the relay keeps those rows
        assert [m.properties["message_id"] for m in drain(amqp_uri, queue)] == [f"event-{i:06d}" for i in range(5)]
        assert publisher.publish_events(events(3, start=100)) == 3  # a fresh channel after the refusal
    finally:
        publisher.close()
    assert [m.properties["message_id"] for m in drain(amqp_uri, queue)] == [f"event-{i:06d}" for i in (100, 101, 102)]
