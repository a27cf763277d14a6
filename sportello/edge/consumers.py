"""nameko's queue consumer, minus one way for a broker restart to kill a whole service.

Why: a worker acks (or requeues) its message when it finishes. If RabbitMQ went away meanwhile,
that frame meets a dead socket: BrokenPipeError / ConnectionResetError. nameko 2.14 ignores only
amqp's own ConnectionError there, so the socket error escapes the worker thread and nameko kills
the service's container (seen in tests/resilience: appio stopped serving after a broker restart).
Ignoring it loses nothing: the broker gives every unacked message of a closed channel back to
its queue, and our consumers are idempotent (the inbox), so the redelivery is harmless.
"""

from __future__ import annotations

from typing import Any

import structlog
from amqp.exceptions import ConnectionError as AmqpConnectionError
from nameko.messaging import QueueConsumer
from nameko.rpc import RpcConsumer

log = structlog.get_logger("sportello.messaging")
CONNECTION_LOST = (OSError, AmqpConnectionError)  # socket errors (BrokenPipe, Reset...) are OSErrors


class ConnectionSafeQueueConsumer(QueueConsumer):
    """Acks and requeues on a dropped connection are logged and left to the broker's redelivery."""

    def ack_message(self, message: Any) -> None:
        try:
            super().ack_message(message)
        except CONNECTION_LOST as exc:
            log.warning("broker_ack_lost_with_connection", error=type(exc).__name__)

    def requeue_message(self, message: Any) -> None:
        try:
            super().requeue_message(message)
        except CONNECTION_LOST as exc:
            log.warning("broker_requeue_lost_with_connection", error=type(exc).__name__)


class ConnectionSafeRpcConsumer(RpcConsumer):
    """nameko's RPC consumer on the connection-safe queue consumer (an RPC that finishes while the
    broker is down loses its reply — the caller times out — but not the service)."""

    queue_consumer = ConnectionSafeQueueConsumer()
