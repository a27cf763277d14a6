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
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class OutgoingEvent:
    body: str
    event_type: str
    event_id: str
    correlation_id: str
    tenant: str


class NotConfirmed(ConnectionError):
    """The broker refused (nack) or did not confirm in time: the message must be kept and retried."""


class ConfirmingPublisher:
    """Publishes persistent messages and returns only once the broker confirmed each one.

    Safe to share between workers: publishes take turns on one channel (the lock is green under
    eventlet), since confirms on a channel are matched to publishes in order.
    """

    def __init__(self, amqp_uri: str, *, heartbeat: int = 30) -> None:
        self._uri = amqp_uri
        self._lock = threading.Lock()
        self._batch: Any = None  # channel in confirm mode for batches (publish_events), own connection
        self._batch_connection: Connection | None = None
        self._batch_tag = 0
        self._acked = 0
        self._acked_out_of_order: set[int] = set()
        self._nacked_tags: set[int] = set()
        self._nacked_upto = 0
        self._nacked = False
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

    def publish_events(self, events: Sequence[OutgoingEvent], *, confirm_timeout: float = 10.0) -> int:
        """Publish a batch, then wait for the broker's confirms of all of it at once.

        Returns how many events, from the start of the batch, are confirmed (the caller marks
        exactly those); raises only when not even the first one is. One round trip per batch
        instead of per message is what lets the relay keep up with the broker.
        """
        if not events:
            return 0
        with self._lock:
            return self._publish_batch_locked(events, confirm_timeout)

    def _publish_batch_locked(self, events: Sequence[OutgoingEvent], confirm_timeout: float) -> int:
        confirmed = 0
        try:
            channel = self._batch_channel()
            first_tag = self._batch_tag + 1
            with self._coalesced_writes():
                for event in events:
                    message = channel.prepare_message(
                        event.body.encode("utf-8"), content_type="application/json", content_encoding="utf-8",
                        headers={H_CORRELATION: event.correlation_id, H_TENANT: event.tenant},
                        properties={"delivery_mode": 2, "message_id": event.event_id, "type": event.event_type})
                    channel.basic_publish(message, exchange=EVENTS_EXCHANGE.name, routing_key=event.event_type)
                    self._batch_tag += 1
            last_tag = self._batch_tag
            deadline = time.monotonic() + confirm_timeout
            assert self._batch_connection is not None
            # on a nack, still wait for the other confirms: the acked prefix is what the caller may mark
            while self._acked < last_tag and not (self._nacked and self._settled(last_tag)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    self._batch_connection.drain_events(timeout=min(remaining, 1.0))
                except TimeoutError:
                    continue
            confirmed = max(0, min(self._acked, last_tag) - first_tag + 1)
            if self._nacked or confirmed < len(events):
                raise NotConfirmed(f"{len(events) - confirmed} of {len(events)} not confirmed")
            return confirmed
        except Exception:
            self._close()
            if confirmed == 0:
                raise
            return confirmed

    @contextmanager
    def _coalesced_writes(self) -> Iterator[None]:
        """The batch's frames leave in one socket write instead of one write per message.

        Why: py-amqp sends each publish (method, header and body frames) with its own `sendall`;
        for a batch of 200 that is 200 system calls here and as many wake-ups of the broker's
        reader, which on a busy machine cost more CPU than the messages themselves. The frames
        are the same, in the same order, on the batch's own connection (used only under
        `self._lock`); if the one write fails, nothing of the batch is confirmed and it is kept.
        """
        assert self._batch_connection is not None
        transport: Any = getattr(self._batch_connection.connection, "transport", None)
        direct = getattr(transport, "_write", None)
        if transport is None or direct is None:  # not py-amqp's socket transport: write as it does
            yield
            return
        frames: list[bytes] = []
        transport._write = lambda data: frames.append(bytes(data))  # py-amqp reuses its buffer: copy
        try:
            yield
        finally:
            transport._write = direct
        transport.write(b"".join(frames))

    def _batch_channel(self) -> Any:
        if self._batch is None:
            self._batch_connection = Connection(self._uri, heartbeat=self._heartbeat, connect_timeout=5)
            self._batch_connection.ensure_connection(max_retries=1)
            channel = self._batch_connection.channel()
            EVENTS_EXCHANGE(channel).declare()
            channel.confirm_select()
            self._batch_tag, self._acked, self._nacked = 0, 0, False
            self._acked_out_of_order, self._nacked_tags, self._nacked_upto = set(), set(), 0
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._batch = channel
        return self._batch

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        # acks may come out of order and cover several tags (multiple); count the contiguous prefix
        if multiple:
            self._acked = max(self._acked, delivery_tag)
            self._acked_out_of_order = {t for t in self._acked_out_of_order if t > self._acked}
        else:
            self._acked_out_of_order.add(delivery_tag)
        while self._acked + 1 in self._acked_out_of_order:
            self._acked += 1
            self._acked_out_of_order.discard(self._acked)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True
        if multiple:
            self._nacked_upto = max(self._nacked_upto, delivery_tag)
        else:
            self._nacked_tags.add(delivery_tag)

    def _settled(self, last_tag: int) -> bool:
        """Whether the broker has acked or nacked every publish up to `last_tag`."""
        return all(tag in self._acked_out_of_order or tag in self._nacked_tags or tag <= self._nacked_upto
                   for tag in range(self._acked + 1, last_tag + 1))

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
        self._batch = None
        for connection in (self._batch_connection,):
            if connection is not None:
                try:
                    connection.release()
                except Exception:  # noqa: BLE001, S110 - closing a broken connection may itself fail
                    pass
        self._batch_connection = None
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection may itself fail
                pass
        self._connection = None
        self._producer = None
