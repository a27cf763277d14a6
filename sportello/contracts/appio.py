"""Facts announced by `services/appio`."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from sportello.events import EventPayload

MessageKind = Literal["payment_notice", "certificate_ready", "free_text"]


class _MessageOutcome(EventPayload):
    message_id: str = Field(description="our id of the logical message")
    kind: MessageKind
    recipient_fiscal_code: str = Field(min_length=16, max_length=16)
    reference: str | None = Field(default=None, description="what it was about: position id, certificate id...")
    campaign_id: str | None = None


class MessageSent(_MessageOutcome):
    """IO accepted the message for the citizen."""

    event_type: ClassVar[str] = "it.sportello.appio.message.sent.v1"
    io_message_id: str


class MessageNotDeliverable(_MessageOutcome):
    """The citizen cannot receive it on IO: not on IO, or the Comune's service is not allowed."""

    event_type: ClassVar[str] = "it.sportello.appio.message.not_deliverable.v1"
    reason: Literal["not_on_io", "sender_not_allowed"]


class MessageFailed(_MessageOutcome):
    """Delivery failed for good after the retries allowed."""

    event_type: ClassVar[str] = "it.sportello.appio.message.failed.v1"
    reason: str = Field(max_length=200)
