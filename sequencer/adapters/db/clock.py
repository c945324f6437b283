"""The database's clock, for what must not depend on two machines' clocks agreeing.

A claim's staleness (the sweeper) is judged by one clock only: the database's. On PostgreSQL
that is the server's ``CURRENT_TIMESTAMP`` (the start of the current transaction), so runners
whose clocks disagree, or a ``tick --now <future>``, judge every claim alike. SQLite has no
server: its clock is the local clock of the process running the query, and every process
sharing an SQLite file runs on the same machine, hence reads the same clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Interval, func, literal
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from sequencer.adapters.db.types import UTCDateTime


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def db_now(session: Session) -> ColumnElement[Any]:
    """An SQL expression for "now" on the database's clock."""
    if _is_postgresql(session):
        return func.now()  # CURRENT_TIMESTAMP
    return literal(datetime.now(UTC), UTCDateTime())


def db_ago(session: Session, age: timedelta) -> ColumnElement[Any]:
    """An SQL expression for ``age`` before now on the database's clock."""
    if _is_postgresql(session):
        return func.now() - literal(age, Interval())
    return literal(datetime.now(UTC) - age, UTCDateTime())
