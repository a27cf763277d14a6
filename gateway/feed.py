"""The gateway's edge for the citizen read model (gateway/readmodel.py, ADR 0012).

Each gateway replica declares its own queue (exclusive, auto-deleted with its connection) bound to
pagopa's position events, on a connection of its own (not the RPC replies'). Events only make the
model forget entries, so a lost or malformed one costs freshness, never correctness: when the
connection drops the model stops serving from memory, and when consuming starts again it forgets
everything it held. Events are applied in the consumer's thread: no nameko worker per event.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from kombu import Queue, binding
from nameko.extensions import DependencyProvider

from gateway.readmodel import EVENT_TYPES, SNAPSHOT_LIMIT, CitizenPositions
from sportello.bus import EVENTS_EXCHANGE
from sportello.edge.messaging import SafeQueueConsumer
from sportello.errors import SportelloError
from sportello.events import parse_event

log = structlog.get_logger("gateway.read_model")


class FeedQueueConsumer(SafeQueueConsumer):
    """A queue consumer of its own (own connection), telling its providers when consuming starts
    and when it stops (connection lost or shutting down)."""

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        for provider in list(self._providers):
            provider.feed_up()
        super().on_consume_ready(connection, channel, consumers, **kwargs)

    def consume(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from super().consume(*args, **kwargs)
        finally:
            for provider in list(self._providers):
                provider.feed_down()


class CitizenPositionsView:
    """What a route sees: the replica's read model plus the one way to (re)load a citizen."""

    def __init__(self, model: CitizenPositions) -> None:
        self.model = model

    def positions(self, tenant: str, subject: str,
                  fetch: Callable[[int], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The citizen's whole list (newest first): from memory, or loaded with `fetch(limit)`."""
        held = self.model.get(tenant, subject)
        if held is not None:
            return held
        load = self.model.begin_load(tenant, subject)
        views: list[dict[str, Any]] | None = None
        try:
            views = fetch(SNAPSHOT_LIMIT)
        finally:
            self.model.end_load(load, views)
        return views

    def default_body(self, tenant: str, subject: str) -> bytes | None:
        return self.model.default_body(tenant, subject)

    def forget_citizen(self, tenant: str, subject: str) -> None:
        self.model.forget_citizen(tenant, subject)

    def forget_position(self, tenant: str, position_id: str) -> None:
        self.model.forget_position(tenant, position_id)


def _feed_queue() -> Queue:
    return Queue(f"gateway.read-model.{uuid.uuid4().hex}",
                 bindings=[binding(EVENTS_EXCHANGE, routing_key=t) for t in EVENT_TYPES],
                 durable=False, exclusive=True, auto_delete=True)


class ReadModelProvider(DependencyProvider):
    """Holds the replica's `CitizenPositions` and feeds it from its own event queue."""

    queue_consumer = FeedQueueConsumer()

    def setup(self) -> None:
        self.model = CitizenPositions()
        self.view = CitizenPositionsView(self.model)
        self.queue = _feed_queue()
        self.queue_consumer.register_provider(self)

    def stop(self) -> None:
        self.queue_consumer.unregister_provider(self)
        self.model.feed_down()

    def kill(self) -> None:
        # Not `unregister_provider`: it waits for the consume loop to cancel the consumer, and the
        # container is killing that loop (nameko's kill drops pending removals), so it waited
        # forever and the gateway's container never finished dying.
        self.model.feed_down()

    def get_dependency(self, worker_ctx: Any) -> CitizenPositionsView:
        return self.view

    # -- called by the queue consumer ------------------------------------------------------
    def feed_up(self) -> None:
        self.model.feed_up()
        log.info("read_model_feed_up", queue=self.queue.name)

    def feed_down(self) -> None:
        if self.model.online:
            log.warning("read_model_feed_down", queue=self.queue.name)
        self.model.feed_down()

    def handle_message(self, body: Any, message: Any) -> None:
        try:
            envelope = parse_event(body)
            data = envelope.data.model_dump(mode="json")
            self.model.apply(envelope.type, envelope.tenant, data)
        except SportelloError as exc:  # not ours to dead-letter (pagopa's consumers do); stay safe
            log.warning("read_model_event_rejected", reason=exc.code)
            self.model.forget_all()  # the event we could not read may have mattered
        self.queue_consumer.ack_message(message)

    def handle_undecodable(self, queue_consumer: Any, message: Any, exc: Exception) -> None:
        log.warning("read_model_event_undecodable", error=type(exc).__name__)
        self.model.forget_all()
        self.queue_consumer.ack_message(message)
