"""Alembic environment, configured from code (``sequencer.adapters.db.migrate``); no alembic.ini.

The caller may hand over an open connection in ``config.attributes["connection"]``; otherwise
an engine is made from the ``sqlalchemy.url`` main option. On SQLite, ALTERs run in batch mode
(copy-and-move), and custom column types are rendered as plain ``sa`` types so revisions never
import the application.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from sequencer.adapters.db.session import make_engine
from sequencer.adapters.db.tables import Base
from sequencer.adapters.db.types import render_item

target_metadata = Base.metadata


def configure_and_run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        configure_and_run(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set the sqlalchemy.url main option (see sequencer.adapters.db.migrate)")
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                # Batch mode recreates tables; FK checks would cascade or fail mid-copy.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            configure_and_run(connection)
            connection.commit()
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=False,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
