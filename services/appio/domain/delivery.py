"""The delivery state machine of one logical message, and its retry policy.

    pending ──profile──▶ profile_checked ──intent──▶ submitting ──201──▶ submitted ──status──▶ sent
       │ 404 / sender_allowed=false          ▲  │ 429/5xx/unreachable           │ REJECTED/FAILED
       ▼                                     └──┘ (back, with back-off)         ▼
    not_deliverable (terminal)             submitting + lost answer ──▶ in_doubt   failed (terminal)

`submitting` is written and committed *before* the submission leaves; a message found in it
with its lease expired was being submitted by a process that died: it becomes `in_doubt`,
never submitted again (docs/adr/0007).
"""

from __future__ import annotations

from dataclasses import dataclass

PENDING = "pending"
PROFILE_CHECKED = "profile_checked"
SUBMITTING = "submitting"
SUBMITTED = "submitted"
SENT = "sent"
NOT_DELIVERABLE = "not_deliverable"
FAILED = "failed"
IN_DOUBT = "in_doubt"

ACTIVE = (PENDING, PROFILE_CHECKED, SUBMITTED)  # picked up by the dispatcher when due
TERMINAL = (SENT, NOT_DELIVERABLE, FAILED, IN_DOUBT)
ALL_STATES = (PENDING, PROFILE_CHECKED, SUBMITTING, SUBMITTED, *TERMINAL)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to try. Defaults sized for IO's limits and a Comune's day."""

    max_attempts: int = 8  # profile + submission attempts before `failed`
    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    status_poll_seconds: float = 2.0
    status_poll_cap_seconds: float = 60.0
    follow_seconds: float = 3600.0  # stop following a status that never turns final

    def delay(self, attempt: int) -> float:
        """Exponential back-off after the n-th failed attempt (1, 2, 4, ... capped)."""
        return float(min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1)))

    def poll_delay(self, polls: int) -> float:
        return float(min(self.status_poll_cap_seconds, self.status_poll_seconds * 2 ** max(0, polls - 1)))


def outcome(state: str, reason: str | None) -> str:
    """The per-recipient outcome shown to the back office."""
    if state == SENT:
        return "sent"
    if state == NOT_DELIVERABLE:
        return "not_on_io" if reason == "not_on_io" else "not_allowed"
    if state == FAILED:
        return "failed"
    if state == IN_DOUBT:
        return "in_doubt"
    return "pending"
