"""nameko entrypoints for events that are never lost: retries with back-off, then dead letters.

Why: nameko 2.14's stock `event_handler` acks a message even when the handler raises (unless
`requeue_on_error=True`, which spins hot and forever), and its queue consumer dies on a body it
cannot decode. Here:
- a body that does not decode, or is not a valid envelope of a known type, goes straight to the
  service's dead-letter queue with the reason;
- a handler that raises is parked in `<queue>.retry.<delay>ms` (TTL = the n-th back-off delay) and comes
  back; after the last retry it goes to the dead-letter queue with the reason;
- the original is acked only after that republish is confirmed; if the broker is gone, the
  message is requeued instead. Nothing is acked and dropped.

`@event_handler(type, batch=N)` hands the method a list of up to N envelopes, gathered for at most
`batch_wait_ms`, so a consumer whose effect is only database rows applies many events in one
transaction (one commit and one worker instead of N). The messages are acked after the method
returns; if it raises, each envelope of the batch is run again on its own (a batch of one), so a
poison event is retried and dead-lettered alone and never holds back its neighbours.
"""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import Any

import eventlet
import structlog
from kombu import Connection
from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import DependencyProvider, SharedExtension
from nameko.messaging import Consumer

from sportello import bus
from sportello.deadletters import IncomingDeadLetter
from sportello.edge.consumers import ConnectionSafeQueueConsumer
from sportello.edge.kernel import KernelContext
from sportello.errors import SportelloError
from sportello.events import parse_event
from sportello.logging import mask_text

log = structlog.get_logger("sportello.messaging")


class SafeQueueConsumer(ConnectionSafeQueueConsumer):
    """nameko's queue consumer, but a message that cannot be decoded is handed to its provider
    instead of killing the consumer (and with it the whole service), and an ack on a connection
    the broker dropped is left to its redelivery (`consumers.py`).

    Prefetch is nameko's (one unacked message per worker) unless a batching handler needs more:
    a batch is acked only after its one worker returns, so up to two batches per worker may be
    unacked at once.
    """

    @property
    def prefetch_count(self) -> int:
        wanted = [getattr(provider, "batch", 1) * 2 for provider in self._providers]
        return max([int(self.container.max_workers), *wanted])

    def get_consumers(self, consumer_cls: Any, channel: Any) -> Any:
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = partial(provider.handle_undecodable, self)
        return consumers


class BrokerPublisher(SharedExtension):
    """One confirming publisher per container for retries, dead letters and replays."""

    kernel = KernelContext()

    def setup(self) -> None:
        self.publisher = bus.ConfirmingPublisher(self.kernel.settings.amqp_uri)

    def stop(self) -> None:
        self.publisher.close()

    def republish(self, queue: str, body: str, content_type: str, *, dead_letter_id: str) -> None:
        """Replay: back into the consumer queue it came from, with a fresh attempt count."""
        self.publisher.publish(body, exchange=bus.DEFAULT_EXCHANGE, routing_key=queue, content_type=content_type,
                               headers={bus.H_ATTEMPTS: 0, "x-sportello-replay-of": dead_letter_id})

    def dead_letter(self, service: str, *, queue: str, body: str | bytes, content_type: str, reason: str,
                    attempts: int, headers: dict[str, Any]) -> None:
        dlq = bus.dead_letter_queue(service, quorum=self.kernel.settings.quorum_queues)
        kept = {k: v for k, v in headers.items() if k in (bus.H_CORRELATION, bus.H_TENANT)}
        kept.update({bus.H_QUEUE: queue, bus.H_REASON: mask_text(reason)[:2000], bus.H_ATTEMPTS: attempts,
                     bus.H_DEAD_LETTER_ID: str(uuid.uuid4())})
        self.publisher.publish(body, exchange=bus.DEFAULT_EXCHANGE, routing_key=dlq.name, headers=kept,
                               content_type=content_type, declare=[dlq])


class BrokerProvider(DependencyProvider):
    """Injects the container's confirming publisher (the service replays dead letters with it)."""

    broker = BrokerPublisher()

    def get_dependency(self, worker_ctx: Any) -> BrokerPublisher:
        return self.broker


def _raw_body(message: Any) -> tuple[str, str]:
    body = message.body
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes | bytearray) else str(body)
    return text, message.content_type or "application/octet-stream"


