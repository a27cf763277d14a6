"""RabbitMQ topology and a confirming publisher (kombu only; no nameko, no eventlet).

Topology, for a consumer queue `Q` of service `S`:
- `sportello.events` (topic exchange, durable): every event, routing key = event type;
- `Q` (durable, quorum when configured), bound to the event types it handles;
- `Q.retry.<delay>ms` (one per back-off step): queue TTL = that delay, dead-letters back into `Q`;
- `S.dead-letters`: what a consumer of `S` gave up on, with the reason in the headers.
Every publish is persistent and waits for the broker's confirm, so "published" means "stored".
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from kombu import Connection, Exchange, Producer, Queue, binding

EVENTS_EXCHANGE = Exchange("sportello.events", type="topic", durable=True)
DEFAULT_EXCHANGE = Exchange("", type="direct", durable=True)

# Message headers the kernel uses (no personal data in any of them).
H_ATTEMPTS = "x-sportello-attempts"
H_QUEUE = "x-sportello-queue"
H_REASON = "x-sportello-reason"
H_DEAD_LETTER_ID = "x-sportello-dead-letter-id"
H_CORRELATION = "nameko.correlation_id"  # nameko turns `nameko.*` headers into context data
H_TENANT = "nameko.tenant"


def _queue_arguments(quorum: bool, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    arguments: dict[str, Any] = {"x-queue-type": "quorum"} if quorum else {}
    arguments.update(extra or {})
    return arguments


def consumer_queue(name: str, event_types: Iterable[str], *, quorum: bool) -> Queue:
    """The durable queue a handler consumes, bound to each of its event types."""
    return Queue(
        name,
        bindings=[binding(EVENTS_EXCHANGE, routing_key=event_type) for event_type in event_types],
        durable=True,
        queue_arguments=_queue_arguments(quorum),
    )


def retry_queue(name: str, delay_ms: int, *, quorum: bool) -> Queue:
    """Parking queue for one back-off step; expired messages go back into the consumer queue.

    Named by its delay, so changing the configured delays declares new queues instead of
    clashing with the arguments of existing ones (old ones drain back and can be deleted).
    """
    arguments: dict[str, Any] = {"x-message-ttl": delay_ms, "x-dead-letter-exchange": "",
                                 "x-dead-letter-routing-key": name}
    if quorum:  # quorum queues dead-letter at most once unless told otherwise
        arguments.update({"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
    return Queue(f"{name}.retry.{delay_ms}ms", exchange=DEFAULT_EXCHANGE, routing_key=f"{name}.retry.{delay_ms}ms",
                 durable=True, queue_arguments=_queue_arguments(quorum, arguments))


def dead_letter_queue(service: str, *, quorum: bool) -> Queue:
    name = f"{service}.dead-letters"
    return Queue(name, exchange=DEFAULT_EXCHANGE, routing_key=name, durable=True,
                 queue_arguments=_queue_arguments(quorum))


def declare(connection: Connection, queues: Iterable[Queue]) -> None:
    """Declare exchanges, queues and bindings (idempotent)."""
    channel = connection.default_channel
    EVENTS_EXCHANGE(channel).declare()
    for queue in queues:
        queue(channel).declare()


class ConfirmingPublisher:
    """Publishes persistent messages and returns only once the broker confirmed each one.

    Safe to share between workers: publishes take turns on one channel (the lock is green under
    eventlet), since confirms on a channel are matched to publishes in order.
    """

    def __init__(self, amqp_uri: str, *, heartbeat: int = 30) -> None:
        self._uri = amqp_uri
        self._lock = threading.Lock()
        self._heartbeat = heartbeat
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def _ensure(self) -> Producer:
        if self._producer is None:
            self._connection = Connection(
                self._uri, heartbeat=self._heartbeat, transport_options={"confirm_publish": True},
                connect_timeout=5,
            )
            self._connection.ensure_connection(max_retries=1)
            self._producer = Producer(self._connection.channel())
            EVENTS_EXCHANGE(self._producer.channel).declare()
        return self._producer

    def publish_event(self, body: str, *, event_type: str, event_id: str, correlation_id: str, tenant: str) -> None:
        self.publish(body, exchange=EVENTS_EXCHANGE, routing_key=event_type, message_id=event_id,
                     headers={H_CORRELATION: correlation_id, H_TENANT: tenant}, type=event_type)

    def publish(self, body: str | bytes, *, exchange: Exchange, routing_key: str,
                headers: Mapping[str, Any] | None = None, message_id: str | None = None,
                type: str | None = None, content_type: str = "application/json",
                declare: Iterable[Queue] = ()) -> None:
        """Publish one message; raises on any broker problem (the caller keeps the message)."""
        with self._lock:
            self._publish_locked(body, exchange=exchange, routing_key=routing_key, headers=headers,
                                 message_id=message_id, type=type, content_type=content_type, declare=declare)

    def _publish_locked(self, body: str | bytes, *, exchange: Exchange, routing_key: str,
                        headers: Mapping[str, Any] | None, message_id: str | None, type: str | None,
                        content_type: str, declare: Iterable[Queue]) -> None:
        producer = self._ensure()
        try:
            producer.publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                headers=dict(headers or {}),
                message_id=message_id,
                type=type,
                content_type=content_type,
                content_encoding="utf-8",
                delivery_mode=2,
                serializer=None,
                declare=list(declare),
                retry=False,
            )
        except Exception:
            self._close()
            raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection may itself fail
                pass
        self._connection = None
        self._producer = None
