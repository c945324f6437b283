"""Broker faults: Redis restarted mid-run, queued messages lost, the same task delivered twice.

The database is the source of truth; a task only says "look now". Each fault hits a real Celery
worker (prefork) on a private ``redis-server`` while it sends a campaign, and the outcome, per
prospect and step the draft's state and how often the SMTP server received it, must be
identical to a clean run's: every step sent exactly once, nothing left behind.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sequencer.core.states import DraftState
from tests.faults.procs import (
    Procs,
    Publisher,
    RedisServer,
    audit,
    bulk_campaign,
    child_env,
    drain,
    open_window_now,
    outcome,
    procs,  # noqa: F401  (fixture)
    redis_server,  # noqa: F401  (fixture)
    start_worker,
    wait_until,
)
from tests.reliability import Recorder, soak_rounds
from tests.smtp_sink import Sink

pytestmark = pytest.mark.reliability
PG_ONLY = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True
)

N = 100
_CLEAN: dict[str, dict[tuple[str, int], Any]] = {}  # per backend, the outcome of a clean run


class Run:
    """A campaign of ``N`` prospects sent by a real Celery worker on the private Redis."""

    def __init__(
        self,
        name: str,
        db_url: str,
        tmp_path: Path,
        sink: Sink,
        spawner: Procs,
        redis: RedisServer,
        uow_factory: Any,
        concurrency: int = 2,
        **env: str,
    ) -> None:
        self.name, self.sink, self.procs, self.uow_factory = name, sink, spawner, uow_factory
        cli, yaml = bulk_campaign(
            db_url, tmp_path / name, sink.port, N, window=open_window_now(), name=name, tag=name
        )
        cli("launch", str(yaml))  # the tasks read the real clock
        self.env = child_env(db_url, REFSEQ_BROKER_URL=redis.url(), **env)
        self.pub = Publisher(redis.url())
        self.concurrency = concurrency
        self.worker = start_worker(spawner, self.env, f"{name}-w", concurrency)
        self.workers = [self.worker]
        self.deaths: list[str] = []  # why each worker we had to restart stopped

    def supervise(self) -> None:
        """What the deployment's supervisor does (docker-compose ``restart: unless-stopped``,
        systemd ``Restart=always``): a worker that exited, or that Celery gave up on
        ("Unrecoverable error"), is replaced. Each death is reported, never hidden."""
        text = self.procs.logs[self.worker.pid].read_text(errors="replace")
        fatal = re.search(r"Unrecoverable error: (.{0,120})", text)
        if self.worker.poll() is None and fatal is None:
            return
        why = fatal.group(1) if fatal else f"exit code {self.worker.returncode}"
        self.deaths.append(why)
        assert len(self.deaths) <= 5, f"the worker keeps dying: {self.deaths}\n{text[-3000:]}"
        self.procs.kill(self.worker)
        self.worker = start_worker(self.procs, self.env, f"{self.name}-w", self.concurrency)
        self.workers.append(self.worker)

    def deaths_note(self) -> str:
        if not self.deaths:
            return ""
        return (
            f"; the worker died {len(self.deaths)} time(s) ({'; '.join(self.deaths)}) and was "
            "restarted as its supervisor would"
        )

    def tick(self) -> None:
        """What beat does every minute, faster."""
        self.pub.send("refseq.draft_due")
        self.pub.send("refseq.dispatch_sends")

    def until_received(
        self, count: int, during: Callable[[], None] | None = None, every: float = 0.3
    ) -> None:
        deadline = time.monotonic() + 90
        while len(self.sink.handler.received) < count:
            self.supervise()
            (during or self.tick)()
            assert time.monotonic() < deadline, self.stuck()
            time.sleep(every)

    def stuck(self) -> str:
        """What is left unsent and why (for a failure message)."""
        with self.uow_factory() as uow:
            views = uow.repo.list_drafts(
                [s for s in DraftState if s is not DraftState.SENT], campaign=self.name
            )
            lines = [
                f"{v.draft.to_email} {v.draft.state.value} attempts={v.draft.attempts} "
                f"claimed={v.draft.claimed_at} data={v.draft.data_started_at} "
                f"next={v.draft.next_attempt_at} err={v.draft.last_error} "
                f"events={[(e.action, e.after) for e in uow.repo.draft_events(v.draft.id)]}"
                for v in views
            ]
        return "\n".join(lines[:10]) + "\n" + self.procs.log_tail(self.worker, 10)

    def finish(self, publish: Callable[[], None] | None = None) -> dict[tuple[str, int], Any]:
        def supervised() -> None:
            self.supervise()
            (publish or self.tick)()

        try:
            counts = drain(
                self.pub, self.uow_factory, self.sink, N, campaign=self.name, publish=supervised
            )
            assert set(counts) == {"sent"}, counts
        finally:
            self.pub.close()
            for worker in self.workers:
                self.procs.kill(worker)
        return outcome(self.uow_factory, self.sink.handler, self.name)

    def log(self) -> str:
        """Every worker's log, in order (one, unless a worker had to be restarted)."""
        return "".join(self.procs.logs[w.pid].read_text(errors="replace") for w in self.workers)


