"""Workers SIGKILLed at random points of a 1,000-message run, several times over.

The embedded runner (`refseq run`) and a real Celery worker (prefork, on a private Redis) are
killed when the SMTP server has received a random number of messages, restarted, and at the end
the sweeper judges what the dead senders left in SENDING and a last pass sends the rest. What
the server received is then counted per Message-ID and per (prospect, step):

* nothing twice;
* nothing lost: every step that should have gone is SENT (and was received) or NEEDS_ATTENTION;
* NEEDS_ATTENTION only for a kill that landed during DATA (at most one per process killed);
* every enrollment's progress agrees with its SENT drafts (nothing half-applied).

Seeds are fixed (a failure names its seed); ``REFSEQ_SOAK=1`` runs many more rounds and kills.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sequencer.services.sending import SendConfig, sweep
from tests.faults.procs import (
    REFSEQ,
    Procs,
    Publisher,
    RedisServer,
    audit,
    bulk_campaign,
    child_env,
    data_sink,  # noqa: F401  (fixture)
    draft_counts,
    drain,
    kill_in_data,
    open_window_now,
    procs,  # noqa: F401  (fixture)
    redis_server,  # noqa: F401  (fixture)
    start_worker,
)
from tests.reliability import Recorder, soak_rounds, soaking
from tests.smtp_sink import Sink

# The senders are gone: their claims are stale at once (staleness is on the DB clock).
STALE_NOW = timedelta(0)

pytestmark = pytest.mark.reliability

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
T_END = T0 + timedelta(hours=2)
PROSPECTS = 500  # two steps each: 1,000 messages


def _kill_points(rng: random.Random, kills: int, total: int) -> list[int]:
    """``kills`` distinct received-counts to kill at, spread over the run."""
    return sorted(rng.sample(range(10, total - 10), kills))


def _wait_received(sink: Sink, count: int, alive: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(sink.handler.received) < count and alive() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_embedded_runner_killed_at_random_points(
    db_url: str,
    tmp_path: Path,
    data_sink: Sink,  # noqa: F811
    uow_factory,
    procs: Procs,  # noqa: F811
    reliability: Recorder,
) -> None:
    rounds = soak_rounds(1, 10)
    kills_per_round = soak_rounds(3, 12)
    smtp_sink = data_sink
    kills = in_data = 0
    outcomes = []
    a = None
    for r in range(rounds):
        seed = 8_000 + r
        rng = random.Random(seed)
        folder = tmp_path / f"round{r}"
        cli, yaml = bulk_campaign(  # a fresh campaign and audience per round
            db_url,
            folder / "camp",
            smtp_sink.port,
            PROSPECTS,
            follow_up=True,
            name=f"kill-{r}",
            tag=f"r{r}bulk",
        )
        cli("launch", str(yaml), "--now", T0.isoformat())
        base = len(smtp_sink.handler.received)
        env = child_env(db_url)
        runner = [*REFSEQ, "run", "--from", T0.isoformat(), "--until", T_END.isoformat()]
        runner += ["--step", "30m"]
        points = _kill_points(rng, kills_per_round, 2 * PROSPECTS)
        held = {rng.randrange(len(points))} | {i for i in range(len(points)) if rng.random() < 0.2}
        for i, point in enumerate(points):
            proc = procs.start(runner, env, f"runner-r{r}")
            _wait_received(smtp_sink, base + point, lambda p=proc: p.poll() is None, 120)
            if i in held:  # the server holds the message: the sender dies inside DATA
                if kill_in_data(procs, proc, smtp_sink):
                    kills += 1
                    in_data += 1
                continue
            time.sleep(rng.uniform(0, 0.02))  # land anywhere: claim, before DATA, DATA, finish
            if proc.poll() is None:
                procs.kill(proc)
                kills += 1
        proc = procs.start(runner, env, f"runner-r{r}-last")
        assert proc.wait(180) == 0, procs.log_tail(proc)
        # The sweeper, once the dead senders' claims are stale; then a last pass.
        report = sweep(
            uow_factory, SendConfig(env={}, stale_after=STALE_NOW), T_END + timedelta(minutes=11)
        )
        cli("tick", "--now", (T_END + timedelta(minutes=15)).isoformat())
        # Claims are stale by the database's clock, not the replay's: what the sweep released
        # went out just now, so their follow-ups are due an hour later.
        cli("tick", "--now", (T_END + timedelta(hours=2)).isoformat())
        a = audit(uow_factory, smtp_sink.handler, steps=2)  # every round so far
        outcomes.append(f"seed {seed}: swept {report.released}+{report.attention}")
        assert a.duplicates == 0 and a.lost == 0 and a.wrong_sends == 0, (seed, a.problems)
        assert a.half_applied == 0, (seed, a.problems)
        assert a.attention <= kills, (seed, a)  # one process: at most one message in DATA
        assert a.attention_delivered >= in_data, (seed, a)  # held in DATA: delivered, not resent
        assert kills >= r + 1, "no kill landed mid-run"
    assert a is not None
    reliability.record(
        "workers",
        f"SIGKILL of the embedded runner (`refseq run`) at random points of a "
        f"{2 * PROSPECTS}-message run, restarted, then swept",
        trials=kills,
        duplicates=a.duplicates,
        lost=a.lost,
        wrong_sends=a.wrong_sends,
        outcome=f"{rounds} run(s), {kills} kills ({in_data} inside DATA): {a.outcome()}; "
        f"{a.attention} needs_attention, {a.attention_delivered} of them delivered once, none "
        f"resent; {'; '.join(outcomes[-3:])}",
    )
    assert a.duplicates == a.lost == a.wrong_sends == a.half_applied == 0


def test_celery_worker_killed_at_random_points(
    db_url: str,
    tmp_path: Path,
    data_sink: Sink,  # noqa: F811
    uow_factory,
    procs: Procs,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    reliability: Recorder,
) -> None:
    # PostgreSQL is what a Celery deployment runs on; SQLite gets a shorter run in CI.
    n = 1000 if db_url.startswith("postgresql") or soaking() else 150
    seed = 9_000
    rng = random.Random(seed)
    kills = soak_rounds(4, 40)
    cli, yaml = bulk_campaign(
        db_url, tmp_path / "camp", data_sink.port, n, window=open_window_now()
    )
    cli("launch", str(yaml))  # the tasks read the real clock
    # A short visibility timeout: the task of a killed worker comes back while others still run
    # (the same send task delivered twice, concurrently).
    env = child_env(db_url, REFSEQ_BROKER_URL=redis_server.url(), REFSEQ_VISIBILITY_TIMEOUT="10")
    pub = Publisher(redis_server.url())
    modes: Counter[str] = Counter()
    try:
        worker = start_worker(procs, env, "w0")
        # (a kill may leave a claimed batch in SENDING until the sweep: stop short of the end)
        for i, point in enumerate(_kill_points(rng, kills, n * 4 // 5)):
            next_tick, deadline = 0.0, time.monotonic() + 120
            while len(data_sink.handler.received) < point:
                if time.monotonic() >= next_tick:  # what beat does, faster
                    pub.send("refseq.draft_due")
                    pub.send("refseq.dispatch_sends")
                    next_tick = time.monotonic() + 0.3
                    counts = draft_counts(uow_factory)
                    if sum(counts.values()) == n and not counts.get("approved"):
                        break  # nothing left to send before the sweep: kill it idle
                assert time.monotonic() < deadline, procs.log_tail(worker)
                assert worker.poll() is None, procs.log_tail(worker)
                time.sleep(0.005)
            mode = (
                ("worker", "child", "data")[i % 3]
                if i < 3
                else rng.choice(("worker", "child", "data"))
            )
            if mode == "child":  # one pool process dies; the worker requeues its task
                children = Procs.children(worker.pid)
                assert children, procs.log_tail(worker)
                os.kill(rng.choice(children), signal.SIGKILL)
                modes[mode] += 1
                continue
            if mode == "data":

                def beat() -> None:
                    pub.send("refseq.draft_due")
                    pub.send("refseq.dispatch_sends")

                if not kill_in_data(procs, worker, data_sink, nudge=beat):
                    raise AssertionError(procs.log_tail(worker))
            else:
                time.sleep(rng.uniform(0, 0.02))
                procs.kill(worker)
            modes[mode] += 1
            worker = start_worker(procs, env, f"w{i + 1}")
        drain(pub, uow_factory, data_sink, n)
        # The sweeper, once the dead workers' claims are stale; then the workers finish.
        report = sweep(
            uow_factory,
            SendConfig(env={}, stale_after=STALE_NOW),
            datetime.now(UTC) + timedelta(minutes=11),
        )
        counts = drain(pub, uow_factory, data_sink, n)
        assert not counts.get("sending"), counts
    finally:
        pub.close()
    a = audit(uow_factory, data_sink.handler, steps=1)
    killed = sum(modes.values())
    reliability.record(
        "workers",
        f"SIGKILL of a Celery worker (prefork, 2 processes; the whole worker, one pool process, "
        f"or inside DATA) at random points of a {n}-message run, restarted, then swept",
        trials=killed,
        duplicates=a.duplicates,
        lost=a.lost,
        wrong_sends=a.wrong_sends,
        outcome=f"seed {seed}, kills {dict(modes)}: {a.outcome()}; swept {report.released} back "
        f"and {report.attention} to attention; {a.attention_delivered} of "
        f"{a.attention} needs_attention delivered once, none resent",
    )
    assert a.duplicates == 0 and a.lost == 0 and a.wrong_sends == 0, a.problems
    assert a.half_applied == 0, a.problems
    # Two pool processes: at most two messages in flight per kill.
    assert a.attention <= 2 * killed, a
    assert a.attention_delivered >= modes["data"], a
