"""Shared CLI plumbing: settings, the clock, error handling."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import typer

from sequencer.adapters.cli import output
from sequencer.config import Settings
from sequencer.core.drafts import DraftConfig
from sequencer.core.ports import UnitOfWork
from sequencer.errors import SequencerError, SpecError

P = ParamSpec("P")
R = TypeVar("R")

# tick, run and poll: a loopback REFSEQ_BASE_URL is refused unless this is given
DEV = typer.Option(
    False,
    "--dev",
    help="Development: allow a loopback REFSEQ_BASE_URL in the unsubscribe links of the mail.",
)
NOW_HELP = "Pretend it is this moment (ISO 8601, e.g. 2026-12-01T09:00-05:00); default: now."


def parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date-time", param_hint="--now"
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(
            "give a UTC offset, e.g. 2026-12-01T09:00+00:00", param_hint="--now"
        )
    return moment.astimezone(UTC)


def settings() -> Settings:
    return Settings.from_env()


def draft_config() -> DraftConfig:
    from sequencer import bootstrap

    return bootstrap.draft_config(settings())


def uow() -> Callable[[], UnitOfWork]:
    from sequencer.bootstrap import uow_factory

    return uow_factory(settings())


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a SequencerError into clear lines on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            for p in exc.problems:
                output.problem(p.render())
            output.problem(f"{len(exc.problems)} problem(s); nothing was changed.")
            raise typer.Exit(1) from None
        except SequencerError as exc:
            output.problem(f"error: {exc}")
            raise typer.Exit(1) from None
        except Exception as exc:
            if not _database_busy(exc):
                raise
            output.problem(
                "error: the database stayed locked by another refseq process for 30 s; the "
                "transaction in progress was rolled back (nothing half-done): run it again"
            )
            raise typer.Exit(1) from None

    return wrapper


def _database_busy(exc: Exception) -> bool:
    """SQLite's "database is locked" after busy_timeout (without importing SQLAlchemy here)."""
    import sys

    sa_exc = sys.modules.get("sqlalchemy.exc")
    return (
        sa_exc is not None
        and isinstance(exc, sa_exc.OperationalError)
        and "database is locked" in str(exc)
    )


def jsonable(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj
