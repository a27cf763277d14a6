"""RPC calls with a deadline, and typed errors rebuilt on the caller's side.

Why: a nameko 2.14 RPC proxy call has no timeout of its own — a dead service would hang the
caller forever. Every call goes through `call_with_deadline`, which raises the typed
`UpstreamTimeout` instead. Errors raised by services as `SportelloError` subclasses are
registered with nameko so they arrive as the same class, not as an opaque `RemoteError`.
"""

from __future__ import annotations

from typing import Any

import eventlet
from nameko.exceptions import deserialize_to_instance, registry
from nameko.rpc import Rpc

from sportello.edge.consumers import ConnectionSafeRpcConsumer
from sportello.errors import SportelloError


def register_remote_errors() -> int:
    """Make every known SportelloError subclass deserialize to itself. Returns how many."""
    for cls in SportelloError.registry.values():
        deserialize_to_instance(cls)
    return sum(1 for cls in registry.values() if isinstance(cls, type) and issubclass(cls, SportelloError))


def call_with_deadline(method: Any, *args: Any, timeout: float, on_timeout: SportelloError, **kwargs: Any) -> Any:
    """Call a nameko RPC proxy method, giving up after `timeout` seconds with `on_timeout`."""
    reply = method.call_async(*args, **kwargs)
    with eventlet.Timeout(timeout, on_timeout):
        return reply.result()


def gather_with_deadline(calls: dict[str, Any], *, timeout: float) -> dict[str, tuple[Any, BaseException | None]]:
    """Start every call at once, then collect each result (or its error) within one shared deadline."""
    results: dict[str, tuple[Any, BaseException | None]] = {}
    replies = {}
    for name, method in calls.items():
        try:
            replies[name] = method.call_async()
        except Exception as exc:  # noqa: BLE001 - e.g. UnknownService: no such queue yet; reported per service
            results[name] = (None, exc)
    deadline = eventlet.hubs.get_hub().clock() + timeout
    for name, reply in replies.items():
        remaining = max(0.0, deadline - eventlet.hubs.get_hub().clock())
        try:
            with eventlet.Timeout(remaining):
                results[name] = (reply.result(), None)
        except eventlet.Timeout as exc:
            results[name] = (None, exc)
        except Exception as exc:  # noqa: BLE001 - reported per service, not raised
            results[name] = (None, exc)
    return results


class TypedRpc(Rpc):
    """nameko's RPC entrypoint; our typed errors are expected outcomes (logged as warnings); a
    broker restart while a call finishes does not kill the service (`consumers.py`)."""

    rpc_consumer = ConnectionSafeRpcConsumer()

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("expected_exceptions", SportelloError)
        super().__init__(**kwargs)


rpc = TypedRpc.decorator
