"""The citizen read model: each citizen's payment positions, held by each gateway replica in memory.

Why: a citizen's `GET .../payments/mine` is the platform's hottest read, and one RPC per read cannot
reach the target (>= 1,000 req/s, p99 <= 50 ms; a nameko HTTP -> RPC -> reply tops out near 500 req/s).
So a replica answers from memory what `pagopa` last told it (ADR 0012):

- a citizen's positions are loaded once, on the first read, from `pagopa.list_positions` (the
  snapshot), and then served from here;
- the events saying a position changed (`payment.position.created` carries the debtor; `completed`,
  `expired` and `invalidated` carry the position id) *forget* the citizen's entry, so the next read
  reloads the truth: the model never patches a view itself, so it can never show a shape or a value
  `pagopa` would not;
- a load that raced with such an event is answered but not kept (the event may describe a change the
  load did not see);
- while the replica's event feed is down, nothing is served from memory (every read asks `pagopa`),
  and when the feed comes back everything is forgotten (events may have been missed meanwhile);
- an entry older than `max_age_seconds` is reloaded anyway (a backstop, not the mechanism).

Freshness: a change made elsewhere shows once its event reached this replica (milliseconds after the
producer's commit, through the outbox relay); a change made through this replica shows at once.
Pure Python (no nameko, no eventlet): the gateway's edge (`gateway/feed.py`) drives it.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CREATED = "it.sportello.pagopa.payment.position.created.v1"
CHANGED = (
    "it.sportello.pagopa.payment.completed.v1",
    "it.sportello.pagopa.payment.position.expired.v1",
    "it.sportello.pagopa.payment.position.invalidated.v1",
)
EVENT_TYPES = (CREATED, *CHANGED)
# a citizen's snapshot is one `list_positions` page; a debtor with more is always read over RPC
SNAPSHOT_LIMIT = 500
DEFAULT_LIMIT = 50

Key = tuple[str, str]  # (tenant, the citizen's fiscal code)


@dataclass
class _Entry:
    views: list[dict[str, Any]]
    loaded_at: float
    default_body: bytes | None = None  # the JSON answer to the default query, built on first use


@dataclass
class Load:
    """A snapshot being fetched; `stale` once an event may have changed what it will return."""

    key: Key
    epoch: int
    stale: bool = False


@dataclass
class Stats:
    hits: int = 0
    misses: int = 0
    kept: int = 0
    discarded: int = 0
    forgotten: int = 0
    events: int = 0


class CitizenPositions:
    """Per replica: (tenant, fiscal code) -> that citizen's position views, newest first."""

    def __init__(self, *, max_citizens: int = 50_000, max_age_seconds: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_citizens = max_citizens
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._owner: dict[tuple[str, str], Key] = {}  # (tenant, position id) -> key
        self._loads: dict[Key, list[Load]] = {}
        self._epoch = 0  # bumped whenever the feed goes down or comes back
        self.online = False
        self.stats = Stats()

    def __len__(self) -> int:
        return len(self._entries)

    # -- the feed -----------------------------------------------------------------------------
    def feed_up(self) -> None:
        """The event feed (re)started: whatever is held may have missed events, so forget it all."""
        self._reset()
        self.online = True

    def feed_down(self) -> None:
        """No events can arrive now: stop answering from memory until the feed is back."""
        self._reset()
        self.online = False

    def forget_all(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._owner.clear()
        for loads in self._loads.values():
            for load in loads:
                load.stale = True

    def apply(self, event_type: str, tenant: str, data: dict[str, Any]) -> None:
        """An event from pagopa: forget what it may have changed (the next read reloads it)."""
        self.stats.events += 1
        if event_type == CREATED:
            self.forget_citizen(tenant, str(data.get("debtor_fiscal_code", "")))
        elif event_type in CHANGED:
            self.forget_position(tenant, str(data.get("position_id", "")))

    def forget_citizen(self, tenant: str, subject: str) -> None:
        key = (tenant, subject)
        self._drop(key)
        for load in self._loads.get(key, ()):
            load.stale = True

    def forget_position(self, tenant: str, position_id: str) -> None:
        key = self._owner.get((tenant, position_id))
        if key is not None:
            self.forget_citizen(*key)
            return
        # not held: it may belong to a citizen whose snapshot is on its way
        for (load_tenant, _), loads in self._loads.items():
            if load_tenant == tenant:
                for load in loads:
                    load.stale = True

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.stats.forgotten += 1
        for view in entry.views:
            self._owner.pop((key[0], str(view.get("id"))), None)

    # -- reads --------------------------------------------------------------------------------
    def get(self, tenant: str, subject: str) -> list[dict[str, Any]] | None:
        """The citizen's views, or None when they must be loaded (not held, too old, feed down)."""
        entry = self._fresh((tenant, subject))
        return None if entry is None else entry.views

    def default_body(self, tenant: str, subject: str) -> bytes | None:
        """The JSON answer to the default query (no status, first page), or None as for `get`."""
        entry = self._fresh((tenant, subject))
        if entry is None:
            return None
        if entry.default_body is None:
            entry.default_body = json.dumps({"items": entry.views[:DEFAULT_LIMIT]}).encode()
        return entry.default_body

    def _fresh(self, key: Key) -> _Entry | None:
        if not self.online:
            self.stats.misses += 1
            return None
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry.loaded_at > self.max_age_seconds:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry

    def begin_load(self, tenant: str, subject: str) -> Load:
        load = Load((tenant, subject), self._epoch)
        self._loads.setdefault(load.key, []).append(load)
        return load

    def end_load(self, load: Load, views: list[dict[str, Any]] | None) -> bool:
        """Keep the snapshot (True) unless it failed, raced with an event, or is a truncated page."""
        loads = self._loads.get(load.key, [])
        if load in loads:
            loads.remove(load)
        if not loads:
            self._loads.pop(load.key, None)
        keep = (views is not None and self.online and not load.stale and load.epoch == self._epoch
                and len(views) < SNAPSHOT_LIMIT)
        if not keep or views is None:
            self.stats.discarded += 1
            return False
        self._drop(load.key)
        self._entries[load.key] = _Entry(views=views, loaded_at=self._clock())
        for view in views:
            self._owner[(load.key[0], str(view.get("id")))] = load.key
        while len(self._entries) > self.max_citizens:
            self._drop(next(iter(self._entries)))
        self.stats.kept += 1
        return True


def page(views: list[dict[str, Any]], *, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """What `pagopa.list_positions` answers for this filter, from the citizen's whole list (same order)."""
    chosen = views if status is None else [v for v in views if v.get("status") == status]
    return chosen[offset:offset + limit]
