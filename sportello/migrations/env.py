"""Alembic environment shared by every service: the URL comes from `sportello.migrate`."""

from __future__ import annotations

from alembic import context

from sportello.db import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("sportello.migrate must set sqlalchemy.url")
version_table = config.get_main_option("version_table") or "alembic_version"

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True, version_table=version_table)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # replicas starting together take turns; the lock ends with the session
            connection.exec_driver_sql("SELECT pg_advisory_lock(hashtext('sportello-migrations'))")
            connection.commit()
        context.configure(connection=connection, version_table=version_table,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
