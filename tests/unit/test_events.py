"""The event envelope: CloudEvents 1.0 + tenant + correlationid, typed payloads, typed parse errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import Field

from sportello.asyncapi import asyncapi_document
from sportello.errors import MalformedEvent, UnknownEventType
from sportello.events import Envelope, EventPayload, event_schemas, new_event, parse_event

FISCAL_CODE = "RSSMRA85T10A562S"


class ThingRecorded(EventPayload):
    """A thing was recorded (test payload)."""

    event_type = "it.sportello.test.thing.recorded.v1"

    thing_id: str = Field(min_length=1)
    fiscal_code: str = Field(pattern=r"^[A-Z0-9]{16}$")
    amount_cents: int = Field(ge=0)


@pytest.fixture(scope="module", autouse=True)
def _unregister_test_payload() -> Iterator[None]:
    """The test type leaves the global registry (and the AsyncAPI document) with this module."""
    yield
    EventPayload.registry.pop(ThingRecorded.event_type, None)


def thing(**overrides: Any) -> ThingRecorded:
    return ThingRecorded(**{"thing_id": "t-1", "fiscal_code": FISCAL_CODE, "amount_cents": 1600, **overrides})


def message(**overrides: Any) -> dict[str, Any]:
    """A valid wire message, as JSON would deliver it."""
    body = json.loads(json.dumps(new_event(thing(), service="anpr", tenant="cremona",
                                           correlation_id="req-12345678").to_message()))
    body.update(overrides)
    return body


def test_registered_on_import() -> None:
    assert EventPayload.registry[ThingRecorded.event_type] is ThingRecorded


def test_new_event_fills_the_envelope() -> None:
    before = datetime.now(UTC)
    envelope = new_event(thing(), service="anpr", tenant="cremona", subject="t-1")
    assert envelope.specversion == "1.0"
    assert envelope.type == "it.sportello.test.thing.recorded.v1"
    assert envelope.source == "/sportello/anpr"
    assert envelope.tenant == "cremona"
    assert envelope.subject == "t-1"
    assert envelope.datacontenttype == "application/json"
    assert uuid.UUID(envelope.id)
    assert uuid.UUID(envelope.correlationid), "a fresh correlation id when none is given"
    assert before <= envelope.time <= datetime.now(UTC)
    assert envelope.time.tzinfo is not None


def test_new_events_have_distinct_ids() -> None:
    ids = {new_event(thing(), service="anpr", tenant="cremona").id for _ in range(50)}
    assert len(ids) == 50


def test_new_event_needs_a_typed_payload() -> None:
    class Untyped(EventPayload):
        value: int = 0

    with pytest.raises(TypeError, match="Untyped has no event_type"):
        new_event(Untyped(), service="anpr", tenant="cremona")


def test_round_trip() -> None:
    envelope = new_event(thing(), service="anpr", tenant="cremona", correlation_id="req-12345678", subject="t-1")
    wire = json.dumps(envelope.to_message())
    parsed = parse_event(json.loads(wire))
    assert isinstance(parsed, Envelope)
    assert isinstance(parsed.data, ThingRecorded)
    assert parsed.data == envelope.data
    assert parsed == envelope
    assert parsed.to_message() == envelope.to_message()


def test_to_message_is_cloudevents_structured_json() -> None:
    body = new_event(thing(), service="anpr", tenant="cremona", correlation_id="req-12345678").to_message()
    assert set(body) == {"specversion", "id", "source", "type", "time", "datacontenttype", "tenant",
                         "correlationid", "data"}, "subject is left out when there is none"
    assert body["data"] == {"thing_id": "t-1", "fiscal_code": FISCAL_CODE, "amount_cents": 1600}
    assert isinstance(body["time"], str)
    assert datetime.fromisoformat(body["time"]).tzinfo is not None


def test_envelope_and_payload_are_immutable() -> None:
    envelope = new_event(thing(), service="anpr", tenant="cremona")
    with pytest.raises(ValueError, match="frozen"):
        envelope.tenant = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        envelope.data.amount_cents = 1  # type: ignore[misc]


def test_time_with_other_offsets_is_accepted() -> None:
    parsed = parse_event(message(time="2026-11-21T10:00:00+01:00"))
    assert parsed.time.utcoffset() is not None


# -- bad input: only MalformedEvent / UnknownEventType, with clear messages ---------------------


@pytest.mark.parametrize("raw", [None, "a string", b"bytes", 42, ["a", "list"], json.dumps({"type": "x"})])
def test_non_dict_body(raw: Any) -> None:
    with pytest.raises(MalformedEvent, match="event body must be a JSON object, got"):
        parse_event(raw)


@pytest.mark.parametrize("event_type", [None, 7, "", "thing.recorded", "it.sportello.test.thing.recorded",
                                        "it.sportello.Test.thing.recorded.v1", "it.other.thing.recorded.v1",
                                        "it.sportello.test.v1"])
def test_missing_or_bad_type(event_type: Any) -> None:
    body = message()
    if event_type is None:
        del body["type"]
    else:
        body["type"] = event_type
    with pytest.raises(MalformedEvent, match="missing or invalid 'type' attribute"):
        parse_event(body)


def test_unknown_type() -> None:
    with pytest.raises(UnknownEventType, match=r"no schema for event type it\.sportello\.test\.thing\.recorded\.v2"):
        parse_event(message(type="it.sportello.test.thing.recorded.v2"))
    assert not issubclass(UnknownEventType, MalformedEvent)


def expect_malformed(body: dict[str, Any]) -> str:
    with pytest.raises(MalformedEvent) as raised:
        parse_event(body)
    detail = raised.value.detail
    assert detail.startswith("it.sportello.test.thing.recorded.v1: invalid ")
    assert FISCAL_CODE not in str(raised.value), "personal data from the payload is never echoed"
    assert raised.value.__cause__ is None
    return detail


def test_missing_tenant() -> None:
    body = message()
    del body["tenant"]
    assert "tenant (missing)" in expect_malformed(body)


def test_bad_tenant() -> None:
    assert "tenant (string_pattern_mismatch)" in expect_malformed(message(tenant="Cremona!"))


def test_naive_time() -> None:
    assert "time (value_error)" in expect_malformed(message(time="2026-11-21T10:00:00"))


def test_not_a_time() -> None:
    assert "time (" in expect_malformed(message(time="yesterday"))


def test_wrong_specversion() -> None:
    assert "specversion (value_error)" in expect_malformed(message(specversion="0.3"))


def test_extra_attribute() -> None:
    assert "partitionkey (extra_forbidden)" in expect_malformed(message(partitionkey="p-1"))


@pytest.mark.parametrize("attribute", ["id", "source", "correlationid", "time", "data"])
def test_missing_required_attribute(attribute: str) -> None:
    body = message()
    del body[attribute]
    assert f"{attribute} (missing)" in expect_malformed(body)


def test_wrong_payload_field() -> None:
    body = message()
    body["data"] = {"thing_id": "t-1", "fiscal_code": FISCAL_CODE.lower(), "amount_cents": -5}
    detail = expect_malformed(body)
    assert "data.fiscal_code (string_pattern_mismatch)" in detail
    assert "data.amount_cents (greater_than_equal)" in detail
    assert FISCAL_CODE.lower() not in detail


def test_extra_payload_field_is_rejected_without_echoing_it() -> None:
    body = message()
    body["data"] = {**body["data"], "surname": "Rossi"}
    detail = expect_malformed(body)
    assert "data.surname (extra_forbidden)" in detail
    assert "Rossi" not in detail


def test_payload_of_wrong_shape() -> None:
    assert "data (model_type)" in expect_malformed(message(data=[FISCAL_CODE]))


# -- the registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["thing.recorded", "it.sportello.test.thing.recorded", "it.sportello.Test.x.v1",
                                 "it.sportello.test.v1", "com.example.thing.recorded.v1"])
def test_bad_type_name_is_rejected(bad: str) -> None:
    with pytest.raises(TypeError, match=r"is not it\.sportello"):
        type("BadName", (EventPayload,), {"event_type": bad, "__annotations__": {}})
    assert bad not in EventPayload.registry


def test_duplicate_type_is_rejected() -> None:
    with pytest.raises(TypeError, match="registered twice"):

        class AnotherThingRecorded(EventPayload):
            event_type = "it.sportello.test.thing.recorded.v1"

    assert EventPayload.registry[ThingRecorded.event_type] is ThingRecorded


def test_a_new_version_is_a_new_type() -> None:
    class ThingRecordedV2(EventPayload):
        event_type = "it.sportello.test.thing.recorded.v2"
        thing_id: str

    try:
        parsed = parse_event(message(type="it.sportello.test.thing.recorded.v2", data={"thing_id": "t-2"}))
        assert isinstance(parsed.data, ThingRecordedV2)
    finally:
        del EventPayload.registry[ThingRecordedV2.event_type]


def test_event_schemas_and_asyncapi_list_the_type() -> None:
    schemas = event_schemas()
    assert schemas[ThingRecorded.event_type]["properties"]["fiscal_code"]["pattern"] == r"^[A-Z0-9]{16}$"
    document = asyncapi_document("9.9.9")
    assert document["asyncapi"] == "2.6.0"
    assert document["info"]["version"] == "9.9.9"
    channel = document["channels"][ThingRecorded.event_type]
    assert channel["description"] == "A thing was recorded (test payload)."
    message_ = channel["subscribe"]["message"]
    assert message_["name"] == ThingRecorded.event_type
    assert message_["contentType"] == "application/json"
    envelope_ref, specific = message_["payload"]["allOf"]
    assert envelope_ref == {"$ref": "#/components/schemas/Envelope"}
    assert specific["properties"]["type"] == {"const": ThingRecorded.event_type}
    assert specific["properties"]["data"] == ThingRecorded.model_json_schema()
    envelope = document["components"]["schemas"]["Envelope"]
    assert {"id", "source", "type", "time", "tenant", "correlationid", "data"} <= set(envelope["required"])
    assert "$defs" not in envelope
    assert list(document["channels"]) == sorted(document["channels"])
    json.dumps(document)  # serialisable as served by the gateway
