"""celery: the sending stage driven by a real Celery worker on the local Redis, against the
same stage in the embedded runner.

Each repetition empties the database and seeds N approved drafts for one mailbox (untimed).
Celery's side publishes ``refseq.send_mailbox`` for that mailbox (what ``dispatch_sends`` does
on the beat) to a worker in its own process (``--pool solo``; Redis db 14 under a private key
prefix) and waits until all N are SENT in the database. The embedded side calls the same
``send_due`` in-process. The worker is warmed up first (its connections and deps are made), so
the ratio is the cost of the broker round trip and the worker's process, not of its start.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from benchmarks.celery_worker import configure
from benchmarks.harness import Context, Result, alternate, peak_rss_mb
from benchmarks.sendkit import ROOT, SECRET, clear, database, seed
from benchmarks.sinks import SinkProcess
from sequencer.adapters.db.repository import DRAFTS
from sequencer.adapters.db.session import make_uow_factory
from sequencer.adapters.smtp import SmtpMailer
from sequencer.core.states import DraftState
from sequencer.services.sending import SendConfig, send_due

STAGE = "celery"
TARGET = 0.8
KEY = "box0@127.0.0.1:{port}"


def key_of(box: int, port: int) -> str:
    """The mailbox key of ``sendkit.seed``'s mailbox number ``box``."""
    return f"box{box}@127.0.0.1:{port}"


WORKER = (sys.executable, "-m", "benchmarks.celery_worker")


def _wait_sent(url: str, n: int, timeout: float) -> None:
    engine = create_engine(url, poolclass=NullPool if url.startswith("sqlite") else None)
    query = select(func.count()).where(DRAFTS.c.state == DraftState.SENT)
    deadline = time.monotonic() + timeout
    try:
        with engine.connect() as c:
            while (done := c.execute(query).scalar_one()) < n:
                c.rollback()  # a fresh snapshot next time
                if time.monotonic() > deadline:
                    raise RuntimeError(f"celery: {done}/{n} sent after {timeout:.0f} s")
                time.sleep(0.005)
    finally:
        engine.dispose()


class Worker:
    def __init__(self, url: str, broker: str, prefix: str) -> None:
        env = {
            **os.environ,
            "REFSEQ_DATABASE_URL": url,
            "REFSEQ_BROKER_URL": broker,
            "REFSEQ_SECRET_KEY": SECRET,
            "REFSEQ_BASE_URL": "https://refseq.bench.example",
            "PYTHONWARNINGS": "ignore",
        }
        self.proc = subprocess.Popen(
            [*WORKER, prefix, "--pool", "solo", "--concurrency", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(ctx: Context) -> list[Result]:
    import redis

    from workers.app import app
    from workers.tasks import send_mailbox_task

    n = ctx.pick(50, 2000, 10_000)
    prefix = f"refseq-bench-{uuid.uuid4().hex[:8]}:"
    configure(app, ctx.redis_url, prefix)
    results = []
    try:
        with SinkProcess() as sink:
            key = KEY.format(port=sink.port)
            for kind in ctx.dbs:
                with database(ctx, kind, "celery") as url:
                    worker = Worker(url, ctx.redis_url, prefix)
                    try:

                        def via_celery(count: int = n) -> float:
                            clear(url)
                            seed(url, count, sink.port, now=datetime.now(UTC))
                            started = time.perf_counter()
                            send_mailbox_task.delay(key)
                            _wait_sent(url, count, 60 + count / 10)
                            return time.perf_counter() - started

                        def embedded(count: int = n) -> float:
                            clear(url)
                            seed(url, count, sink.port, now=datetime.now(UTC))
                            factory = make_uow_factory(url)
                            mailer = SmtpMailer(local_hostname="bench.local")
                            try:
                                started = time.perf_counter()
                                report = send_due(
                                    factory, mailer, SendConfig(env={}), datetime.now(UTC),
                                    random.Random(1), only_mailbox=key,
                                )  # fmt: skip
                                seconds = time.perf_counter() - started
                            finally:
                                mailer.close()
                                factory.dispose()
                            if report.sent != count:
                                raise RuntimeError(f"celery (embedded side): {report}")
                            return seconds

                        via_celery(3)  # warm-up: the worker's first task makes its deps
                        embedded(3)
                        ours, raw = alternate(via_celery, embedded, ctx.reps)
                    finally:
                        worker.stop()
                r = Result(
                    stage=STAGE,
                    db=kind,
                    items=n,
                    unit="messages",
                    seconds=ours,
                    baseline_seconds=raw,
                    baseline="same send_due in the embedded runner",
                    target=f">= {TARGET}",
                    peak_rss_mb=peak_rss_mb(),
                    notes="one mailbox: one send_mailbox task, worker --pool solo on Redis db "
                    f"{ctx.redis_url.rsplit('/', 1)[-1]}; completion seen by polling the DB",
                )
                r.met = (r.ratio or 0) >= TARGET
                results.append(r)
    finally:
        client = redis.Redis.from_url(ctx.redis_url)
        for k in client.scan_iter(f"{prefix}*"):
            client.delete(k)
        client.close()
    return results
