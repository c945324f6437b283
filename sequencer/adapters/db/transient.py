"""Which database errors are transient: a worker retries the pass instead of dying.

A connection the server dropped (restart, failover, ``pg_terminate_backend``, a network blip),
a deadlock or serialisation failure, a pool that timed out, SQLite's "database is locked": the
transaction in progress was rolled back by the database, so running the pass again is safe
(every write of the send path is a compare-and-set; see ``services/sending.py``).
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc


def is_transient(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)


def describe(error: BaseException) -> str:
    """One line, without the SQL statement and parameters SQLAlchemy appends."""
    orig = getattr(error, "orig", None)
    source = orig if orig is not None else error
    first = (str(source).strip().splitlines() or [""])[0]
    return f"{type(source).__name__}: {first}" if first else type(source).__name__
