"""The live loop of `refseq run`: a pass every ``interval`` seconds until stopped, that never
dies on a transient database error (a dropped connection, a failover, a deadlock).

Such an error rolls back the transaction in progress and ends the pass; the loop logs it on
stderr, waits (1 s, 2 s, 4 s … capped at ``max_backoff``, with jitter; back to 1 s when the
failed pass had run longer than twice the last wait: the database worked in between) and runs
the pass again on a fresh connection (the engine pre-pings and replaces dead pooled
connections). Drafts the failed pass left in ``sending`` are judged by the sweeper as after a
crash; nothing is resent blindly. Any other error still ends the command.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from sequencer.adapters.cli import output
from sequencer.services.runner import Deps, PassReport, run_pass

MAX_BACKOFF = 30.0
T = TypeVar("T")


def backoff(failures: int, rng: random.Random, cap: float = MAX_BACKOFF) -> float:
    """Seconds to wait after ``failures`` failed passes in a row (``failures`` >= 1)."""
    base = min(cap, 2.0 ** (failures - 1))
    return base * rng.uniform(0.5, 1.0)


def _sleep(seconds: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _report(what: str, exc: BaseException, failures: int, wait: float) -> None:
    from sequencer.adapters.db.transient import describe

    output.problem(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: database connection lost or busy "
        f"({describe(exc)}); {what}, retrying in {wait:.1f}s (failure {failures} in a row)"
    )


def retrying(
    make: Callable[[], T],
    stop: Callable[[], bool],
    max_backoff: float = MAX_BACKOFF,
    rng: random.Random | None = None,
) -> T | None:
    """``make()`` (e.g. the runner's setup, which checks the schema), retried while the
    database is unreachable (a runner started before its database); None if stopped first."""
    from sequencer.adapters.db.transient import is_transient

    rng = rng or random.Random()
    failures = 0
    while not stop():
        try:
            return make()
        except Exception as exc:
            if not is_transient(exc):
                raise
            failures += 1
            wait = backoff(failures, rng, max_backoff)
            _report("cannot start yet", exc, failures, wait)
            _sleep(wait, stop)
    return None


def live(
    deps: Deps,
    interval: float,
    stop: Callable[[], bool],
    show: Callable[[PassReport], None],
    rng: random.Random | None = None,
    max_backoff: float = MAX_BACKOFF,
) -> None:
    from sequencer.adapters.db.transient import is_transient

    rng = rng or random.Random()
    failures = 0
    wait = 0.0
    while not stop():
        started = time.monotonic()
        try:
            report = run_pass(deps, datetime.now(UTC), stop=stop)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() - started > 2 * wait:
                failures = 0  # it worked for a while before this: a new outage, start over
            failures += 1
            wait = backoff(failures, rng, max_backoff)
            _report("pass abandoned", exc, failures, wait)
            _sleep(wait, stop)
            continue
        if failures:
            output.problem(f"database reachable again after {failures} failed pass(es)")
            failures = 0
        show(report)
        _sleep(interval, stop)
