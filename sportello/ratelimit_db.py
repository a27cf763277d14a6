"""The sliding-window limiter of `sportello.ratelimit`, kept in PostgreSQL so replicas share one limit.

Why: IO's 150 requests / 5 s (GPD's 100 / 10 s) are per subscription key, not per process. Two
replicas with in-process limiters would send twice the rate. Here every call is a row in
`rate_limit_calls` (admitted at, ended at, deadline) and admission happens under a row lock on
the key's row in `rate_limit_keys`, so the rule of the local limiter — admit only while fewer than
N calls are in flight or ended less than W ago — holds across every process using the database.
All times come from the database's clock (one clock for every replica).

A replica that dies leaves its calls in flight: each carries a deadline (admission + the longest a
call can take), after which it counts as ended at its deadline. See docs/adr/0011.

PostgreSQL only (row locks, `clock_timestamp()`, the plpgsql function `rate_limit_admit` that
admits in one round trip); SQLite deployments run one replica and use the local limiter. The tables
are declared here; the using service's own migration creates them and the function
(services/appio/migrations/versions/appio_0003_shared_rate_limit.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from sqlalchemy import BigInteger, Column, Engine, Float, Index, Integer, MetaData, String, Table, text

from sportello.ratelimit import CallsFromBeginAndEnd, Ticket

log = structlog.get_logger("sportello.ratelimit")
_ID = BigInteger().with_variant(Integer(), "sqlite")


def rate_limit_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The two tables, declared on a service's metadata (its migration creates them)."""
    keys = Table(
        "rate_limit_keys", metadata,
        Column("key", String(200), primary_key=True),
        Column("paused_until", Float, nullable=False, server_default=text("0")),
    )
    calls = Table(
        "rate_limit_calls", metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("key", String(200), nullable=False),
        Column("started_at", Float, nullable=False),  # epoch seconds, the database's clock
        Column("ended_at", Float, nullable=True),  # NULL: in flight
        Column("deadline", Float, nullable=False),  # in flight past it = its process died: ended at the deadline
        Index("ix_rate_limit_calls_key", "key", "started_at"),
    )
    return keys, calls


class PostgresWindowLimiter(CallsFromBeginAndEnd):
    """`CallLimiter` over PostgreSQL: at most `limit` calls per key in any window, across processes.

    Waiters of one process queue on a local lock, so only one of them at a time polls the
    database for a key's next free slot (the others would only find it taken).
    """

    def __init__(self, engine: Engine, limit: int, window_seconds: float, *, max_call_seconds: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("the shared limiter needs PostgreSQL; use SlidingWindowLimiter on SQLite")
        if limit < 1 or window_seconds <= 0 or max_call_seconds <= 0:
            raise ValueError("limit must be >= 1, the window and the longest call positive")
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")  # one statement, one trip
        self.limit = limit
        self.window = window_seconds
        self.max_call = max_call_seconds
        self._sleep = sleep
        self._known_keys: set[str] = set()
        self._local: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _queue(self, key: str) -> threading.Lock:
        with self._guard:
            return self._local.setdefault(key, threading.Lock())

    def _ensure_key(self, key: str) -> None:
        if key in self._known_keys:
            return
        with self.engine.begin() as connection:
            connection.execute(text("INSERT INTO rate_limit_keys (key, paused_until) VALUES (:k, 0) "
                                    "ON CONFLICT (key) DO NOTHING"), {"k": key})
        self._known_keys.add(key)

    def _try(self, key: str) -> tuple[int | None, float]:
        """One admission attempt, one round trip (`rate_limit_admit`, created by the migration):
        (call id, 0) when admitted, else (None, seconds to wait)."""
        with self._autocommit.connect() as connection:
            row = connection.execute(text("SELECT call_id, wait FROM rate_limit_admit(:k, :l, :w, :m)"),
                                     {"k": key, "l": self.limit, "w": self.window, "m": self.max_call}).one()
        return (int(row.call_id), 0.0) if row.call_id is not None else (None, float(row.wait))

    def begin(self, key: str = "") -> Ticket:
        self._ensure_key(key)
        waited = 0.0
        with self._queue(key):
            while True:
                call_id, wait = self._try(key)
                if call_id is not None:
                    return Ticket(key, call_id, waited)
                self._sleep(wait)
                waited += wait

    def end(self, ticket: Ticket) -> None:
        """Stamp the call's end; never raises (the caller holds an answer that must not be lost):
        if the database is away, the call simply counts until its deadline."""
        try:
            with self._autocommit.connect() as connection:
                connection.execute(text("UPDATE rate_limit_calls SET ended_at = extract(epoch FROM clock_timestamp()) "
                                        "WHERE id = :id AND ended_at IS NULL"), {"id": ticket.token})
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("rate_limit_end_not_recorded", error=type(exc).__name__)

    def pause(self, key: str, seconds: float) -> None:
        self._ensure_key(key)
        with self.engine.begin() as connection:
            connection.execute(text(
                "UPDATE rate_limit_keys SET paused_until = "
                "greatest(paused_until, extract(epoch FROM clock_timestamp()) + :s) WHERE key = :k"),
                {"k": key, "s": max(0.0, seconds)})

    def in_window(self, key: str = "") -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(
                "SELECT count(*) FROM rate_limit_calls WHERE key = :k "
                "AND coalesce(ended_at, deadline) > extract(epoch FROM clock_timestamp()) - :w"),
                {"k": key, "w": self.window}).scalar_one())
