"""nameko's queue consumer, minus one way for a broker restart to kill a whole service.

Why: a worker acks (or requeues) its message when it finishes. If RabbitMQ went away meanwhile,
that frame meets a dead socket: BrokenPipeError / ConnectionResetError. nameko 2.14 ignores only
amqp's own ConnectionError there, so the socket error escapes the worker thread and nameko kills
the service's container (seen in tests/resilience: appio stopped serving after a broker restart).
Ignoring it loses nothing: the broker gives every unacked message of a closed channel back to
its queue, and our consumers are idempotent (the inbox), so the redelivery is harmless.

Also a kill that cannot hang: nameko's `QueueConsumer.kill()` asks the consume loop to stop and
waits for it, but a loop reconnecting to an unreachable broker is inside kombu's
`ensure_connection`, which retries forever and never looks at `should_stop`. The container's
kill — and `runner.wait()`, and the process — then hung for as long as the broker was away
(tests/integration/test_process_exit_on_container_death.py). Here the wait is bounded; the
container then kills the loop's greenthread with its other managed threads.
"""

from __future__ import annotations

from typing import Any

import eventlet
import structlog
from amqp.exceptions import ConnectionError as AmqpConnectionError
from nameko.messaging import QueueConsumer
from nameko.rpc import RpcConsumer

log = structlog.get_logger("sportello.messaging")
CONNECTION_LOST = (OSError, AmqpConnectionError)  # socket errors (BrokenPipe, Reset...) are OSErrors
KILL_WAIT_SECONDS = 2.0  # a connected consume loop notices `should_stop` within 1 s (its drain timeout)


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

    def kill(self) -> None:
        with eventlet.Timeout(KILL_WAIT_SECONDS, False):  # silent: BaseException, past nameko's `except`
            super().kill()
            return
        log.warning("broker_consumer_kill_timed_out", wait_seconds=KILL_WAIT_SECONDS)


class ConnectionSafeRpcConsumer(RpcConsumer):
    """nameko's RPC consumer on the connection-safe queue consumer (an RPC that finishes while the
    broker is down loses its reply — the caller times out — but not the service)."""

    queue_consumer = ConnectionSafeQueueConsumer()
