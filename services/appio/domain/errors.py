"""Typed errors of the App IO service and of IO's Services API (one per documented outcome).

Why: the delivery logic decides retry / stop / in-doubt by error class, never by parsing text;
each class has a stable code. Errors crossing RPC to the gateway are the kernel's
`ValidationFailed` / `NotFound`; these stay inside the service.
"""

from __future__ import annotations

from sportello.errors import SportelloError, ValidationFailed


class InvalidMessage(ValidationFailed):
    """Content that IO would refuse (limits of the Services API contract)."""

    code = "appio.message_invalid"
    title = "Message does not respect App IO's limits"


class IOApiError(SportelloError):
    """Base of what IO's Services API answered (or failed to answer)."""

    code = "appio.io_error"
    title = "App IO error"
    retryable = False
    status: int | None = None


class IOBadRequest(IOApiError):
    """400: IO refused the payload. Sending it again would fail again."""

    code = "appio.io_bad_request"
    title = "App IO refused the request"


class IOUnauthorized(IOApiError):
    """401/403 with every key of the IO service: the keys are wrong, revoked or not enabled."""

    code = "appio.io_unauthorized"
    title = "App IO refused the subscription key"
    retryable = True  # keys get rotated in configuration; retried with back-off, then failed


class IONotFound(IOApiError):
    """404: no profile (citizen not on IO) or no such message."""

    code = "appio.io_not_found"
    title = "Not found on App IO"


class IOThrottled(IOApiError):
    """429: over IO's limit; `retry_after` seconds from the Retry-After header."""

    code = "appio.io_throttled"
    title = "App IO asked to slow down"
    retryable = True
    retry_after: float = 1.0


class IOServerError(IOApiError):
    """5xx: IO failed; the request was not processed (IO's 500 = 'cannot be delivered')."""

    code = "appio.io_server_error"
    title = "App IO failed"
    retryable = True


class IOUnavailable(IOApiError):
    """No answer, and the request certainly was not processed (connect failure, or a read)."""

    code = "appio.io_unavailable"
    title = "App IO is unreachable"
    retryable = True


class IOMalformedReply(IOApiError):
    """IO answered something the contract does not allow (bad JSON, missing fields, odd status)."""

    code = "appio.io_malformed_reply"
    title = "App IO answered outside its contract"
    retryable = True


class IOOutcomeUnknown(IOApiError):
    """A submission was sent but its answer was lost or unreadable: IO may or may not have it.

    Never retried automatically (that could deliver twice): see docs/adr/0007.
    """

    code = "appio.io_outcome_unknown"
    title = "App IO may or may not have accepted the message"


class MessageNotInDoubt(SportelloError):
    """A resolution asked for a message that is not (or no longer) `in_doubt`: nothing changed."""

    code = "appio.message_not_in_doubt"
    title = "The message is not in doubt"


class NotConfirmedByIO(SportelloError):
    """'Mark as sent' named an IO message that IO does not have for this citizen and service
    (or has as rejected): the message stays in doubt."""

    code = "appio.resolution_not_confirmed"
    title = "App IO does not confirm that message"
