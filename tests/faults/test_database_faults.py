"""Database faults: each must be retried or fail cleanly, and never be half-applied.

* PostgreSQL: the server terminates the connection (``pg_terminate_backend``) right after a
  random statement, i.e. in the middle of whatever transaction is open: the launch, a drafting
  batch, a claim, a ``before_data`` (which also carries the previous message's outcome) or an
  outcome. The caller retries as a worker would. The launch is all or nothing, no enrollment
  advances without its draft SENT, nothing is sent twice or lost.
* SQLite: several ``refseq`` processes (ticks and a launch) write the same file at once. They
  take turns (``BEGIN IMMEDIATE`` + ``busy_timeout``); a "database is locked" that still got
  through would be a one-line error and a rolled-back transaction, never a traceback.
"""

from __future__ import annotations

import random
import re
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from sequencer.adapters.db.session import SqlUnitOfWorkFactory, make_uow_factory
from sequencer.adapters.smtp import SmtpMailer
from sequencer.bootstrap import draft_config
from sequencer.config import Settings
from sequencer.core.states import DraftState
from sequencer.services.checking import check_campaign
from sequencer.services.launch import launch_campaign
from sequencer.services.runner import Deps, run_pass
from sequencer.services.sending import SendConfig, sweep
from tests.conftest import _admin_engine
from tests.faults.procs import (
    REFSEQ,
    ROOT,
    audit,
    bulk_campaign,
    child_env,
    draft_counts,
)
from tests.reliability import Recorder, soak_rounds
from tests.smtp_sink import Sink

# The senders are gone: their claims are stale at once (staleness is on the DB clock).
STALE_NOW = timedelta(0)

pytestmark = pytest.mark.reliability

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
SECRET = "test-secret-key-0123456789"


class Dropper:
    """Terminates the PostgreSQL backend of ``factory``'s engine right after a statement, every
    ``gap`` statements at random (the first time after one matching ``first``, if given)."""

    def __init__(
        self,
        factory: SqlUnitOfWorkFactory,
        admin_url: str,
        rng: random.Random,
        budget: int,
        gap: tuple[int, int] = (3, 60),
    ) -> None:
        self.admin = _admin_engine(admin_url)
        self.rng, self.gap, self.budget = rng, gap, budget
        self.count = 0
        self.next = rng.randint(*gap)
        self.first: re.Pattern[str] | None = None
        self.hit: Counter[str] = Counter()
        self.engine = factory.engine
        event.listen(self.engine, "after_cursor_execute", self._after)

    def close(self) -> None:
        event.remove(self.engine, "after_cursor_execute", self._after)
        self.admin.dispose()

    @property
    def kills(self) -> int:
        return sum(self.hit.values())

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.kills >= self.budget:
            return
        self.count += 1
        if self.first is not None:
            if not self.first.search(statement):
                return
            self.first = None
        elif self.count < self.next:
            return
        self.next = self.count + self.rng.randint(*self.gap)
        pid = cursor.connection.info.backend_pid
        with self.admin.connect() as admin:  # waits until the backend is gone
            admin.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        words = statement.split()
        table = next((w for w in words[1:6] if w.islower() and w.isidentifier()), "?")
        self.hit[f"{words[0]} {table}"] += 1


