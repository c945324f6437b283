"""tick: one scheduler pass that finds the due work among N enrollments; how it grows with N.

The pass timed is the part of the beat's drafting pass that looks for work (``refseq tick --only
draft`` / the ``refseq.draft_due`` task before it renders anything): ``resume_paused`` (pauses
that ran out) and ``due_enrollments(now, 1000)`` (active enrollments of active campaigns whose
next step is due and not drafted yet, oldest first). It finds 1,000 due enrollments (100 in
``--quick``) among N = 10k, 100k and, with ``--large``, 1M.

The N enrollments are a realistic mix, cloned in SQL from a real launch (untimed): the 1,000
due; 10 % whose step is drafted and waiting for the rep or for the send window (due earlier,
with a draft row; their ``next_due_at`` is what the real drafting service leaves on the 40
launched enrollments it drafts first: before the fix in ``add_draft`` these were the rows every
tick walked past, ever more of them as N grows); 50 % active with their
next step days ahead; 2 % paused by an out-of-office; the rest finished (completed, replied,
bounced, unsubscribed, stopped), each with its sent draft. PostgreSQL is ANALYZEd (autovacuum
would have); SQLite is left as refseq leaves it.

No raw baseline: the figure is growth. The "baseline" column is the same pass at the smallest N,
so ratio = time(smallest) ÷ time(largest). Target: time at 1M ≤ 2 x time at 10k (ratio ≥ 0.5).
The send dispatcher's query (``due_mailboxes``) is timed too and reported in the extras.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.data import NOW, clone_enrollments, draft_config, fresh_database, launch
from benchmarks.harness import Context, Result, peak_rss_mb

STAGE = "tick"
FINISHED = ("completed", "replied", "bounced", "unsubscribed", "stopped")


def _note(msg: str) -> None:
    print(f"tick: {msg}", file=sys.stderr, flush=True)


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def seed(url: str, workdir: Path, n: int, due: int) -> dict[str, int]:
    """N enrollments (``due`` of them due now, no draft) in the mix described above."""
    from sqlalchemy import String, cast, delete, func, insert, literal, select, text, update

    from sequencer.adapters.db.repository import DRAFTS, ENROLLMENTS
    from sequencer.adapters.db.session import make_engine, make_uow_factory
    from sequencer.adapters.db.types import JSONDocument, UTCDateTime
    from sequencer.services.drafting import draft_due

    launch(url, workdir, 40)
    # Draft the launched enrollments with the real service, to copy what drafting leaves on an
    # enrollment whose step waits for approval (its next_due_at kept, or cleared).
    uow_factory = make_uow_factory(url)
    try:
        draft_due(uow_factory, draft_config(), NOW + timedelta(days=3))
    finally:
        uow_factory.dispose()
    engine = make_engine(url)
    e = ENROLLMENTS
    with engine.connect() as conn:
        template = conn.execute(select(func.min(e.c.id)).where(e.c.state == "active")).scalar_one()
        drafted_due = conn.execute(select(e.c.next_due_at).where(e.c.id == template)).scalar_one()
    waiting_due = None if drafted_due is None else NOW - timedelta(days=2)
    waiting = n // 10
    future = n // 2
    paused = n // 50
    finished = n - due - waiting - future - paused
    assert finished > 0, n
    groups: list[tuple[str, str, int, Any]] = [
        ("w", "active", waiting, waiting_due),
        ("d", "active", due, NOW - timedelta(hours=1)),
        ("f", "active", future, NOW + timedelta(days=2)),
        ("p", "paused", paused, NOW + timedelta(days=1)),
    ]
    per_state = finished // len(FINISHED)
    for i, state in enumerate(FINISHED):
        count = per_state if i < len(FINISHED) - 1 else finished - per_state * (len(FINISHED) - 1)
        groups.append((f"x{i}-", state, count, None))
    for prefix, state, count, at in groups:
        # chunks keep one statement's memory (and SQLite's recursive CTE) small
        for start in range(0, count, 250_000):
            clone_enrollments(url, template, start, min(250_000, count - start), prefix, state, at)
    sent_at = literal(NOW - timedelta(days=5), UTCDateTime)
    with engine.begin() as conn:
        conn.execute(delete(e).where(~e.c.prospect_key.like("%@bench.example")))
        conn.execute(
            update(e)
            .where(e.c.state == "paused")
            .values(paused_until=literal(NOW + timedelta(days=3), UTCDateTime))
        )
        for state, like in (("pending_approval", "w%"), ("sent", "x%")):
            conn.execute(
                insert(DRAFTS).from_select(
                    [
                        "enrollment_id", "campaign_id", "step_index", "template", "state",
                        "to_email", "subject", "text", "headers", "message_id", "due_at",
                        "revision", "created_at", "updated_at", "attempts", "sent_at",
                    ],
                    select(
                        e.c.id, e.c.campaign_id, literal(0), e.c.sequence + literal("_intro"),
                        literal(state), e.c.prospect_email, literal("Hello"), literal("Hi"),
                        literal({}, JSONDocument),
                        literal("<b") + cast(e.c.id, String) + literal("@bench.example>"),
                        sent_at, literal(1), sent_at, sent_at, literal(1),
                        sent_at if state == "sent" else literal(None, UTCDateTime),
                    ).where(e.c.prospect_key.like(like)),
                )
            )  # fmt: skip
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
        counts = {
            "enrollments": conn.execute(select(func.count()).select_from(e)).scalar_one(),
            "drafts": conn.execute(select(func.count()).select_from(DRAFTS)).scalar_one(),
        }
    engine.dispose()
    assert counts["enrollments"] == n, (counts, n)
    counts["waiting_next_due_at_cleared"] = int(waiting_due is None)
    return counts


def find_due(uow_factory: Any, limit: int) -> tuple[float, int]:
    """The timed pass: seconds, and how many due enrollments it found."""
    from sequencer.services.inbox import resume_paused

    started = time.perf_counter()
    resume_paused(uow_factory, NOW)
    with uow_factory() as uow:
        found = uow.repo.due_enrollments(NOW, limit)
    return time.perf_counter() - started, len(found)


def dispatch(uow_factory: Any) -> float:
    from sequencer.services.sending import due_mailboxes

    started = time.perf_counter()
    due_mailboxes(uow_factory, NOW)
    return time.perf_counter() - started


@contextmanager
def _database(kind: str, ctx: Context, n: int, due: int) -> Iterator[tuple[Any, dict[str, int]]]:
    from sequencer.adapters.db.session import make_uow_factory

    with fresh_database(kind, ctx.workdir, ctx.pg_admin_url) as url:
        _note(f"{kind}: seeding {n:,} enrollments (untimed)")
        started = time.perf_counter()
        counts = seed(url, Path(ctx.workdir) / f"launch-{kind}-{n}", n, due)
        counts["seed_seconds"] = round(time.perf_counter() - started, 1)
        uow_factory = make_uow_factory(url)
        try:
            yield uow_factory, counts
        finally:
            uow_factory.dispose()


def run(ctx: Context) -> list[Result]:
    due = ctx.pick(100, 1_000, 1_000)
    sizes = {
        "quick": (1_000, 5_000),
        "default": (10_000, 100_000),
        "large": (10_000, 100_000, 1_000_000),
    }[ctx.size]
    results = []
    for kind in ctx.dbs:
        with ExitStack() as stack:
            dbs = {n: stack.enter_context(_database(kind, ctx, n, due)) for n in sizes}
            times: dict[int, list[float]] = {n: [] for n in sizes}
            dispatch_times: dict[int, list[float]] = {n: [] for n in sizes}
            for uow_factory, _ in dbs.values():
                find_due(uow_factory, due)  # warm the connection pool and the statement cache
                dispatch(uow_factory)
            for rep in range(max(ctx.reps, 3)):
                order = sizes if rep % 2 == 0 else tuple(reversed(sizes))
                for n in order:
                    uow_factory, _ = dbs[n]
                    seconds, found = find_due(uow_factory, due)
                    assert found == due, (n, found, due)
                    times[n].append(seconds)
                    dispatch_times[n].append(dispatch(uow_factory))
                _note(f"{kind}: round {rep + 1} done")
            medians = {n: statistics.median(v) for n, v in times.items()}
            small, large = sizes[0], sizes[-1]
            label = f"t({_label(large)}) <= 2 x t({_label(small)})"
            results.append(
                Result(
                    stage=STAGE,
                    db=kind,
                    items=due,
                    unit="due",
                    seconds=medians[large],
                    baseline_seconds=medians[small],
                    baseline=f"the same pass at N={_label(small)}",
                    target=label,
                    met=medians[large] <= 2 * medians[small],
                    peak_rss_mb=peak_rss_mb(),
                    extra={
                        "pass_ms": {_label(n): round(medians[n] * 1000, 2) for n in sizes},
                        "dispatch_ms": {
                            _label(n): round(statistics.median(v) * 1000, 2)
                            for n, v in dispatch_times.items()
                        },
                        "tables": {_label(n): c for n, (_, c) in dbs.items()},
                    },
                    notes="pass: "
                    + ", ".join(f"{_label(n)} {medians[n] * 1000:.1f} ms" for n in sizes)
                    + "; dispatch (due_mailboxes): "
                    + ", ".join(
                        f"{_label(n)} {statistics.median(v) * 1000:.1f} ms"
                        for n, v in dispatch_times.items()
                    ),
                )
            )
    return results
