"""Races, with real threads and processes on real databases (SQLite and PostgreSQL).

* A reply lands while its follow-up is being sent: the fault-injecting SMTP server *holds* the
  follow-up's transaction at an exact command (RCPT, or after the data) while the test stores
  and handles the reply, then lets it go; plus free-running rounds with both threads racing.
* An unsubscribe (``refseq suppress add`` or the web one-click POST) between the approval and
  the send, including while the message's SMTP transaction is already open.
* Two reps approving the same draft at the same instant.
* ``refseq launch`` of the same campaign from two processes at once.

The promises checked: never send twice, never lose a reply, never email someone who opted out.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from sequencer.adapters.db.session import SqlUnitOfWorkFactory
from sequencer.adapters.smtp import SmtpMailer
from sequencer.config import Settings
from sequencer.core.states import DraftState, EnrollmentState
from sequencer.services import approval
from sequencer.services.drafting import draft_due
from sequencer.services.inbox import InboxConfig, process
from sequencer.services.sending import SendConfig, SendReport, send_due
from tests.cli_helpers import Cli
from tests.faults.faulty_smtp import Fault, FaultyServer, Stage, faulty_server
from tests.faults.mailworld import (
    BASE_URL,
    DRAFT_CFG,
    MON,
    REP,
    SECRET,
    make_due,
    park_all,
    prospect,
    write_campaign,
)
from tests.reliability import Recorder, soak_rounds

THU = datetime(2026, 11, 26, 14, 0, tzinfo=MON.tzinfo)  # the warm follow-ups are due
CFG = SendConfig(env={})


@dataclass
class World:
    db_url: str
    db: str
    cli: Cli
    uow_factory: SqlUnitOfWorkFactory
    smtp: FaultyServer
    yaml: Path
    moment: datetime

    def tick(self) -> datetime:
        self.moment += timedelta(minutes=5)
        return self.moment

    def draft_of(self, i: int, step: int) -> Any:
        with self.uow_factory() as uow:
            (view,) = [
                v
                for v in uow.repo.list_drafts(list(DraftState))
                if v.draft.to_email == prospect(i) and v.draft.step_index == step
            ]
        return view

    def send(self, now: datetime) -> SendReport:
        with SmtpMailer(timeout=10, retry_attempts=1, sleep=lambda s: None) as mailer:
            return send_due(self.uow_factory, mailer, CFG, now, random.Random())

    def copies(self, message_id: str) -> int:
        return self.smtp.handler.delivered()[message_id]


def _world(
    db_url: str, tmp: Path, uow_factory: SqlUnitOfWorkFactory, smtp: FaultyServer, n: int, **kw: Any
) -> World:
    cli = Cli(db_url, tmp)
    cli.env["REFSEQ_SECRET_KEY"] = SECRET
    yaml = write_campaign(cli, tmp / "camp", smtp.port, n, **kw)
    cli("launch", str(yaml), "--now", MON.isoformat())
    db = db_url.partition(":")[0].partition("+")[0]
    return World(db_url, db, cli, uow_factory, smtp, yaml, MON)


@pytest.fixture
def smtp() -> Iterator[FaultyServer]:
    with faulty_server() as server:
        yield server


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def store_reply(world: World, i: int, intro_id: str, now: datetime, *, handle: bool) -> None:
    """The prospect's reply lands in the inbox (as the IMAP poll stores it), and is handled
    (classified, matched, the enrollment stopped) when ``handle``."""
    raw = (
        f"From: P{i} <{prospect(i)}>\r\nTo: {REP}\r\nSubject: Re: intro\r\n"
        f"Message-ID: <race-{i}-{now.timestamp():.0f}@bulk.example>\r\nIn-Reply-To: {intro_id}\r\n"
        f"Date: Thu, 26 Nov 2026 13:59:00 +0000\r\n\r\n"
        "Sounds good, let's talk next Tuesday.\r\n"
    ).encode()
    with world.uow_factory() as uow:
        uow.repo.add_inbound(
            f"mid:<race-{i}-{now.timestamp():.0f}@bulk.example>",
            "test",
            None,
            raw,
            now - timedelta(minutes=1),
            now,
            from_addr=prospect(i),
        )
        uow.commit()
    if handle:
        process(world.uow_factory, InboxConfig(env={}), now)


# -- a reply while its follow-up is being claimed and sent ------------------------------------

HELD: list[tuple[str, Stage, bool, bool]] = [
    # (name, where the follow-up's transaction is held, reply handled?, follow-up may go out?)
    ("reply handled while the follow-up waits at RCPT", "rcpt", True, False),
    ("reply stored (not yet handled) while the follow-up waits at RCPT", "rcpt", False, False),
    ("reply handled while the follow-up is connecting", "greeting", True, False),
    ("reply handled after the follow-up's data went out", "content", True, True),
]


@pytest.fixture
def followups(
    db_url: str, tmp_path: Path, uow_factory: SqlUnitOfWorkFactory, smtp: FaultyServer
) -> World:
    rounds = soak_rounds(2, 10)
    n = rounds * (len(HELD) + 1) + soak_rounds(6, 60)
    world = _world(db_url, tmp_path, uow_factory, smtp, n)
    draft_due(uow_factory, DRAFT_CFG, MON)
    assert world.send(MON).sent == n  # the intros
    drafted = draft_due(uow_factory, DRAFT_CFG, THU)
    assert drafted.auto_approved == n  # the follow-ups, approved (approval: auto)
    park_all(uow_factory, THU)
    world.moment = THU
    return world


@pytest.mark.reliability
def test_a_reply_while_its_follow_up_is_being_sent_stops_it_or_the_send_came_first(
    followups: World, reliability: Recorder
) -> None:
    world, h = followups, followups.smtp.handler
    rounds = soak_rounds(2, 10)
    nxt = iter(range(10_000))
    wrong, dupes, corrupt, trials = 0, 0, 0, 0
    problems: list[str] = []
    for name, stage, handle, may_go in [x for x in HELD for _ in range(rounds)]:
        i = next(nxt)
        intro, follow = world.draft_of(i, 0).draft, world.draft_of(i, 1).draft
        now = world.tick()
        make_due(world.uow_factory, follow.id, now)
        hold = threading.Event()
        h.clear()
        h.inject(stage, Fault(hold=hold), 1)
        seen = h.seen(stage)
        thread, errors = in_thread(lambda now=now: world.send(now))
        try:
            h.wait_for(stage, seen + 1)  # the follow-up is claimed (SENDING), its SMTP open
            store_reply(world, i, intro.message_id, now, handle=handle)
        finally:
            hold.set()
            thread.join(30)
        # Later: the reply is handled (if it was not), the sender runs again.
        process(world.uow_factory, InboxConfig(env={}), now + timedelta(minutes=1))
        world.send(now + timedelta(hours=2))
        after = world.draft_of(i, 1)
        copies = world.copies(follow.message_id)
        trials += 1
        dupes += max(0, copies - 1)
        if copies and not may_go:
            wrong += 1
            problems.append(f"{name}: the follow-up went out after the reply landed")
        if after.enrollment.state is not EnrollmentState.REPLIED:
            corrupt += 1
            problems.append(f"{name}: enrollment {after.enrollment.state.value}, not replied")
        expected = DraftState.SENT if may_go else DraftState.CANCELLED
        if after.draft.state is not expected:
            problems.append(f"{name}: follow-up {after.draft.state.value}, not {expected.value}")
        if errors:
            problems.append(f"{name}: sender raised {errors!r}")

    # Free-running: the sender and the reply handler start together, at random offsets.
    free = soak_rounds(6, 60)
    outcomes: Counter[str] = Counter()
    for _ in range(free):
        i = next(nxt)
        intro, follow = world.draft_of(i, 0).draft, world.draft_of(i, 1).draft
        now = world.tick()
        make_due(world.uow_factory, follow.id, now)
        h.clear()
        h.inject("rcpt", Fault(delay=random.uniform(0, 0.03)), 1)
        barrier = threading.Barrier(2)

        def reply(
            i: int = i,
            intro_id: str = intro.message_id,
            now: datetime = now,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait(5)
            time.sleep(random.uniform(0, 0.03))
            store_reply(world, i, intro_id, now, handle=True)

        def sender(now: datetime = now, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(5)
            world.send(now)

        threads = [in_thread(reply), in_thread(sender)]
        for thread, _ in threads:
            thread.join(30)
        process(world.uow_factory, InboxConfig(env={}), now + timedelta(minutes=1))
        world.send(now + timedelta(hours=2))
        after = world.draft_of(i, 1)
        copies = world.copies(follow.message_id)
        outcomes[after.draft.state.value] += 1
        trials += 1
        dupes += max(0, copies - 1)
        if after.enrollment.state is not EnrollmentState.REPLIED:
            corrupt += 1
            problems.append(f"free-running: enrollment {after.enrollment.state.value}")
        if (copies == 1) != (after.draft.state is DraftState.SENT):
            problems.append(f"free-running: {copies} copies, draft {after.draft.state.value}")
        if after.draft.state not in (DraftState.SENT, DraftState.CANCELLED):
            problems.append(f"free-running: follow-up left {after.draft.state.value}")
        for _, errors in threads:
            problems += [f"free-running: {e!r}" for e in errors]

    reliability.record(
        "races",
        f"a reply lands while its follow-up is being sent (held at greeting/RCPT/after data, "
        f"and {free} free-running rounds) [{world.db}]",
        trials=trials,
        duplicates=dupes,
        wrong_sends=wrong,
        lost=corrupt,
        outcome="stopped before DATA whenever the reply was stored or handled first; "
        f"free-running: {dict(outcomes)}; the enrollment always ends replied",
    )
    assert problems == [], "\n".join(problems)
    assert (dupes, wrong, corrupt) == (0, 0, 0)


# -- an unsubscribe between approval and send -------------------------------------------------


@pytest.fixture
def intros(
    db_url: str, tmp_path: Path, uow_factory: SqlUnitOfWorkFactory, smtp: FaultyServer
) -> World:
    world = _world(db_url, tmp_path, uow_factory, smtp, 4 * soak_rounds(2, 10))
    draft_due(uow_factory, DRAFT_CFG, MON)
    park_all(uow_factory, MON)
    return world


def _one_click(world: World, draft: Any) -> None:
    token = draft.headers["X-Refseq-Unsubscribe-Url"].rsplit("/", 1)[1]
    from sequencer.adapters.web.app import create_app

    settings = Settings(world.db_url, None, SECRET, BASE_URL)
    with TestClient(create_app(settings, world.uow_factory)) as client:
        r = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "is unsubscribed" in r.text


UNSUBSCRIBES: list[tuple[str, Stage | None, str]] = [
    # (name, where the send is held when the opt-out lands (None: before the send), how)
    ("`refseq suppress add` after approval, before the send", None, "cli"),
    ("web one-click after approval, before the send", None, "web"),
    ("web one-click while the message's SMTP session is at RCPT", "rcpt", "web"),
    ("`refseq suppress add @domain` while the SMTP session is at MAIL", "mail", "cli"),
]


@pytest.mark.reliability
def test_an_unsubscribe_between_approval_and_send_is_never_sent(
    intros: World, reliability: Recorder
) -> None:
    world, h = intros, intros.smtp.handler
    rounds = soak_rounds(2, 10)
    nxt = iter(range(10_000))
    wrong, problems = 0, []
    for name, stage, how in [u for u in UNSUBSCRIBES for _ in range(rounds)]:
        i = next(nxt)
        draft = world.draft_of(i, 0).draft
        assert draft.state is DraftState.APPROVED
        now = world.tick()
        make_due(world.uow_factory, draft.id, now)
        value = prospect(i) if "@domain" not in name else "@" + prospect(i).split("@")[1]

        def opt_out(value: str = value, draft: Any = draft, how: str = how) -> None:
            if how == "cli":
                world.cli("suppress", "add", value, "--reason", "asked by phone")
            else:
                _one_click(world, draft)

        h.clear()
        errors: list[BaseException] = []
        if stage is None:
            opt_out()
            report = world.send(now)
        else:
            hold = threading.Event()
            h.inject(stage, Fault(hold=hold), 1)
            seen = h.seen(stage)
            result: list[SendReport] = []
            thread, errors = in_thread(lambda now=now, out=result: out.append(world.send(now)))
            try:
                h.wait_for(stage, seen + 1)
                opt_out()
            finally:
                hold.set()
                thread.join(30)
            report = result[0] if result else SendReport()
        world.send(now + timedelta(hours=2))
        after = world.draft_of(i, 0).draft
        copies = world.copies(draft.message_id)
        wrong += copies
        if copies:
            problems.append(f"{name}: sent to an address that opted out")
        if after.state is not DraftState.CANCELLED or "suppressed" not in (after.reason or ""):
            problems.append(f"{name}: draft {after.state.value} ({after.reason})")
        if report.sent:
            problems.append(f"{name}: the sender reported it sent")
        problems += [f"{name}: {e!r}" for e in errors]
    reliability.record(
        "races",
        f"opt-out (CLI suppress, web one-click) after approval: before the claim, and while "
        f"the SMTP session is open at MAIL/RCPT [{world.db}]",
        trials=len(UNSUBSCRIBES) * rounds,
        wrong_sends=wrong,
        outcome="never sent: cancelled at the claim, or at the last check right before DATA",
    )
    assert problems == [], "\n".join(problems)
    assert wrong == 0


# -- two reps approve the same draft ----------------------------------------------------------


@pytest.mark.reliability
def test_two_reps_approving_the_same_draft_approve_it_once_and_send_it_once(
    db_url: str,
    tmp_path: Path,
    uow_factory: SqlUnitOfWorkFactory,
    smtp: FaultyServer,
    reliability: Recorder,
) -> None:
    rounds = soak_rounds(6, 60)
    world = _world(db_url, tmp_path, uow_factory, smtp, rounds, approval="required")
    draft_due(uow_factory, DRAFT_CFG, MON)
    pending = [v.draft for v in approval.queue(uow_factory)]
    assert len(pending) == rounds
    wins: Counter[int] = Counter()
    stale: list[str] = []
    problems: list[str] = []
    for n, d in enumerate(pending):
        guarded = n % 2 == 0  # the web form sends the revision it showed; `refseq approve` not
        barrier = threading.Barrier(2)
        results: list[approval.Decision] = []

        def approve(
            actor: str,
            d: Any = d,
            guarded: bool = guarded,
            barrier: threading.Barrier = barrier,
            results: list[approval.Decision] = results,
        ) -> None:
            expected = {d.id: d.revision} if guarded else None
            barrier.wait(5)
            results.extend(approval.approve(uow_factory, [d.id], actor, MON, REP, expected))

        threads = [in_thread(lambda a=a: approve(a)) for a in ("dana@web", "dana@cli")]
        for thread, errors in threads:
            thread.join(30)
            problems += [repr(e) for e in errors]
        ok = [r for r in results if r.ok and r.message == "approved"]
        other = [r for r in results if not (r.ok and r.message == "approved")]
        wins[d.id] = len(ok)
        if len(ok) != 1 or len(other) != 1:
            problems.append(f"draft {d.id}: {results}")
            continue
        # The loser is told, and changes nothing: "already approved" when the winner committed
        # before it read the draft (a no-op, as for a double click), or a stale-revision error
        # when both read it before either wrote.
        loser = other[0]
        if not (
            loser.message == "already approved" or (not loser.ok and "changed" in loser.message)
        ):
            problems.append(f"draft {d.id}: the second approval got {loser}")
        stale.append(re.sub(r"draft \d+ ", "", loser.message.split(" (")[0].split(";")[0]))
    report = world.send(MON)
    with uow_factory() as uow:
        events = {d.id: [e.action for e in uow.repo.draft_events(d.id)] for d in pending}
    approvals = {i: a.count("approve") for i, a in events.items()}
    sends = Counter(a.message_id for a in smtp.handler.arrivals if a.delivered)
    dupes = sum(n - 1 for n in sends.values() if n > 1)
    reliability.record(
        "races",
        f"two reps approve the same draft at once (with and without the revision guard) "
        f"[{world.db}]",
        trials=rounds,
        duplicates=dupes + sum(n - 1 for n in approvals.values() if n > 1),
        lost=rounds - report.sent,
        outcome=f"one approval wins each time; the other: {dict(Counter(stale))}; sent once each",
    )
    assert problems == [], "\n".join(problems)
    assert set(wins.values()) == {1} and set(approvals.values()) == {1}
    assert report.sent == rounds and len(sends) == rounds and dupes == 0


# -- `refseq launch` from two processes at once -----------------------------------------------

GO = """
import os, sys, time
from sequencer.adapters.cli.main import main
go = sys.argv[1]
sys.argv = ["refseq", *sys.argv[2:]]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
main()
"""


@contextlib.contextmanager
def writes_gated(db_url: str) -> Iterator[Callable[[int], bool]]:
    """Hold the database's write lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``LOCK TABLE
    campaigns IN EXCLUSIVE MODE``, reads still pass) until the block ends, so two launches both
    plan on the same empty state and queue up at their first write. Yields ``wait(n)``: True
    once ``n`` sessions wait on the lock (PostgreSQL; on SQLite it just gives them time)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        gate = sqlite3.connect(str(url.database), isolation_level=None)
        gate.execute("BEGIN IMMEDIATE")
        try:
            yield lambda n: bool(time.sleep(2.0)) or True  # < busy_timeout (5 s)
        finally:
            gate.execute("ROLLBACK")
            gate.close()
        return
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as gate, psycopg.connect(conninfo, autocommit=True) as spy:
        gate.execute("LOCK TABLE campaigns IN EXCLUSIVE MODE")

        def wait(n: int) -> bool:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = spy.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchone()
                if row is not None and row[0] >= n:
                    return True
                time.sleep(0.02)
            return False

        try:
            yield wait
        finally:
            gate.rollback()


