"""The audit trail refuses UPDATE and DELETE in the database itself (trigger from anpr_0002),
on PostgreSQL (production) and SQLite (the local default) alike."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.anpr.models import audit
from sportello.migrate import upgrade
from tests.support.servers import Databases

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_audit_is_append_only(backend: str, databases: Databases, tmp_path: Path) -> None:
    url = databases.url("anpraudit") if backend == "postgresql" else f"sqlite:///{tmp_path / 'anpr.sqlite3'}"
    upgrade("anpr", url)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.insert(audit).values(
                tenant="cremona", at=datetime.now(UTC), actor="RSSMRA85T10A562S", actor_role="operator",
                action="lookup", subject="VRDLGU70A01D150D", reason="verifica residenza"))
        for statement in (sa.update(audit).values(reason="changed"), sa.delete(audit)):
            with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as connection:
                connection.execute(statement)
        with engine.connect() as connection:
            assert connection.execute(sa.select(audit.c.reason)).scalars().all() == ["verifica residenza"]
    finally:
        engine.dispose()
