"""Run the Alembic migrations from code: no alembic.ini, the script folder ships in the package.

``ensure_schema(url)`` is what the CLI, web and workers call at start: a single
``SELECT version_num`` when the database is current, an upgrade when it is behind.
Upgrades hold a lock (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``), so
processes starting together take turns and the later ones find nothing left to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select
from sqlalchemy.pool import NullPool

from sequencer.adapters.db.session import make_engine, normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x7265_6673_6571  # "refseq"


def alembic_config(url: str) -> Config:
    """A Config pointing at the packaged migrations and at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


@cache
def script_head() -> str | None:
    """The newest revision shipped with this code (read once per process)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


@contextmanager
def _connection(url: str, *, migrating: bool) -> Iterator[Connection]:
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if migrating and connection.dialect.name == "sqlite":
                # Batch mode copies tables; FK checks would fail or cascade mid-copy.
                # (Must run outside a transaction; pysqlite has not begun one yet.)
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                # One write transaction for the whole run: concurrent starters wait
                # (busy_timeout), and a failed migration leaves nothing half-done.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            elif migrating and connection.dialect.name == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            yield connection
            connection.commit()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    config = alembic_config(url)
    with _connection(url, migrating=True) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(url: str, revision: str) -> None:
    config = alembic_config(url)
    with _connection(url, migrating=True) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current(url: str) -> str | None:
    """The database's revision, or None for an empty (never migrated) database."""
    with _connection(url, migrating=False) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(url: str) -> bool:
    """Upgrade to head if the database is behind. Returns True if it ran migrations."""
    if current(url) == script_head():
        return False
    upgrade(url)
    return True