class ReliableEventHandler(Consumer):
    """`@event_handler("it.sportello.x.y.v1", ...)`: the method receives a validated `Envelope`."""

    queue_consumer = SafeQueueConsumer()
    kernel = KernelContext()
    broker = BrokerPublisher()

    def __init__(self, *event_types: str, batch: int = 1, batch_wait_ms: int = 10, **kwargs: Any) -> None:
        if not event_types:
            raise TypeError("event_handler needs at least one event type")
        if batch < 1 or batch_wait_ms < 0:
            raise TypeError("event_handler batch must be >= 1 and batch_wait_ms >= 0")
        self.event_types = event_types
        self.batch = batch
        self.batch_wait = batch_wait_ms / 1000
        self._gathered: list[tuple[Any, Any]] = []  # (envelope, message) waiting for their batch
        self._flush_timer: Any = None
        super().__init__(queue=None, requeue_on_error=False, **kwargs)

    def setup(self) -> None:
        settings = self.kernel.settings
        service = self.container.service_name
        self.queue_name = f"{service}.{self.method_name}"
        self.queue = bus.consumer_queue(self.queue_name, self.event_types, quorum=settings.quorum_queues)
        self.retry_delays = settings.event_retry_delays_ms
        self.retry_queues = [
            bus.retry_queue(self.queue_name, delay, quorum=settings.quorum_queues) for delay in self.retry_delays
        ]
        with Connection(settings.amqp_uri, connect_timeout=5) as connection:
            bus.declare(connection, [self.queue, *self.retry_queues,
                                     bus.dead_letter_queue(service, quorum=settings.quorum_queues)])
        super().setup()

    # -- message arrival ------------------------------------------------------------------
    def handle_undecodable(self, queue_consumer: Any, message: Any, exc: Exception) -> None:
        self._give_up(message, f"undecodable body: {type(exc).__name__}", attempts=0)

    def handle_message(self, body: Any, message: Any) -> None:
        headers = message.headers or {}
        attempts = int(headers.get(bus.H_ATTEMPTS, 0) or 0)
        try:
            envelope = parse_event(body)
        except SportelloError as exc:
            self._give_up(message, f"{exc.code}: {exc.detail}", attempts=attempts)
            return
        if self.batch > 1:
            self._gather(envelope, message)
            return
        self._spawn(envelope, envelope, message)

    def _spawn(self, argument: Any, envelope: Any, message: Any) -> None:
        """One worker for one message (`argument` is the envelope, or a batch of one)."""
        context_data = {"correlation_id": envelope.correlationid, "tenant": envelope.tenant}
        if envelope.traceparent:  # the producer's span: the consumer's span joins its trace
            context_data["traceparent"] = envelope.traceparent
        try:
            self.container.spawn_worker(self, (argument,), {}, context_data=context_data,
                                        handle_result=partial(self.handle_result, message))
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    # -- batches ----------------------------------------------------------------------------
    def _gather(self, envelope: Any, message: Any) -> None:
        self._gathered.append((envelope, message))
        if len(self._gathered) >= self.batch:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = self.container.spawn_managed_thread(self._flush_later)

    def _flush_later(self) -> None:
        eventlet.sleep(self.batch_wait)
        self._flush_timer = None
        self._flush()

    def _flush(self) -> None:
        batch, self._gathered = self._gathered[: self.batch], self._gathered[self.batch:]
        if not batch:
            return
        envelopes = [envelope for envelope, _ in batch]
        messages = [message for _, message in batch]
        context_data = {"correlation_id": str(uuid.uuid4())}  # many correlations: the batch gets its own id
        try:
            self.container.spawn_worker(self, (envelopes,), {}, context_data=context_data,
                                        handle_result=partial(self.handle_batch_result, batch))
        except ContainerBeingKilled:
            for message in messages:
                self.queue_consumer.requeue_message(message)

    def handle_batch_result(self, batch: list[tuple[Any, Any]], worker_ctx: Any, result: Any = None,
                            exc_info: Any = None) -> Any:
        if exc_info is None:
            for _, message in batch:
                self.queue_consumer.ack_message(message)
            return result, exc_info
        log.warning("event_batch_failed_splitting", queue=self.queue_name, size=len(batch),
                    error=type(exc_info[1]).__name__)
        for envelope, message in batch:  # each on its own: the failing one is retried alone
            self._spawn([envelope], envelope, message)
        return result, exc_info

    # -- outcome ----------------------------------------------------------------------------
    def handle_result(self, message: Any, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> Any:
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return result, exc_info
        exc = exc_info[1]
        attempts = int((message.headers or {}).get(bus.H_ATTEMPTS, 0) or 0) + 1
        reason = f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"
        if attempts <= len(self.retry_queues):
            self._park(message, attempts, reason)
        else:
            self._give_up(message, reason, attempts=attempts)
        return result, exc_info

    def _park(self, message: Any, attempts: int, reason: str) -> None:
        retry = self.retry_queues[attempts - 1]
        body, content_type = _raw_body(message)
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-death")}
        headers[bus.H_ATTEMPTS] = attempts
        try:
            self.broker.publisher.publish(body, exchange=bus.DEFAULT_EXCHANGE, routing_key=retry.name,
                                          headers=headers, content_type=content_type, declare=[retry])
        except Exception as exc:  # noqa: BLE001 - broker trouble: keep the message in its queue
            log.warning("event_retry_park_failed", queue=self.queue_name, error=type(exc).__name__)
            self.queue_consumer.requeue_message(message)
            return
        log.warning("event_handler_failed_retrying", queue=self.queue_name, attempt=attempts,
                    delay_ms=self.retry_delays[attempts - 1], reason=reason)
        self.queue_consumer.ack_message(message)

    def _give_up(self, message: Any, reason: str, *, attempts: int) -> None:
        body, content_type = _raw_body(message)
        try:
            self.broker.dead_letter(self.container.service_name, queue=self.queue_name, body=body,
                                    content_type=content_type, reason=reason, attempts=attempts,
                                    headers=dict(message.headers or {}))
        except Exception as exc:  # noqa: BLE001
            log.warning("dead_letter_publish_failed", queue=self.queue_name, error=type(exc).__name__)
            self.queue_consumer.requeue_message(message)
            return
        log.error("event_dead_lettered", queue=self.queue_name, attempts=attempts, reason=reason)
        self.queue_consumer.ack_message(message)


event_handler = ReliableEventHandler.decorator


class DeadLetterRecorder(Consumer):
    """Consumes `<service>.dead-letters` and stores each one (acked only once stored).

    If storing fails (the database is away) the letter goes back to the queue after a pause,
    so an outage means waiting, not a hot redelivery loop.
    """

    requeue_pause_seconds = 2.0

    queue_consumer = SafeQueueConsumer()
    kernel = KernelContext()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(queue=None, requeue_on_error=True, **kwargs)

    def setup(self) -> None:
        self.queue = bus.dead_letter_queue(self.container.service_name, quorum=self.kernel.settings.quorum_queues)
        super().setup()

    def handle_undecodable(self, queue_consumer: Any, message: Any, exc: Exception) -> None:
        self.handle_message(None, message)

    def handle_message(self, body: Any, message: Any) -> None:
        headers = message.headers or {}
        raw, content_type = _raw_body(message)
        event_id = event_type = tenant = None
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                event_id = _short(parsed.get("id"), 64)
                event_type = _short(parsed.get("type"), 200)
                tenant = _short(parsed.get("tenant"), 63)
        except ValueError:
            pass
        letter = IncomingDeadLetter(
            dead_letter_id=str(headers.get(bus.H_DEAD_LETTER_ID) or message.properties.get("message_id")
                               or uuid.uuid4()),
            queue=str(headers.get(bus.H_QUEUE, "unknown")),
            reason=str(headers.get(bus.H_REASON, "unknown")),
            attempts=int(headers.get(bus.H_ATTEMPTS, 0) or 0),
            body=raw, content_type=content_type, event_id=event_id, event_type=event_type, tenant=tenant,
        )
        try:
            self.container.spawn_worker(self, (letter,), {}, context_data={},
                                        handle_result=partial(self.handle_result, message))
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)


    def handle_result(self, message: Any, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> Any:
        if exc_info is not None:
            log.warning("dead_letter_store_failed", error=type(exc_info[1]).__name__)
            eventlet.sleep(self.requeue_pause_seconds)
        return super().handle_result(message, worker_ctx, result, exc_info)


def _short(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


dead_letter_recorder = DeadLetterRecorder.decorator