def clean_outcome(
    db_url: str, tmp_path: Path, sink: Sink, uow_factory: Any
) -> dict[tuple[str, int], Any]:
    """The outcome of the same campaign sent with no fault, by one pass of the same services
    (`refseq tick`); once per backend per session."""
    backend = db_url.split(":")[0].split("+")[0]
    if backend not in _CLEAN:
        cli, yaml = bulk_campaign(
            db_url, tmp_path / "clean", sink.port, N, window=open_window_now(), name="clean"
        )
        cli("launch", str(yaml))
        cli("tick")
        _CLEAN[backend] = outcome(uow_factory, sink.handler, "clean")
    assert _CLEAN[backend] == {(f"p{i}", 0): ("sent", 1) for i in range(N)}
    return _CLEAN[backend]


@PG_ONLY
def test_redis_restarted_mid_run_changes_nothing(
    db_url: str,
    tmp_path: Path,
    smtp_sink: Sink,
    procs: Procs,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    uow_factory: Any,
    reliability: Recorder,
) -> None:
    args = (tmp_path, smtp_sink, procs, redis_server, uow_factory)
    clean = clean_outcome(db_url, tmp_path, smtp_sink, uow_factory)
    base = len(smtp_sink.handler.received)
    rng = random.Random(11_000)
    restarts = soak_rounds(2, 20)
    run = Run("restart", db_url, *args)
    lost_publishes = 0
    for point in sorted(rng.sample(range(5, N - 5), restarts)):
        run.until_received(base + point)
        redis_server.kill()  # SIGKILL: queued and unacked tasks are gone with it
        down_until = time.monotonic() + rng.uniform(0.3, 1.5)
        while time.monotonic() < down_until:  # beat keeps trying meanwhile
            lost_publishes += not run.pub.send("refseq.dispatch_sends")
            time.sleep(0.1)
        redis_server.start()  # same port, empty

    # The worker noticed, and came back (or died and its supervisor restarted it): what is
    # left goes through the new broker.
    def reconnected() -> bool:
        run.supervise()
        return run.log().count("Connected to redis://") >= 2

    wait_until(reconnected, 60, "the reconnection", detail=lambda: run.log()[-4000:])
    lost_connection = run.log().count("Connection to broker lost")
    got = run.finish()
    a = audit(uow_factory, smtp_sink.handler)
    reconnects = run.log().count("Connected to redis://") - len(run.workers)
    # workers.broker: what kombu would have crashed the worker on, left to the visibility timeout
    orphaned = len(re.findall(r"leaving \d+ unacknowledged|left unacknowledged", run.log()))
    same = got == clean
    reliability.record(
        "broker",
        f"Redis SIGKILLed and restarted empty mid-run ({N}-message Celery run)",
        trials=restarts,
        duplicates=a.duplicates,
        lost=a.lost,
        wrong_sends=a.wrong_sends,
        outcome=f"outcome {'identical to' if same else 'DIFFERENT from'} a clean run; the worker "
        f"lost the broker {lost_connection} time(s) and reconnected {reconnects} time(s); "
        f"{lost_publishes} publishes failed while Redis was down; {orphaned} ack/restore(s) on "
        f"the dead connection skipped instead of crashing the worker{run.deaths_note()}",
    )
    assert a.duplicates == a.lost == a.wrong_sends == 0, a.problems
    assert same, {k: (v, clean.get(k)) for k, v in got.items() if v != clean.get(k)}
    assert lost_connection >= 1 and (reconnects >= 1 or run.deaths), run.log()[-3000:]


