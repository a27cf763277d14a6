"""Test-only components whose nameko container dies on demand, run as real processes:
`python -m sportello.edge.run tests.support.dying_service:DyingService` (or `:DyingGateway`).

Why: a container dies when a thread of one of its extensions raises (a queue consumer losing its
broker in a way nameko treats as fatal, a worker whose ack fails, a timer, our relay loop...):
nameko then calls `container.kill(exc_info)` and `container.wait()` raises. These components take
that path with every extension of a real service (relay, dead-letter recorder, metrics, tracing)
or of the real gateway (read-model feed, RPC proxies, HTTP server) in the container, so the tests
see how the whole process reacts.

`DYING_SERVICE_NAME` names the service (several can then share a vhost). `die(how, after)`
answers at once; `after` seconds later:
- `"error"`: a managed thread raises (nameko's own path to a fatal container death);
- `"kill"`: `container.kill()` with no error, as an extension that gives up would;
- `"hang"`: as `"error"`, and this extension's `kill()` then blocks the whole process (a real
  sleep, not a green one): a kill that never ends, for whatever reason.
"""

from __future__ import annotations

import os
from typing import Any

import eventlet
from nameko.extensions import DependencyProvider

from gateway.service import GatewayService
from sportello.edge.rpc import rpc
from sportello.edge.service import PlatformService

_blocking_sleep = eventlet.patcher.original("time").sleep


class ContainerDeath(RuntimeError):
    """Raised in a managed thread to kill the container (test only)."""


class Killer(DependencyProvider):  # type: ignore[misc]
    hang_on_kill = False

    def get_dependency(self, worker_ctx: Any) -> Killer:
        return self

    def kill(self) -> None:
        if self.hang_on_kill:
            _blocking_sleep(3600)  # the event loop stops here too

    def die(self, how: str, after: float) -> None:
        if how not in ("error", "kill", "hang"):
            raise ValueError(f"unknown way to die: {how!r}")
        self.hang_on_kill = how == "hang"

        def _raise() -> None:
            eventlet.sleep(after)
            raise ContainerDeath("container death on demand")

        def _kill() -> None:
            eventlet.sleep(after)
            self.container.kill()

        if how == "kill":
            eventlet.spawn_n(_kill)
        else:
            self.container.spawn_managed_thread(_raise, identifier="dying_service.die")


class DyingService(PlatformService):
    name = os.environ.get("DYING_SERVICE_NAME", "dying")  # several at once on one vhost: one name each

    killer = Killer()

    @rpc  # type: ignore[untyped-decorator]
    def die(self, how: str = "error", after: float = 0.2) -> str:
        self.killer.die(how, after)
        return "dying"


class DyingGateway(GatewayService):
    """The gateway (its read-model feed, RPC proxies, HTTP server) plus `die` over RPC."""

    name = "dying_gateway"

    killer = Killer()

    @rpc  # type: ignore[untyped-decorator]
    def die(self, how: str = "error", after: float = 0.2) -> str:
        self.killer.die(how, after)
        return "dying"
