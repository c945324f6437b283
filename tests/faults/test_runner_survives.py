"""`refseq run` (a real subprocess) keeps going through what a long-running worker meets.

* PostgreSQL terminates the runner's connections (``pg_terminate_backend``) again and again
  while it sends: it logs, backs off, reconnects and keeps sending; nothing twice, nothing lost.
* Another process sweeps the drafts it has claimed (``tick --now <future>``, or a runner whose
  clock is ahead): the runner logs the lost claim and goes on (see test_lost_claims.py for the
  in-process version on both databases).
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from sequencer.services.sending import SendConfig, sweep
from tests.conftest import _admin_engine
from tests.faults.procs import (
    REFSEQ,
    Procs,
    audit,
    bulk_campaign,
    child_env,
    draft_counts,
    open_window_now,
    procs,  # noqa: F401  (fixture)
    wait_until,
)
from tests.smtp_sink import Sink, free_port

PROSPECTS = 120


def _kill_mid_statement(db_url: str) -> int:
    """Lock the drafts table, wait until the runner's next statement blocks on it, terminate
    that backend (a statement in progress: it fails, whatever the pool does), then unlock."""
    locker = create_engine(db_url, poolclass=NullPool)
    try:
        with locker.connect() as conn, conn.begin():
            conn.execute(text("LOCK TABLE drafts IN ACCESS EXCLUSIVE MODE"))
            waiting = text(
                "SELECT pid FROM pg_stat_activity WHERE application_name = "
                "'refseq-runner-under-test' AND wait_event_type = 'Lock'"
            )
            admin = _admin_engine(db_url)
            try:
                with admin.connect() as watch:
                    wait_until(lambda: bool(watch.execute(waiting).all()), 30, "a blocked pass")
                    pids = [row[0] for row in watch.execute(waiting).all()]
                    for pid in pids:
                        watch.execute(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
            finally:
                admin.dispose()
        return len(pids)
    finally:
        locker.dispose()


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True
)
def test_run_keeps_sending_when_postgresql_drops_its_connections(
    db_url: str,
    tmp_path: Path,
    smtp_sink: Sink,
    uow_factory,
    procs: Procs,  # noqa: F811
) -> None:
    cli, yaml = bulk_campaign(
        db_url, tmp_path / "camp", smtp_sink.port, PROSPECTS, window=open_window_now()
    )
    cli("launch", str(yaml), "--now", datetime.now(UTC).isoformat())
    smtp_sink.handler.delay = 0.02  # a sane pace, so the drops land while it sends
    tagged = f"{db_url}{'&' if '?' in db_url else '?'}application_name=refseq-runner-under-test"
    runner = procs.start(
        [*REFSEQ, "run", "--interval", "0.3", "--max-backoff", "0.5"], child_env(tagged), "runner"
    )
    admin = _admin_engine(db_url)
    terminated = 0
    try:
        wait_until(lambda: len(smtp_sink.handler.received) >= 5, 60, "the first sends")
        deadline = time.monotonic() + 90
        last = 0
        while len(smtp_sink.handler.received) < PROSPECTS - 10 and time.monotonic() < deadline:
            assert runner.poll() is None, procs.log_tail(runner)
            if len(smtp_sink.handler.received) < last + 4:
                time.sleep(0.02)
                continue  # drop again once it is sending again
            last = len(smtp_sink.handler.received)
            with admin.connect() as conn:
                states = conn.execute(
                    text(
                        "SELECT state, pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                        "WHERE application_name = 'refseq-runner-under-test'"
                    )
                ).all()
                terminated += len(states)
        # The drops above mostly hit idle pooled connections (pre-ping replaces those silently):
        # also kill the runner in the middle of a statement, for certain, once.
        killed_mid_statement = _kill_mid_statement(db_url)
        # Every draft sent, or left in SENDING by a drop during its outcome's commit.
        wait_until(
            lambda: not draft_counts(uow_factory).get("approved"),
            30,
            "every draft sent",
            detail=lambda: procs.log_tail(runner),
        )
        time.sleep(1.0)  # the last pass ends
        assert runner.poll() is None, procs.log_tail(runner)
    finally:
        admin.dispose()
        procs.kill(runner)
    # What a drop during an outcome's commit left in SENDING: the sweeper (the runner is gone).
    sweep(uow_factory, SendConfig(env={}, stale_after=timedelta(0)), datetime.now(UTC))
    log = procs.logs[runner.pid].read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert terminated >= 10 and killed_mid_statement >= 1
    assert "database connection lost" in log, log[-3000:]  # it said so, and went on
    a = audit(uow_factory, smtp_sink.handler)
    assert a.duplicates == 0 and a.lost == 0 and a.wrong_sends == 0, a.problems
    assert a.half_applied == 0, a.problems
    # A drop between the server's 250 and the recorded outcome parks the draft: say how often.
    assert a.states["sent"] + a.states.get("needs_attention", 0) == PROSPECTS, a.outcome()
    assert a.states.get("needs_attention", 0) == a.attention_delivered  # each one did arrive


def test_runners_survive_a_sweep_from_a_clock_far_ahead(
    db_url: str,
    tmp_path: Path,
    smtp_sink: Sink,
    uow_factory,
    procs: Procs,  # noqa: F811
) -> None:
    """Two live runners send while `refseq tick --now <an hour ahead> --only sweep` runs again
    and again (a third machine whose clock is wrong). Staleness is judged on the database's
    clock, so nothing is taken from the live runners; neither dies; everything goes once."""
    cli, yaml = bulk_campaign(
        db_url, tmp_path / "camp", smtp_sink.port, PROSPECTS, window=open_window_now()
    )
    cli("launch", str(yaml), "--now", datetime.now(UTC).isoformat())
    smtp_sink.handler.delay = 0.01
    env = child_env(db_url)
    runners = [
        procs.start([*REFSEQ, "run", "--interval", "0.3"], env, f"runner{i}") for i in range(2)
    ]
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    sweeps = 0
    wait_until(lambda: len(smtp_sink.handler.received) >= 3, 60, "the first sends")
    deadline = time.monotonic() + 90
    while len(smtp_sink.handler.received) < PROSPECTS and time.monotonic() < deadline:
        out = cli.json("tick", "--now", ahead, "--only", "sweep")
        assert out["sweep"] == {"released": 0, "needs_attention": 0}, out
        sweeps += 1
    wait_until(
        lambda: (
            not draft_counts(uow_factory).get("approved")
            and not draft_counts(uow_factory).get("sending")
        ),
        30,
        "every draft settled",
    )
    for r in runners:
        assert r.poll() is None, procs.log_tail(r)
        assert "Traceback" not in procs.logs[r.pid].read_text(errors="replace")
    assert sweeps >= 2
    a = audit(uow_factory, smtp_sink.handler)
    assert a.duplicates == 0 and a.lost == 0 and a.wrong_sends == 0, a.problems
    assert a.states == {"sent": PROSPECTS}, a.outcome()


def test_run_started_before_its_database_waits_for_it(
    tmp_path: Path,
    procs: Procs,  # noqa: F811
) -> None:
    """A runner started while PostgreSQL is not up yet (a container start order, a failover):
    it logs and retries instead of dying, and SIGTERM still stops it cleanly."""
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/refseq"
    runner = procs.start([*REFSEQ, "run", "--max-backoff", "0.3"], child_env(nowhere), "early")
    log = procs.logs[runner.pid]
    wait_until(
        lambda: log.read_text(errors="replace").count("cannot start yet") >= 3,
        30,
        "three logged retries",
        detail=lambda: procs.log_tail(runner),
    )
    assert runner.poll() is None, procs.log_tail(runner)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(15) == 0, procs.log_tail(runner)
    assert "Traceback" not in log.read_text(errors="replace")