@PG_ONLY
def test_lost_queue_messages_change_nothing(
    db_url: str,
    tmp_path: Path,
    smtp_sink: Sink,
    procs: Procs,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    uow_factory: Any,
    reliability: Recorder,
) -> None:
    args = (tmp_path, smtp_sink, procs, redis_server, uow_factory)
    clean = clean_outcome(db_url, tmp_path, smtp_sink, uow_factory)
    base = len(smtp_sink.handler.received)
    rng = random.Random(12_000)
    wipes = soak_rounds(4, 40)
    client = redis_server.client()
    run = Run("lost", db_url, *args)
    destroyed = 0

    def wipe() -> int:
        """Everything the broker holds, queued or handed out and not yet acknowledged."""
        held = int(client.llen("celery")) + int(client.hlen("unacked"))
        client.flushdb()  # our private server: nobody else's keys
        return held

    try:
        for point in sorted(rng.sample(range(5, N - 5), wipes)):
            run.until_received(base + point)
            for _ in range(rng.randint(1, 4)):  # publish, then lose them before they run
                run.pub.send("refseq.send_mailbox", f"dana@127.0.0.1:{smtp_sink.port}")
            run.pub.send("refseq.dispatch_sends")
            destroyed += wipe()
        got = run.finish()
    finally:
        client.close()
    a = audit(uow_factory, smtp_sink.handler)
    same = got == clean
    reliability.record(
        "broker",
        f"queued and unacknowledged task messages deleted mid-run ({N}-message Celery run)",
        trials=wipes,
        duplicates=a.duplicates,
        lost=a.lost,
        wrong_sends=a.wrong_sends,
        outcome=f"{destroyed} task messages destroyed; outcome "
        f"{'identical to' if same else 'DIFFERENT from'} a clean run{run.deaths_note()}",
    )
    assert a.duplicates == a.lost == a.wrong_sends == 0, a.problems
    assert same, {k: (v, clean.get(k)) for k, v in got.items() if v != clean.get(k)}
    assert destroyed > 0, "the wipes destroyed nothing: the fault never happened"


def test_the_same_task_delivered_twice_changes_nothing(
    db_url: str,
    tmp_path: Path,
    smtp_sink: Sink,
    procs: Procs,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    uow_factory: Any,
    reliability: Recorder,
) -> None:
    """Every send task is published three times under one task id, and the visibility timeout
    is one second, so Redis also hands a running task to a second process. Three processes run
    the copies at once; the database lets each message go once."""
    args = (tmp_path, smtp_sink, procs, redis_server, uow_factory)
    clean = clean_outcome(db_url, tmp_path, smtp_sink, uow_factory)
    key = f"dana@127.0.0.1:{smtp_sink.port}"
    run = Run("twice", db_url, *args, concurrency=3, REFSEQ_VISIBILITY_TIMEOUT="1")
    copies = soak_rounds(3, 5)
    published = Counter[str]()

    def duplicate() -> None:
        task_id = f"send-{len(published)}"
        for _ in range(copies):
            run.pub.send("refseq.send_mailbox", key, task_id=task_id)
        published[task_id] += copies
        run.pub.send("refseq.draft_due")

    base = len(smtp_sink.handler.received)
    run.until_received(base + N, during=duplicate, every=0.5)
    got = run.finish(publish=duplicate)
    received = Counter(re.findall(r"refseq\.send_mailbox\[(send-\d+)\] received", run.log()))
    deliveries = sum(received.values())
    extra = sum(n - 1 for n in received.values() if n > 1)
    failures = re.findall(r"raised unexpected: (\w+)", run.log())  # e.g. a deadlock
    a = audit(uow_factory, smtp_sink.handler)
    same = got == clean
    reliability.record(
        "broker",
        f"the same send task delivered {copies}+ times (one task id; 1 s visibility timeout "
        "redelivers running tasks), 3 worker processes",
        trials=extra,
        duplicates=a.duplicates,
        lost=a.lost,
        wrong_sends=a.wrong_sends,
        outcome=f"{len(received)} task ids delivered {deliveries} times; {len(failures)} "
        f"task(s) failed; outcome {'identical to' if same else 'DIFFERENT from'} a clean run"
        f"{run.deaths_note()}",
    )
    assert a.duplicates == a.lost == a.wrong_sends == 0, a.problems
    assert same, {k: (v, clean.get(k)) for k, v in got.items() if v != clean.get(k)}
    assert extra >= len(received), "the copies were not delivered"
    assert not failures, run.log()[-4000:]  # concurrent copies neither deadlock nor crash
