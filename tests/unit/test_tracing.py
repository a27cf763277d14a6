"""Tracing helpers without processes: the envelope's traceparent, the outbox stamp, the exporters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from sportello import tracing
from sportello.db import Database
from sportello.errors import ConfigurationError
from sportello.events import EventPayload, new_event, parse_event
from sportello.outbox import add_event
from sportello.tables import outbox

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class TraceNoted(EventPayload):
    event_type = "it.sportello.test.trace.noted.v1"
    n: int


@pytest.fixture(scope="module", autouse=True)
def _unregister_test_payload() -> Iterator[None]:
    yield
    EventPayload.registry.pop(TraceNoted.event_type, None)


def wire(**extra: object) -> dict[str, object]:
    return {**new_event(TraceNoted(n=1), service="anpr", tenant="cremona").to_message(), **extra}


# --- the envelope's CloudEvents distributed-tracing extension ---------------------------------------

def test_traceparent_is_optional_and_absent_from_the_wire_when_unset() -> None:
    old = wire()
    assert "traceparent" not in old
    assert parse_event(old).traceparent is None  # events written before the field still parse


def test_traceparent_round_trips_through_the_wire() -> None:
    envelope = parse_event(wire(traceparent=TRACEPARENT))
    assert envelope.traceparent == TRACEPARENT
    assert envelope.to_message()["traceparent"] == TRACEPARENT
    assert parse_event(json.loads(json.dumps(envelope.to_message()))) == envelope


@pytest.mark.parametrize("bad", ["", "garbage", 42, "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                                 "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                                 "01-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"])
def test_an_unreadable_traceparent_is_dropped_not_a_reason_to_reject_the_event(bad: object) -> None:
    assert parse_event(wire(traceparent=bad)).traceparent is None


# --- the outbox stamps the active span --------------------------------------------------------------

@pytest.fixture
def provider_and_spans(tmp_path: Path) -> Iterator[tuple[TracerProvider, Path]]:
    path = tmp_path / "spans" / "unit.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(tracing.JsonLinesSpanExporter(path)))
    yield provider, path
    provider.shutdown()


def stored_body(database: Database) -> dict[str, object]:
    with database.transaction() as session:
        return dict(json.loads(session.execute(select(outbox.c.body)).scalar_one()))


def test_add_event_stamps_the_active_span(database: Database,
                                          provider_and_spans: tuple[TracerProvider, Path]) -> None:
    provider, _ = provider_and_spans
    with provider.get_tracer("test").start_as_current_span("ledger.record") as span:
        with database.transaction() as session:
            add_event(session, new_event(TraceNoted(n=2), service="anpr", tenant="cremona"))
        context = span.get_span_context()
    body = stored_body(database)
    assert body["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert parse_event(body).traceparent == body["traceparent"]


def test_add_event_without_a_span_stores_no_traceparent(database: Database) -> None:
    assert tracing.current_traceparent() is None
    with database.transaction() as session:
        add_event(session, new_event(TraceNoted(n=3), service="anpr", tenant="cremona"))
    assert "traceparent" not in stored_body(database)


def test_add_event_keeps_a_traceparent_the_envelope_already_carries(
        database: Database, provider_and_spans: tuple[TracerProvider, Path]) -> None:
    provider, _ = provider_and_spans
    envelope = new_event(TraceNoted(n=4), service="anpr", tenant="cremona").model_copy(
        update={"traceparent": TRACEPARENT})
    with provider.get_tracer("test").start_as_current_span("other"), database.transaction() as session:
        add_event(session, envelope)
    assert stored_body(database)["traceparent"] == TRACEPARENT


def test_context_from_makes_the_traceparent_the_parent(provider_and_spans: tuple[TracerProvider, Path]) -> None:
    provider, path = provider_and_spans
    span = provider.get_tracer("test").start_span("child", context=tracing.context_from(TRACEPARENT),
                                                  kind=SpanKind.CONSUMER)
    span.end()
    provider.get_tracer("test").start_span("root", context=tracing.context_from("not-a-traceparent")).end()
    child, root = [json.loads(line) for line in path.read_text().splitlines()]
    assert (child["trace_id"], child["parent_span_id"], child["kind"]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "CONSUMER")
    assert root["parent_span_id"] is None and root["trace_id"] != child["trace_id"]


# --- the exporters and the setting --------------------------------------------------------------------

def test_file_exporter_writes_one_json_line_per_span_with_parent_links(
        provider_and_spans: tuple[TracerProvider, Path]) -> None:
    provider, path = provider_and_spans
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER, attributes={"rpc.method": "record"}):
        with tracer.start_as_current_span("inner"):
            pass
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    inner, outer = (json.loads(line) for line in lines)  # a span is written when it ends
    assert (inner["name"], outer["name"]) == ("inner", "outer")
    assert inner["trace_id"] == outer["trace_id"] and len(outer["trace_id"]) == 32
    assert inner["parent_span_id"] == outer["span_id"] and outer["parent_span_id"] is None
    assert outer["kind"] == "SERVER" and outer["attributes"] == {"rpc.method": "record"}
    assert outer["end_time_unix_nano"] >= outer["start_time_unix_nano"] > 0


def test_file_exporter_fails_cleanly_after_shutdown(tmp_path: Path) -> None:
    exporter = tracing.JsonLinesSpanExporter(tmp_path / "s.jsonl")
    exporter.shutdown()
    assert exporter.export([]) == tracing.SpanExportResult.FAILURE


def test_exporter_setting_is_validated() -> None:
    env = tracing.TRACES_EXPORTER_ENV
    assert tracing.exporter_setting({}) == ("none", None)
    assert tracing.exporter_setting({env: "none"}) == ("none", None)
    assert tracing.exporter_setting({env: "console"}) == ("console", None)
    assert tracing.exporter_setting({env: "otlp"}) == ("otlp", None)
    assert tracing.exporter_setting({env: "file:/var/log/spans.jsonl"}) == ("file", "/var/log/spans.jsonl")
    for bad in ("file:", "jaeger", "FILE:/x"):
        with pytest.raises(ConfigurationError, match=env):
            tracing.exporter_setting({env: bad})
    assert tracing.configure_tracing("anpr", "0.1.0", {}) is None


def test_console_and_otlp_exporters_are_built(capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(tracing.make_exporter("otlp", None), OTLPSpanExporter)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(tracing.make_exporter("console", None)))
    provider.get_tracer("test").start_span("printed").end()
    provider.shutdown()
    assert json.loads(capsys.readouterr().out.strip())["name"] == "printed"
