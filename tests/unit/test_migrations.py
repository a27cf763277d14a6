"""The kernel migration: creates outbox, inbox and dead_letters exactly as sportello/tables.py declares them."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from sportello.migrate import alembic_config, upgrade
from sportello.tables import KERNEL_METADATA

KERNEL_TABLES = {"outbox", "inbox", "dead_letters"}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def test_metadata_declares_the_three_kernel_tables() -> None:
    assert set(KERNEL_METADATA.tables) == KERNEL_TABLES


def test_upgrade_creates_the_kernel_tables(engine: Engine) -> None:
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == KERNEL_TABLES | {"alembic_version"}
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_heads() == ("kernel_0001",)


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.sqlite3'}"
    upgrade("ledger", url)
    upgrade("ledger", url)
    upgrade("tally", url)  # a service without migrations of its own gets the kernel branch only
    engine = create_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == KERNEL_TABLES | {"alembic_version"}
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_heads() == ("kernel_0001",)
    finally:
        engine.dispose()


def test_upgrade_keeps_existing_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rows.sqlite3'}"
    upgrade("ledger", url)
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO inbox (consumer, event_id, event_type, tenant, processed_at) "
                "VALUES ('c', 'e', 't', 'cremona', '2026-11-21 10:00:00')")
        upgrade("ledger", url)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM inbox").scalar_one() == 1
    finally:
        engine.dispose()


def test_autogenerate_finds_no_difference(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                                "compare_server_default": True})
        assert compare_metadata(context, KERNEL_METADATA) == []


@pytest.mark.parametrize("table", sorted(KERNEL_TABLES))
def test_columns_match_tables_py(engine: Engine, table: str) -> None:
    inspector = inspect(engine)
    declared = KERNEL_METADATA.tables[table]
    migrated = {column["name"]: column for column in inspector.get_columns(table)}
    assert list(migrated) == [column.name for column in declared.columns], "same columns, same order"
    dialect = sqlite.dialect()
    for column in declared.columns:
        found = migrated[column.name]
        assert found["nullable"] == column.nullable, column.name
        assert found["type"].compile(dialect=dialect) == column.type.compile(dialect=dialect), column.name
        assert getattr(found["type"], "length", None) == getattr(column.type, "length", None), column.name
        expected_default = column.server_default.arg.text if column.server_default is not None else None
        assert found["default"] == expected_default, column.name
    assert inspector.get_pk_constraint(table)["constrained_columns"] == [c.name for c in declared.primary_key]
    assert inspector.get_pk_constraint(table)["name"] == f"pk_{table}"
    declared_unique = {(f"uq_{table}_{c.name}", (c.name,)) for c in declared.columns if c.unique}
    migrated_unique = {(u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)}
    assert migrated_unique == declared_unique
    declared_indexes = {(ix.name, tuple(c.name for c in ix.columns)) for ix in declared.indexes}
    migrated_indexes = {(ix["name"], tuple(ix["column_names"])) for ix in inspector.get_indexes(table)}
    assert migrated_indexes == declared_indexes


def test_partial_index_on_unpublished_outbox_rows(engine: Engine) -> None:
    [index] = inspect(engine).get_indexes("outbox")
    assert index["name"] == "ix_outbox_unpublished"
    where = index["dialect_options"]["sqlite_where"]
    assert "published_at IS NULL" in str(where)


def _normalised(sql: str) -> str:
    sql = re.sub(r"^--.*$", "", sql, flags=re.M)  # alembic's "-- Running upgrade" comments
    return re.sub(r"\s+", " ", sql).replace("( ", "(").replace(" )", ")").strip().rstrip(";")


def test_postgresql_ddl_of_the_migration_equals_tables_py() -> None:
    """On PostgreSQL (BIGSERIAL ids, timestamps with time zone) the migration's DDL is tables.py's DDL."""
    buffer = io.StringIO()
    config = alembic_config("ledger", "postgresql+psycopg2://offline:offline@localhost/offline")
    config.output_buffer = buffer
    command.upgrade(config, "heads", sql=True)
    migration_sql = {_normalised(statement) for statement in buffer.getvalue().split(";") if statement.strip()}
    dialect = postgresql.dialect()
    for table in KERNEL_METADATA.sorted_tables:
        expected = _normalised(str(CreateTable(table).compile(dialect=dialect)))
        assert expected in migration_sql, expected
        for index in table.indexes:
            assert _normalised(str(CreateIndex(index).compile(dialect=dialect))) in migration_sql, index.name
