"""Shared fixtures: a real SQLite file and a real PostgreSQL database for every DB test.

``db_url`` (ids ``sqlite`` / ``postgresql``) is a migrated, empty database:

* SQLite: a copy of a template file migrated once per run, in ``tmp_path``.
* PostgreSQL: one database ``refseq_test_<hex8>`` per run, migrated once, every table
  truncated before each test, dropped (``WITH (FORCE)``) at the end.

PostgreSQL is found at ``$REFSEQ_TEST_PG_URL``, else ``postgres@127.0.0.1:5432/test``, else
``root@127.0.0.1:5432/test`` (trust auth). If none answers, the PostgreSQL tests *error* with
the reason; set ``REFSEQ_TEST_SKIP_PG=1`` to skip them instead (or deselect with ``-m "not pg"``).
"""

from __future__ import annotations

import os
import resource
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from sequencer.adapters.db.migrate import upgrade
from sequencer.adapters.db.session import SqlUnitOfWorkFactory, make_uow_factory

pytest_plugins = [
    "tests.smtp_sink",
    "tests.dovecot_fixtures",
    "tests.reliability",
    "tests.portguard",  # a test that connects to a loopback port nobody in the run opened fails
]  # smtp_sink, dovecot, imap_user

PG_CANDIDATES = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)

DB_PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.pg),
]


def _admin_engine(url: str) -> Engine:
    return create_engine(
        url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """A PostgreSQL URL whose role may CREATE DATABASE; fails loudly when there is none."""
    if os.environ.get("REFSEQ_TEST_SKIP_PG") == "1":
        pytest.skip("PostgreSQL tests skipped: REFSEQ_TEST_SKIP_PG=1")
    configured = os.environ.get("REFSEQ_TEST_PG_URL")
    candidates = (configured,) if configured else PG_CANDIDATES
    errors = []
    for url in candidates:
        engine = _admin_engine(url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return url
        except OperationalError as exc:
            errors.append(f"  {make_url(url)!r}: {str(exc.orig).strip().splitlines()[0]}")
        finally:
            engine.dispose()
    pytest.fail(
        "PostgreSQL is not reachable for the [postgresql] tests:\n"
        + "\n".join(errors)
        + "\nStart it, point REFSEQ_TEST_PG_URL at a role that may CREATE DATABASE, "
        "or set REFSEQ_TEST_SKIP_PG=1 to skip these tests.",
        pytrace=False,
    )


@contextmanager
def pg_database(admin_url: str, prefix: str = "refseq_test") -> Iterator[str]:
    """A brand-new empty PostgreSQL database, dropped (even with open connections) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine(admin_url)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def pg_migrated_url(pg_admin_url: str) -> Iterator[str]:
    """This run's PostgreSQL database, migrated to head once."""
    with pg_database(pg_admin_url) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def pg_janitor(pg_migrated_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_migrated_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _truncate_all(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")  # a leaked session → error
        names = connection.scalars(
            text(
                "SELECT quote_ident(tablename) FROM pg_tables"
                " WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )
        ).all()
        if names:
            connection.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run; tests get copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")  # NullPool + dispose: the WAL is checkpointed into the file
    return path


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "refseq.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_migrated_url")
    _truncate_all(request.getfixturevalue("pg_janitor"))
    return url


@pytest.fixture(params=DB_PARAMS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (not migrated): for migration tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with pg_database(request.getfixturevalue("pg_admin_url"), "refseq_test_empty") as url:
        yield url


@pytest.fixture
def uow_factory(db_url: str) -> Iterator[SqlUnitOfWorkFactory]:
    """``make_uow_factory(db_url)``: call it for a fresh unit of work; disposed after the test."""
    factory = make_uow_factory(db_url)
    yield factory
    factory.dispose()


@pytest.fixture(autouse=True)
def _close_cli_pools() -> Iterator[None]:
    """The CLI caches one engine per database URL; close them after each test."""
    yield
    from sequencer.bootstrap import dispose_all

    dispose_all()


@pytest.fixture(autouse=True)
def _address_space_untouched() -> Iterator[None]:
    """No test may leave pytest itself under an address-space limit (sequencer.memlimit is for
    worker processes): Chromium, started by later tests, reserves many GB and would not start."""
    before = resource.getrlimit(resource.RLIMIT_AS)
    yield
    after = resource.getrlimit(resource.RLIMIT_AS)
    if after != before:
        resource.setrlimit(resource.RLIMIT_AS, before)
        pytest.fail(f"this test changed pytest's RLIMIT_AS from {before} to {after}")