@pytest.mark.reliability
def test_launching_the_same_campaign_from_two_processes_enrolls_everyone_once(
    db_url: str,
    tmp_path: Path,
    uow_factory: SqlUnitOfWorkFactory,
    smtp: FaultyServer,
    reliability: Recorder,
) -> None:
    rounds = soak_rounds(1, 10)  # each round starts two Python processes (~2 s of imports)
    n = 300
    cli = Cli(db_url, tmp_path)
    env = {**os.environ, "REFSEQ_DATABASE_URL": db_url, "REFSEQ_SECRET_KEY": SECRET}
    env["REFSEQ_BASE_URL"] = "https://refseq.test.example"
    env["PYTHONPATH"] = os.getcwd()
    codes: Counter[str] = Counter()
    problems: list[str] = []
    dupes = 0
    for r in range(rounds):
        folder = tmp_path / f"round{r}"
        yaml = write_campaign(cli, folder, smtp.port, n)
        text = yaml.read_text().replace("campaign: q4-fintech-intros", f"campaign: race-{r}")
        for csv in ("prospects.csv", "referrals.csv"):  # other people each round
            path = folder / csv
            path.write_text(path.read_text().replace("@bulk", f"@r{r}bulk"))
        yaml.write_text(text)
        go = tmp_path / f"go{r}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", GO, str(go), "launch", str(yaml), "--now", MON.isoformat()],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        gated = r % 2 == 0  # odd rounds (soak only) race freely
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            with writes_gated(db_url) if gated else contextlib.nullcontext() as wait:
                go.touch()
                if wait is not None and not wait(2):
                    problems.append(f"round {r}: the two launches never queued at the gate")
            outs = [p.communicate(timeout=60) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        with uow_factory() as uow:
            named = [s for s in uow.repo.list_campaigns() if s.campaign.name == f"race-{r}"]
            enrolled = (
                Counter(e.prospect_key for e in uow.repo.list_enrollments(named[0].campaign.id))
                if named
                else Counter()
            )
        dupes += sum(c - 1 for c in enrolled.values() if c > 1) + max(0, len(named) - 1)
        results = sorted(p.returncode for p in procs)
        for p, (out, err) in zip(procs, outs, strict=True):
            verdict = (
                "launched" if "launched" in out else "unchanged" if "unchanged" in out else "error"
            )
            codes[f"{verdict} (exit {p.returncode})"] += 1
            if "Traceback" in err:
                problems.append(f"round {r}: a traceback: {err[-600:]}")
            if p.returncode not in (0, 1) or (
                p.returncode == 1 and "another `refseq launch` stored it" not in err
            ):
                problems.append(f"round {r}: exit {p.returncode} with {err[-300:]!r}")
        if len(named) != 1 or len(enrolled) != n or 0 not in results:
            problems.append(
                f"round {r}: {len(named)} campaigns, {len(enrolled)} enrolled, {results}"
            )
    reliability.record(
        "races",
        f"`refseq launch` of the same campaign from two processes at once [{db_url.partition(':')[0].partition('+')[0]}]",
        trials=rounds,
        duplicates=dupes,
        outcome=f"one campaign, each prospect once; the two processes: {dict(codes)}",
    )
    assert problems == [], "\n".join(problems)
    assert dupes == 0
