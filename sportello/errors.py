"""Typed errors with stable codes.

Why: services raise these; the RPC edge transports them by class (each takes one `detail`
string so it can be rebuilt on the caller's side) and the gateway maps `code` to an HTTP status
in a single table. A code, once published, never changes meaning.
"""

from __future__ import annotations

from typing import ClassVar


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class SportelloError(Exception):
    """Base of every error a caller may see. Subclasses set a stable dotted `code`."""

    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    registry: ClassVar[dict[str, type[SportelloError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        existing = SportelloError.registry.get(cls.code)
        if existing is not None and _path(existing) != _path(cls):
            raise TypeError(f"error code {cls.code!r} already used by {_path(existing)}")
        SportelloError.registry[cls.code] = cls

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail or self.title


class ConfigurationError(SportelloError):
    code = "configuration.invalid"
    title = "Invalid configuration"


class ValidationFailed(SportelloError):
    code = "request.invalid"
    title = "Invalid request"


class NotFound(SportelloError):
    code = "resource.not_found"
    title = "Resource not found"


class UnknownTenant(SportelloError):
    code = "tenant.unknown"
    title = "Unknown tenant"


class Forbidden(SportelloError):
    code = "access.forbidden"
    title = "Forbidden"


class Unavailable(SportelloError):
    code = "service.unavailable"
    title = "Service unavailable"


class MalformedEvent(SportelloError):
    code = "event.malformed"
    title = "Malformed event"


class UnknownEventType(SportelloError):
    code = "event.unknown_type"
    title = "Unknown event type or version"
