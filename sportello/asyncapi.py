"""The AsyncAPI 2.6 document of the platform's events, generated from the typed payloads.

Why: event schemas are code (pydantic models registered by type); publishing them as AsyncAPI
beside the gateway's OpenAPI lets other Comuni and tools consume the events without reading code.
"""

from __future__ import annotations

from typing import Any

from sportello.events import Envelope, EventPayload


def asyncapi_document(version: str) -> dict[str, Any]:
    envelope = Envelope[EventPayload].model_json_schema()
    envelope.pop("$defs", None)
    envelope["properties"]["data"] = {"type": "object", "description": "the typed payload of the event type"}
    channels: dict[str, Any] = {}
    for event_type, payload in sorted(EventPayload.registry.items()):
        channels[event_type] = {
            "description": (payload.__doc__ or "").strip(),
            "subscribe": {
                "operationId": event_type.replace(".", "_"),
                "message": {
                    "name": event_type,
                    "contentType": "application/json",
                    "payload": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Envelope"},
                            {"type": "object", "properties": {"type": {"const": event_type},
                                                              "data": payload.model_json_schema()}},
                        ]
                    },
                },
            },
        }
    return {
        "asyncapi": "2.6.0",
        "info": {"title": "Sportello events", "version": version,
                 "description": "CloudEvents 1.0 (structured mode, JSON) on the `sportello.events` topic exchange; "
                                "routing key = event type; `tenant` and `correlationid` extensions, and the "
                                "optional distributed-tracing extension `traceparent` (W3C)."},
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"schemas": {"Envelope": envelope}},
    }
