"""Engines, sessions and the SQL unit of work."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from sequencer.adapters.db.repository import SqlRepository
from sequencer.core.ports import Store

SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=30000",  # first: switching a new file to WAL may wait for a lock
    "PRAGMA foreign_keys=ON",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
)


# Keep non-ASCII readable in the database (SQLite stores JSON as text). One shared encoder:
# json.dumps(**non-default options) would build a new one per value (slow for bulk inserts).
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json_dumps(value: Any) -> str:
    return _JSON_ENCODER.encode(value)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _sqlite_manual_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # pysqlite opens no transaction: "begin" does


def _sqlite_begin_immediate(connection: Any) -> None:
    # Take the write lock when the transaction starts, waiting up to busy_timeout for it. A
    # deferred transaction that reads and then writes fails at once with "database is locked"
    # (busy_timeout does not apply) whenever another process committed in between.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def normalize_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` select psycopg 3; anything else is left alone."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``sqlite:///path`` (with pragmas) or ``postgresql+psycopg://...``."""
    url = normalize_url(url)
    backend = make_url(url).get_backend_name()
    options: dict[str, Any] = {"json_serializer": _json_dumps}
    if backend == "postgresql":
        options["pool_pre_ping"] = True
    elif backend != "sqlite":
        raise ValueError(
            f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://"
        )
    options.update(kwargs)
    engine = create_engine(url, **options)
    if backend == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


class SqlUnitOfWork:
    """``with uow: ...; uow.commit()``. Leaving the block discards anything not committed."""

    # ports.UnitOfWork declares ``repo: Store`` as a plain (settable, hence invariant) attribute,
    # so it is typed as the Protocol; the assignment in __enter__ checks SqlRepository against it.
    repo: Store
    session: Session

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    def __enter__(self) -> Self:
        self.session = self._session_factory()
        self.repo = SqlRepository(self.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.session.rollback()  # a no-op right after commit()
        finally:
            self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


class SqlUnitOfWorkFactory:
    """Callable that opens a :class:`SqlUnitOfWork`; owns its engine (``dispose()`` at exit)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session_factory = sessionmaker(engine, expire_on_commit=False)

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.session_factory)

    def dispose(self) -> None:
        self.engine.dispose()


def make_uow_factory(url: str) -> SqlUnitOfWorkFactory:
    """Units of work on ``url``; on SQLite each one is a ``BEGIN IMMEDIATE`` transaction, so
    processes sharing the file take turns (busy_timeout) instead of failing mid-way."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_manual_begin)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    return SqlUnitOfWorkFactory(engine)
