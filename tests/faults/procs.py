"""Helpers for the worker, broker and database fault tests.

* :class:`RedisServer`: a private ``redis-server`` on a free port that a test may kill and restart
  (never the machine's shared Redis).
* :class:`Procs`: subprocesses started in their own process group, SIGKILLed as a group, always
  reaped at teardown (the ``procs`` fixture).
* :func:`bulk_campaign`: a campaign of ``n`` prospects that sends at once (auto approval, no gap,
  a window open at the moment the test runs, a cap above ``n``).
* :func:`audit`: what the SMTP sink received, counted per (prospect, step) and checked against
  the drafts in the database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sequencer.core.states import DraftState
from tests.cli_helpers import Cli, init_example
from tests.smtp_sink import Sink, SinkHandler, free_port

ROOT = Path(__file__).resolve().parents[2]
REFSEQ = [sys.executable, "-m", "sequencer.adapters.cli.main"]
CELERY = [sys.executable, "-m", "celery", "-A", "workers.app"]

# Exec the real command with PR_SET_PDEATHSIG=SIGKILL: if pytest itself dies (a CI timeout), its
# children die with it instead of running on. (Celery's pool processes do the same for their
# parent, so a whole worker goes.)
_ORPHAN_GUARD = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def guarded(args: Sequence[str]) -> list[str]:
    """``args`` run so that the process is killed when the test process dies."""
    if not sys.platform.startswith("linux"):
        return list(args)
    return [sys.executable, "-c", _ORPHAN_GUARD, str(os.getpid()), *args]


# ---------------------------------------------------------------------------------------------
# processes


class Procs:
    """Start subprocesses in their own session; kill whole groups; reap everything at the end."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, args: Sequence[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        path = self.logdir / f"{name}-{len(self.started)}.log"
        log = open(path, "wb")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                guarded(args),
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a kill takes its children too
            )
        finally:
            log.close()
        self.started.append(proc)
        self.logs[proc.pid] = path
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and every process of its group, and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)

    @staticmethod
    def children(pid: int) -> list[int]:
        """The direct children of ``pid`` (read from /proc)."""
        kids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                kids.append(int(entry.name))
        return kids

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                self.kill(proc)
            else:  # the leader exited: still sweep any child left in its group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

    def log_tail(self, proc: subprocess.Popen[bytes], lines: int = 30) -> str:
        text = self.logs[proc.pid].read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    p = Procs(logdir)
    try:
        yield p
    finally:
        p.close()