def _retry(what: Any, dropped: list[str], limit: int = 400) -> Any:
    """Call ``what()`` until it gets through, as a worker's next tick would."""
    for _ in range(limit):
        try:
            return what()
        except OperationalError as exc:
            dropped.append(str(exc.orig).splitlines()[0] if exc.orig else str(exc))
    raise AssertionError(f"never got through: {dropped[-3:]}")


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True
)
def test_postgresql_connection_dropped_mid_transaction_is_never_half_applied(
    db_url: str,
    pg_admin_url: str,
    tmp_path: Path,
    smtp_sink: Sink,
    uow_factory: SqlUnitOfWorkFactory,
    reliability: Recorder,
) -> None:
    n = 200
    rng = random.Random(13_000)
    _, yaml = bulk_campaign(db_url, tmp_path / "camp", smtp_sink.port, n)
    settings = Settings.from_env({"REFSEQ_DATABASE_URL": db_url, "REFSEQ_SECRET_KEY": SECRET})
    cfg = draft_config(settings)
    factory = make_uow_factory(db_url)  # the worker's own engine: its connections get dropped
    deps = Deps(factory, cfg, SendConfig(env={}), SmtpMailer)
    dropper = Dropper(factory, pg_admin_url, rng, budget=1)
    dropped: list[str] = []
    partial_launches = 0
    try:
        # The launch: one transaction of ~n inserts, dropped part-way, retried.
        check = check_campaign(yaml, cfg)
        dropper.first = re.compile(r"INSERT INTO enrollments")

        def launch() -> Any:
            nonlocal partial_launches
            try:
                return launch_campaign(factory, check, T0)
            except OperationalError:
                with uow_factory() as uow:  # all or nothing
                    campaign = uow.repo.get_campaign("q4-fintech-intros")
                    partial_launches += campaign is not None
                raise

        _retry(launch, dropped)
        # Drafting, then sending (the first drop inside a before_data transaction, which also
        # carries the previous message's outcome); each failed pass is followed by another, as
        # the next tick would be.
        for stages, budget, first in (
            (["draft"], soak_rounds(8, 100), None),
            (
                ["sweep", "send"],
                soak_rounds(20, 300),
                r"^UPDATE drafts SET (?!.*\bstate=).*\bdata_started_at=",
            ),
        ):
            dropper.budget = dropper.kills + budget
            dropper.first = re.compile(first) if first else None
            for _ in range(500):
                try:
                    run_pass(deps, T0, stages)
                except OperationalError as exc:
                    dropped.append(str(exc.orig).splitlines()[0] if exc.orig else str(exc))
                    continue
                counts = draft_counts(uow_factory)
                if sum(counts.values()) == n and (stages == ["draft"] or not counts["approved"]):
                    break
            else:
                with uow_factory() as uow:
                    left = [
                        (
                            v.draft.to_email,
                            v.draft.state.value,
                            v.draft.next_attempt_at,
                            v.draft.last_error,
                            v.draft.due_at,
                        )
                        for v in uow.repo.list_drafts([DraftState.APPROVED, DraftState.SENDING])
                    ]
                raise AssertionError(f"the passes never finished: {dropped[-3:]} {left[:5]}")
        kills = dropper.kills
        dropper.budget = 0  # the connections hold from here on
        # What a dead transaction left in SENDING: the sweeper, then a last pass.
        swept = sweep(
            uow_factory, SendConfig(env={}, stale_after=STALE_NOW), T0 + timedelta(minutes=11)
        )
        run_pass(deps, T0 + timedelta(minutes=15), ["draft", "send"])
    finally:
        dropper.close()
        deps.close()
        factory.dispose()
    a = audit(uow_factory, smtp_sink.handler)
    with uow_factory() as uow:
        (campaign,) = uow.repo.list_campaigns()
        enrolled = len(uow.repo.list_enrollments(campaign.campaign.id))
    hits = ", ".join(f"{k} {v}" for k, v in sorted(dropper.hit.items()))
    reliability.record(
        "database",
        "PostgreSQL connection terminated right after a random statement (launch, drafting, "
        "claim, before_data, outcome), the caller retrying",
        trials=kills,
        duplicates=a.duplicates,
        lost=a.lost,
        wrong_sends=a.wrong_sends,
        outcome=f"dropped after: {hits}; {len(dropped)} failed calls retried; "
        f"{partial_launches} partial launches; {a.half_applied} half-applied; {a.outcome()}; "
        f"swept {swept.released} back, {swept.attention} to attention",
    )
    assert dropper.hit["INSERT enrollments"] >= 1 and dropper.hit["UPDATE drafts"] >= 1, hits
    assert kills >= 10, hits
    assert partial_launches == 0 and enrolled == n
    assert a.duplicates == a.lost == a.wrong_sends == a.half_applied == 0, a.problems
    assert a.drafts == n
    # A dropped transaction never sends blindly: the only unknowns are messages whose
    # outcome was in the dropped transaction (delivered once, for a human to confirm).
    assert a.attention == a.attention_delivered <= kills, a


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_shared_by_several_processes_takes_turns(
    db_url: str,
    tmp_path: Path,
    smtp_sink: Sink,
    uow_factory: SqlUnitOfWorkFactory,
    reliability: Recorder,
) -> None:
    rounds = soak_rounds(1, 20)
    A, B = 300, 2000
    later = (T0 + timedelta(days=30)).isoformat()  # b's first steps are not due in this test
    env = child_env(db_url)
    locked = tracebacks = failed = processes = 0
    launched = 0
    for r in range(rounds):
        cli, yaml = bulk_campaign(
            db_url, tmp_path / f"a{r}", smtp_sink.port, A, name=f"a{r}", tag=f"a{r}x"
        )
        cli("launch", str(yaml), "--now", T0.isoformat())
        _, other = bulk_campaign(
            db_url, tmp_path / f"b{r}", smtp_sink.port, B, name=f"b{r}", tag=f"b{r}x"
        )
        tick = [*REFSEQ, "tick", "--now", T0.isoformat()]
        commands = [
            tick,
            tick,
            tick,
            [*REFSEQ, "launch", str(other), "--now", later],
            tick,
        ]
        running = [
            subprocess.Popen(
                c, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for c in commands
        ]
        try:
            results = [(p.args, *p.communicate(timeout=180), p.returncode) for p in running]
        finally:
            for p in running:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for args, _out, err, code in results:
            processes += 1
            locked += "database is locked" in err or "database stayed locked" in err
            tracebacks += "Traceback" in err
            failed += code != 0
            launched += "launch" in args and code == 0
        with uow_factory() as uow:
            b = uow.repo.get_campaign(f"b{r}")
            count = len(uow.repo.list_enrollments(b.id)) if b is not None else 0
        assert count in (0, B), f"a half-applied launch: {count} enrollments"
        cli("launch", str(other), "--now", later)  # a failed one is simply run again
        cli("tick", "--now", T0.isoformat())  # and what is left goes out
    swept = sweep(
        uow_factory, SendConfig(env={}, stale_after=STALE_NOW), T0 + timedelta(minutes=11)
    )
    cli("tick", "--now", (T0 + timedelta(minutes=15)).isoformat())
    a = audit(uow_factory, smtp_sink.handler, campaigns={f"a{r}" for r in range(rounds)})
    reliability.record(
        "database",
        f"SQLite written by 5 refseq processes at once (4 ticks sending {A}, 1 launch of {B})",
        trials=processes,
        duplicates=a.duplicates,
        lost=a.lost,
        wrong_sends=a.wrong_sends,
        outcome=f"{failed} process(es) failed ({locked} 'database is locked', {tracebacks} "
        f"tracebacks); {a.half_applied} half-applied; {a.outcome()}; swept {swept.released}",
    )
    assert tracebacks == 0 and failed == 0 and locked == 0
    assert a.duplicates == a.lost == a.wrong_sends == a.half_applied == 0, a.problems
    assert a.drafts == A * rounds and a.attention == 0
