"""The anpr migration creates exactly what services/anpr/models.py declares (SQLite here; PostgreSQL
in tests/integration/test_anpr_flow.py, where the service migrates its own database)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from services.anpr.models import METADATA
from sportello.migrate import upgrade
from sportello.tables import KERNEL_METADATA


def test_migration_matches_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'anpr.sqlite3'}"
    upgrade("anpr", url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={
                "compare_type": True, "compare_server_default": True,
                # the kernel's tables live in the same database: compared by tests/unit/test_migrations.py
                "include_name": lambda name, kind, parents: kind != "table" or name in METADATA.tables})
            assert compare_metadata(context, METADATA) == []
        assert not set(METADATA.tables) & set(KERNEL_METADATA.tables)
        inspector = inspect(engine)
        for table in METADATA.sorted_tables:
            migrated = [c["name"] for c in inspector.get_columns(table.name)]
            assert migrated == [c.name for c in table.columns], f"{table.name}: same columns, same order"
            assert {i["name"] for i in inspector.get_indexes(table.name)} == {i.name for i in table.indexes}
    finally:
        engine.dispose()
