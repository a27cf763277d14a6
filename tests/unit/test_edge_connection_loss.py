"""An ack (or requeue) on a connection the broker already dropped must not kill the service.

Found by the resilience scenario (tests/resilience): RabbitMQ restarted while appio's workers were
finishing events; the ack of each raised BrokenPipeError / ConnectionResetError (socket errors),
nameko 2.14 catches only amqp's own ConnectionError there, so the worker thread died with it and
nameko killed the whole appio container — the process stayed up, serving nothing. Nothing is
lost by ignoring the failed ack: the broker gives every unacked message of a closed channel back
to the queue, and consumers are idempotent (inbox).
"""

from __future__ import annotations

from typing import Any

import pytest
from amqp.exceptions import ConnectionError as AmqpConnectionError
from nameko.messaging import QueueConsumer

from sportello.edge.consumers import ConnectionSafeQueueConsumer
from sportello.edge.messaging import ReliableEventHandler, SafeQueueConsumer
from sportello.edge.rpc import TypedRpc


class BrokenChannel:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.connection = object()  # nameko asks whether the channel still has a connection

    def basic_ack(self, *args: Any, **kwargs: Any) -> None:
        raise self.error

    def basic_reject(self, *args: Any, **kwargs: Any) -> None:
        raise self.error


class Message:
    """What kombu's Message does on ack/requeue: a frame on its channel's socket."""

    def __init__(self, error: Exception) -> None:
        self.channel = BrokenChannel(error)
        self.delivery_tag = 1

    def ack(self) -> None:
        self.channel.basic_ack(self.delivery_tag)

    def requeue(self) -> None:
        self.channel.basic_reject(self.delivery_tag, requeue=True)


SOCKET_ERRORS = [BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "Connection reset by peer"),
                 AmqpConnectionError("connection closed")]


def test_stock_nameko_lets_a_socket_error_escape_from_ack() -> None:
    with pytest.raises(BrokenPipeError):
        QueueConsumer.ack_message(object.__new__(QueueConsumer), Message(BrokenPipeError(32, "Broken pipe")))


@pytest.mark.parametrize("error", SOCKET_ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("operation", ["ack_message", "requeue_message"])
def test_ack_or_requeue_on_a_dropped_connection_is_ignored(error: Exception, operation: str) -> None:
    consumer = object.__new__(ConnectionSafeQueueConsumer)
    getattr(consumer, operation)(Message(error))  # no exception: the broker redelivers the message


def test_other_errors_still_surface() -> None:
    consumer = object.__new__(ConnectionSafeQueueConsumer)
    with pytest.raises(ValueError):
        consumer.ack_message(Message(ValueError("a bug, not a lost connection")))


def test_event_handlers_and_rpc_entrypoints_use_the_safe_consumer() -> None:
    assert issubclass(SafeQueueConsumer, ConnectionSafeQueueConsumer)
    assert isinstance(ReliableEventHandler.queue_consumer, ConnectionSafeQueueConsumer)
    assert isinstance(TypedRpc.rpc_consumer.queue_consumer, ConnectionSafeQueueConsumer)
