"""Database access: SQLAlchemy 2 engines and transactions; SQLite by default, PostgreSQL by URL.

Why: each service owns one database. Everything that must happen together (a state change,
the outbox row announcing it, the inbox row proving an event was handled) happens inside one
`Database.transaction()`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# Every service's metadata uses the same naming convention so Alembic migrations are stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for the backend: WAL and a busy timeout for SQLite, a checked pool for PG."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide where transactions begin (pysqlite's own BEGIN
            # comes only before the first write, so a SAVEPOINT before it would commit on release).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    # No pre-ping: it costs a round trip per transaction. A connection that died is detected by the
    # statement that uses it (the pool is then invalidated and the caller's retry gets fresh ones);
    # recycling keeps connections younger than typical firewall idle timeouts.
    kwargs.setdefault("pool_recycle", 1800)
    return create_engine(url, **kwargs)


class Database:
    """One service's database.

    On SQLite (one writer at a time) transactions of this process take turns on a lock. The lock
    is a `threading.Lock`, green under eventlet, so a waiting worker yields instead of blocking
    the whole process inside SQLite's busy handler while the holder cannot run.
    """

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._turn = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        self._holder: int | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on any error."""
        if self._turn is None:
            with self._sessions() as session, session.begin():
                yield session
            return
        if self._holder == threading.get_ident():
            raise RuntimeError("nested transaction on SQLite: it would wait for itself; use the outer one")
        with self._turn:
            self._holder = threading.get_ident()
            try:
                with self._sessions() as session, session.begin():
                    yield session
            finally:
                self._holder = None

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()
