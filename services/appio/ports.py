"""The one port to App IO's Services API, and the values that cross it.

Why: delivery logic talks to this interface only; the real adapter (`adapters/io_http.py`)
speaks the official contract over HTTP, the unit tests use an in-memory fake, and the sandbox
twin lets the real adapter run end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from services.appio.domain.messages import MessageContent

FINAL_IO_STATUSES = frozenset({"PROCESSED", "FAILED", "REJECTED"})


@dataclass(frozen=True)
class ServiceKeys:
    """The subscription keys of one IO service of one tenant (primary, and secondary for rotation)."""

    limiter_key: str  # "<tenant>/<io service>": the limit is counted per key, so per service
    primary: str = field(repr=False)
    secondary: str | None = field(default=None, repr=False)
    service_id: str = ""
    base_url: str = ""  # where this tenant's IO is (the real API or the twin)


@dataclass(frozen=True)
class Profile:
    """IO's LimitedProfile: may this service write to the citizen, and in which language."""

    sender_allowed: bool
    preferred_languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class IOMessageStatus:
    """What getMessage says about a submitted message."""

    status: str  # ACCEPTED | THROTTLED | FAILED | PROCESSED | REJECTED (extensible)

    @property
    def final(self) -> bool:
        return self.status in FINAL_IO_STATUSES


class IOServicesPort(Protocol):
    def get_profile(self, keys: ServiceKeys, fiscal_code: str) -> Profile:
        """getProfileByPOST; raises IONotFound when the citizen is not on IO."""

    def submit_message(self, keys: ServiceKeys, fiscal_code: str, content: MessageContent, *,
                       before_send: Callable[[], None] | None = None) -> str:
        """submitMessageforUserWithFiscalCodeInBody; returns IO's message id.

        `before_send` runs once, after the rate limiter admitted the call and right before the
        first byte goes out: the caller records its intent there (see docs/adr/0007).
        """

    def get_message(self, keys: ServiceKeys, fiscal_code: str, io_message_id: str) -> IOMessageStatus:
        """getMessage: the processing status of a submitted message."""