def child_env(db_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "REFSEQ_DATABASE_URL": db_url,
        "REFSEQ_SECRET_KEY": "test-secret-key-0123456789",
        "REFSEQ_BASE_URL": "https://refseq.test.example",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    if "REFSEQ_BROKER_URL" not in extra:
        env.pop("REFSEQ_BROKER_URL", None)
    return env


def wait_until(
    predicate: Any, timeout: float, what: str, poll: float = 0.02, detail: Any = None
) -> None:
    """Poll ``predicate`` until true; on timeout fail with ``detail()`` (a log tail) attached."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(poll)


# ---------------------------------------------------------------------------------------------
# an SMTP sink that says when a client is inside DATA


@dataclass
class DataSinkHandler(SinkHandler):
    """A :class:`SinkHandler` that counts the DATA commands it has *started* handling, so a test
    can kill the sender while the server holds the message (set ``delay`` to hold it longer)."""

    data_started: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_started += 1
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def data_sink() -> Iterator[Sink]:
    from aiosmtpd.controller import Controller

    handler = DataSinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Sink("127.0.0.1", port, handler)
    finally:
        controller.stop()


def kill_in_data(
    procs: Procs,
    proc: subprocess.Popen[bytes],
    sink: Sink,
    hold: float = 0.3,
    nudge: Callable[[], None] | None = None,
) -> bool:
    """Hold the next message in DATA and SIGKILL ``proc`` (its group) while the server has it:
    the sender can never learn the outcome. False if the process ended first. ``nudge`` (what
    beat does, e.g. publish a dispatch task) is called every 0.3 s while waiting: a worker that
    finished its tasks sends nothing until it is asked again."""
    handler = sink.handler
    assert isinstance(handler, DataSinkHandler)
    started = handler.data_started
    handler.delay = hold
    try:
        deadline, next_nudge = time.monotonic() + 60, 0.0
        while handler.data_started == started and proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("the sender never reached DATA")
            if nudge is not None and time.monotonic() >= next_nudge:
                nudge()
                next_nudge = time.monotonic() + 0.3
            time.sleep(0.002)
        if proc.poll() is not None:
            return False
        time.sleep(hold / 3)
        procs.kill(proc)
        return True
    finally:
        handler.delay = 0.0


# ---------------------------------------------------------------------------------------------
# a private Redis


@dataclass
class RedisServer:
    """``redis-server`` on a free loopback port, no persistence: killing it loses its data."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            guarded(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                    "--logfile",
                    str(self.workdir / "redis.log"),
                ]
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self.ping, 10, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.exceptions.ConnectionError:
            return False

    def kill(self) -> None:
        """SIGKILL: every key (queued and unacked tasks) is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def client(self, db: int = 0) -> Any:
        import redis

        return redis.Redis(port=self.port, db=db, socket_connect_timeout=2)


class Publisher:
    """Publishes refseq tasks by name to a broker, as beat would (no task code imported), on a
    connection of its own (no pools shared with other apps in this process)."""

    def __init__(self, broker_url: str) -> None:
        from celery import Celery
        from kombu import Connection

        self.app = Celery("refseq-test-publisher", broker=broker_url, set_as_current=False)
        self.app.conf.update(task_ignore_result=True)
        self.connection = Connection(broker_url, connect_timeout=1)
        self.producer = self.app.amqp.Producer(self.connection)

    def send(self, name: str, *args: Any, task_id: str | None = None) -> bool:
        """Publish; False (as beat would log and go on) when the broker cannot be reached."""
        from kombu.exceptions import OperationalError

        try:
            self.app.send_task(
                name, args=list(args), task_id=task_id, producer=self.producer, retry=True
            )
        except OperationalError:
            return False
        return True

    def close(self) -> None:
        self.connection.release()


def start_worker(
    procs: Procs, env: dict[str, str], name: str, concurrency: int = 2, timeout: float = 60
) -> subprocess.Popen[bytes]:
    """A real Celery worker (prefork) in its own process group, once it says it is ready."""
    args = [*CELERY, "worker", "--pool=prefork", f"--concurrency={concurrency}"]
    args += ["--without-mingle", "--without-gossip", "--without-heartbeat", "--loglevel=INFO"]
    args += [f"--hostname={name}@refseq-test"]
    proc = procs.start(args, env, name)
    wait_until(
        lambda: "ready." in procs.log_tail(proc, 400) or proc.poll() is not None,
        timeout,
        f"celery worker {name}",
        poll=0.05,
    )
    assert proc.poll() is None, procs.log_tail(proc)
    return proc


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


# ---------------------------------------------------------------------------------------------
# a campaign that sends at once


def open_window_now(margin: timedelta = timedelta(hours=3)) -> tuple[str, str]:
    """A UTC send window around the current time (spanning midnight when it has to), so tasks
    that read the real clock are inside it for ``margin`` either way."""
    now = datetime.now(UTC)
    start, end = now - margin, now + margin
    return f"{start:%H:%M}", f"{end:%H:%M}"


def bulk_campaign(
    db_url: str,
    folder: Path,
    smtp_port: int,
    n: int,
    *,
    follow_up: bool = False,
    window: tuple[str, str] = ("00:00", "23:59"),
    cap: int = 10_000,
    name: str = "q4-fintech-intros",
    tag: str = "bulk",
) -> tuple[Cli, Path]:
    """The example campaign (renamed ``name``) with its prospects replaced by ``n`` warm ones
    (``p<i>@<tag><i % 7>.example``), every step auto-approved, no gap between sends, every day
    open in UTC between ``window``. With ``follow_up`` each prospect gets a second step one hour
    after the first."""
    cli = Cli(db_url, folder.parent)
    yaml = init_example(cli, folder)
    prospects = yaml.parent / "prospects.csv"
    header = prospects.read_text(encoding="utf-8-sig").splitlines()[0]
    prospects.write_text(
        header
        + "\n"
        + "".join(f"p{i}@{tag}{i % 7}.example,P{i},X,CEO,Co{i},UTC,banking\n" for i in range(n)),
        encoding="utf-8",
    )
    referrals = yaml.parent / "referrals.csv"
    header = referrals.read_text(encoding="utf-8-sig").splitlines()[0]
    referrals.write_text(
        header
        + "\n"
        + "".join(
            f"james-hervin,p{i}@{tag}{i % 7}.example,5,your former colleague\n" for i in range(n)
        ),
        encoding="utf-8",
    )
    second = (
        "\n    - {template: warm_follow_up, after: 1 hours, thread: true, approval: auto}"
        if follow_up
        else ""
    )
    spec = yaml.read_text()
    head, _, tail = spec.partition("sequences:")
    _, _, tail = tail.partition("\ncompliance:")
    head = (
        head.replace("port: 2525", f"port: {smtp_port}")
        .replace("min_gap: 90s", "min_gap: 0s")
        .replace("daily_cap: 150", f"daily_cap: {cap}")
        .replace("timezone: prospect", "timezone: UTC")
        .replace("days: [mon, tue, wed, thu, fri]", "days: [mon, tue, wed, thu, fri, sat, sun]")
        .replace('start: "09:00", end: "17:00"', f'start: "{window[0]}", end: "{window[1]}"')
    )
    drop = ("holidays", "imap:")  # no IMAP: these tests are about sending
    head = "\n".join(ln for ln in head.splitlines() if not any(w in ln for w in drop)) + "\n"
    steps = "\n    - {template: warm_intro, approval: auto}" + second
    cold = "\n    - {template: cold_intro, approval: auto}"
    sequences = f"sequences:\n  warm:{steps}\n  cold:{cold}\n  unnamed:\n    - {{template: unnamed_intro, approval: auto}}\n"
    head = head.replace("campaign: q4-fintech-intros", f"campaign: {name}")
    yaml.write_text(head + sequences + "\ncompliance:" + tail)
    return cli, yaml


# ---------------------------------------------------------------------------------------------
# counting what the SMTP server received


@dataclass
class Audit:
    drafts: int
    states: Counter[str]
    received: int
    duplicates: int  # extra deliveries: same Message-ID or same (prospect, step) more than once
    lost: int  # a (prospect, step) that should have gone and is neither SENT nor NEEDS_ATTENTION,
    # or a SENT draft the server never received
    wrong_sends: int  # received but unknown to the database, or to the wrong address
    attention: int
    attention_delivered: int  # needs_attention drafts the server did get (the ambiguous ones)
    half_applied: int  # an enrollment whose steps_done/state disagree with its SENT drafts
    problems: list[str] = field(default_factory=list)

    def outcome(self) -> str:
        states = ", ".join(f"{n} {s}" for s, n in sorted(self.states.items()))
        return f"{self.received} received for {self.drafts} drafts ({states})"


def audit(
    uow_factory: Any, handler: SinkHandler, steps: int = 1, campaigns: set[str] | None = None
) -> Audit:
    """Count what the server received per Message-ID and per (prospect, step), and check every
    enrollment of every campaign (or of ``campaigns``): each of its first ``steps`` steps that should have gone (every
    earlier step SENT) has a draft that is SENT (and received) or NEEDS_ATTENTION."""
    from sequencer.core.states import EnrollmentState

    with uow_factory() as uow:
        views = uow.repo.list_drafts(list(DraftState))
        enrollments = [
            e
            for c in uow.repo.list_campaigns()
            if campaigns is None or c.campaign.name in campaigns
            for e in uow.repo.list_enrollments(c.campaign.id)
        ]
    if campaigns is not None:
        views = [v for v in views if v.campaign in campaigns]
    by_id = {v.draft.message_id: v for v in views}
    got: Counter[str] = Counter()
    per_step: Counter[tuple[str, int]] = Counter()
    wrong = 0
    problems: list[str] = []
    for received in list(handler.received):
        message = received.message
        mid = str(message["Message-ID"])
        got[mid] += 1
        view = by_id.get(mid)
        to = [a.casefold() for a in received.rcpt_tos]
        if view is None or to != [view.draft.to_email.casefold()]:
            wrong += 1
            problems.append(f"unexpected delivery {mid} to {to}")
            continue
        if view.draft.to_email.casefold() not in str(message["To"]).casefold():
            wrong += 1
            problems.append(f"{mid}: To header {message['To']!r} is not {view.draft.to_email}")
        per_step[(view.enrollment.prospect_email.casefold(), view.draft.step_index)] += 1
    # A repeated Message-ID is also a repeated (prospect, step): count each extra copy once.
    duplicates = max(
        sum(n - 1 for n in got.values() if n > 1), sum(n - 1 for n in per_step.values() if n > 1)
    )
    lost = attention = attention_delivered = half = 0
    for v in views:
        d = v.draft
        if d.state is DraftState.SENT and got[d.message_id] == 0:
            lost += 1
            problems.append(f"draft {d.id} is SENT but the server never got {d.message_id}")
        elif d.state is DraftState.NEEDS_ATTENTION:
            attention += 1
            attention_delivered += got[d.message_id] > 0
    drafts_of: dict[int, dict[int, DraftState]] = {}
    for v in views:
        drafts_of.setdefault(v.draft.enrollment_id, {})[v.draft.step_index] = v.draft.state
    for e in enrollments:
        mine = drafts_of.get(e.id, {})
        sent_run = 0
        for step in range(steps):
            state = mine.get(step)
            if state is DraftState.SENT:
                sent_run += 1
                continue
            if state is not DraftState.NEEDS_ATTENTION:
                lost += 1
                problems.append(f"{e.prospect_email} step {step}: {state or 'no draft'}")
            break
        done = e.state is EnrollmentState.COMPLETED
        if e.steps_done != sent_run or done != (sent_run == steps):
            half += 1
            problems.append(
                f"{e.prospect_email}: steps_done={e.steps_done} state={e.state.value} "
                f"but {sent_run} step(s) SENT"
            )
    return Audit(
        drafts=len(views),
        states=Counter(v.draft.state.value for v in views),
        received=sum(got.values()),
        duplicates=duplicates,
        lost=lost,
        wrong_sends=wrong,
        attention=attention,
        attention_delivered=attention_delivered,
        half_applied=half,
        problems=problems[:20],
    )


def draft_counts(uow_factory: Any, campaign: str | None = None) -> Counter[str]:
    with uow_factory() as uow:
        views = uow.repo.list_drafts(list(DraftState), campaign=campaign)
    return Counter(v.draft.state.value for v in views)


def drain(
    pub: Publisher,
    uow_factory: Any,
    sink: Sink,
    drafts: int,
    timeout: float = 120,
    campaign: str | None = None,
    publish: Any = None,
) -> Counter[str]:
    """Publish what beat would (``publish()``, default draft_due + dispatch_sends) until every
    draft exists, none is approved and nothing has moved for 1 s (a SENDING draft left by a
    killed worker stays: the sweeper judges it). Returns the draft states."""
    deadline = time.monotonic() + timeout
    last: tuple[int, Counter[str]] | None = None
    quiet_since = time.monotonic()
    while True:
        if publish is None:
            pub.send("refseq.draft_due")
            pub.send("refseq.dispatch_sends")
        else:
            publish()
        time.sleep(0.3)
        counts = draft_counts(uow_factory, campaign)
        now = (len(sink.handler.received), counts)
        if now != last:
            last, quiet_since = now, time.monotonic()
        settled = sum(counts.values()) == drafts and not counts.get("approved")
        if settled and time.monotonic() - quiet_since > 1.0:
            return counts
        assert time.monotonic() < deadline, f"the workers never finished: {counts}"


def outcome(uow_factory: Any, handler: SinkHandler, campaign: str) -> dict[tuple[str, int], Any]:
    """Per (prospect number, step): the draft's state and how often the server received it:
    what must be identical between a clean run and a faulty one."""
    with uow_factory() as uow:
        views = uow.repo.list_drafts(list(DraftState), campaign=campaign)
    got = Counter(str(r.message["Message-ID"]) for r in list(handler.received))
    out: dict[tuple[str, int], Any] = {}
    for v in views:
        number = v.draft.to_email.split("@")[0]  # p<i>: the same person in every run
        out[(number, v.draft.step_index)] = (v.draft.state.value, got[v.draft.message_id])
    return out
