"""The one event envelope (CloudEvents 1.0 + `tenant` + `correlationid`) and typed payloads.

Why: every fact crossing the bus has the same outer shape, so relays, consumers, dead-letter
tooling and the AsyncAPI document treat all events alike; the payload is a pydantic model
registered under a versioned, past-tense type (`it.sportello.<service>.<thing>.<verb-ed>.v<N>`).
Parsing never raises anything but `MalformedEvent` / `UnknownEventType`, so a consumer can route
bad input to the dead-letter queue instead of crashing.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sportello.errors import MalformedEvent, UnknownEventType

EVENT_TYPE = re.compile(r"^it\.sportello\.[a-z0-9]+(?:\.[a-z0-9_]+)+\.v[0-9]+$")
SPECVERSION = "1.0"
# W3C Trace Context, version 00, with a real (non-zero) trace id and parent id.
TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


class EventPayload(BaseModel):
    """Base of every event payload. Subclasses set `event_type` and are registered on import."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_type: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[EventPayload]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.event_type:
            return  # an abstract intermediate class
        if not EVENT_TYPE.match(cls.event_type):
            raise TypeError(f"{cls.__name__}: event type {cls.event_type!r} is not it.sportello.<...>.v<N>")
        existing = EventPayload.registry.get(cls.event_type)
        if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"event type {cls.event_type} registered twice")
        EventPayload.registry[cls.event_type] = cls


P = TypeVar("P", bound=EventPayload)


class Envelope(BaseModel, Generic[P]):
    """A CloudEvents 1.0 event (JSON format) with Sportello's two extension attributes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: str = SPECVERSION
    id: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=200, description="/sportello/<service>")
    type: str
    subject: str | None = Field(default=None, max_length=200, description="the entity id, never personal data")
    time: datetime
    datacontenttype: str = "application/json"
    tenant: str = Field(pattern=r"^[a-z][a-z0-9-]{1,62}$")
    correlationid: str = Field(min_length=1, max_length=128)
    traceparent: str | None = Field(
        default=None, description="CloudEvents distributed-tracing extension: the W3C traceparent of the producer")
    data: P

    @field_validator("specversion")
    @classmethod
    def _specversion(cls, value: str) -> str:
        if value != SPECVERSION:
            raise ValueError("only CloudEvents 1.0 is accepted")
        return value

    @field_validator("traceparent", mode="before")
    @classmethod
    def _traceparent(cls, value: Any) -> str | None:
        """Tracing is best effort: an unreadable traceparent is dropped, never a reason to reject the event."""
        return value if isinstance(value, str) and TRACEPARENT.match(value) else None

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a timezone")
        return value

    def to_message(self) -> dict[str, Any]:
        """The JSON-ready dict put on the wire (CloudEvents structured mode)."""
        return self.model_dump(mode="json", exclude_none=True)


def new_event(
    payload: EventPayload,
    *,
    service: str,
    tenant: str,
    correlation_id: str | None = None,
    subject: str | None = None,
) -> Envelope[Any]:
    """Wrap a payload in a fresh envelope (new id, now, the payload's registered type)."""
    if not payload.event_type:
        raise TypeError(f"{type(payload).__name__} has no event_type")
    return Envelope[Any](
        id=str(uuid.uuid4()),
        source=f"/sportello/{service}",
        type=payload.event_type,
        subject=subject,
        time=datetime.now(UTC),
        tenant=tenant,
        correlationid=correlation_id or str(uuid.uuid4()),
        data=payload,
    )


def parse_event(raw: Any) -> Envelope[Any]:
    """Validate a received message body into an envelope with its typed payload."""
    if not isinstance(raw, dict):
        raise MalformedEvent(f"event body must be a JSON object, got {type(raw).__name__}")
    event_type = raw.get("type")
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        raise MalformedEvent("missing or invalid 'type' attribute")
    payload_cls = EventPayload.registry.get(event_type)
    if payload_cls is None:
        raise UnknownEventType(f"no schema for event type {event_type}")
    try:
        return Envelope[payload_cls].model_validate(raw)  # type: ignore[valid-type]
    except ValidationError as exc:
        fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) + f" ({e['type']})" for e in exc.errors()}))
        raise MalformedEvent(f"{event_type}: invalid {fields}") from None


def event_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of every registered payload, for the AsyncAPI document."""
    return {name: cls.model_json_schema() for name, cls in sorted(EventPayload.registry.items())}
