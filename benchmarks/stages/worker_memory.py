"""worker memory: a sending worker's resident memory over a long run must stay flat.

A real Celery worker (its own process, ``--pool solo``, Redis db 14 under a private key prefix)
sends N seeded drafts spread over several mailboxes (a cap is at most 10,000 a day), one
``refseq.send_mailbox`` task per mailbox, to a loopback sink. Its RSS (``VmRSS`` from /proc) and
the SENT count are sampled every 100 ms. Reported: RSS at the first message, at the end and at
its highest, and the growth per 1,000 messages (least-squares slope of RSS over messages sent,
after the first 20 %, so imports and the first connections are not counted as growth).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import redis
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from benchmarks.celery_worker import configure
from benchmarks.harness import Context, Result, peak_rss_mb
from benchmarks.sendkit import database, seed
from benchmarks.sinks import SinkProcess
from benchmarks.stages.celery_stage import Worker, key_of
from sequencer.adapters.db.repository import DRAFTS
from sequencer.core.states import DraftState

STAGE = "worker_memory"
TARGET_MB_PER_1K = 0.1  # flat: under 10 MB over 100k messages
PER_MAILBOX = 5000


def rss_of(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares MB per message."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if not sxx:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def run(ctx: Context) -> list[Result]:
    from workers.app import app
    from workers.tasks import send_mailbox_task

    n = ctx.pick(500, 20_000, 100_000)
    mailboxes = max(1, -(-n // PER_MAILBOX))
    prefix = f"refseq-bench-{uuid.uuid4().hex[:8]}:"
    configure(app, ctx.redis_url, prefix)
    results = []
    try:
        with SinkProcess() as sink:
            for kind in ctx.dbs:
                with database(ctx, kind, "memory") as url:
                    seed(url, n, sink.port, mailboxes=mailboxes, now=datetime.now(UTC))
                    samples, seconds = _drive(url, ctx.redis_url, prefix, sink.port, n, mailboxes,
                                              send_mailbox_task)  # fmt: skip
                r = _result(kind, n, mailboxes, samples, seconds)
                if ctx.size == "quick":  # a few hundred messages: page-level noise, no trend
                    r.met, r.target = None, "n/a (quick)"
                results.append(r)
    finally:
        client = redis.Redis.from_url(ctx.redis_url)
        for k in client.scan_iter(f"{prefix}*"):
            client.delete(k)
        client.close()
    return results


def _drive(
    url: str, broker: str, prefix: str, port: int, n: int, mailboxes: int, task: object
) -> tuple[list[tuple[int, float]], float]:
    worker = Worker(url, broker, prefix)
    engine = create_engine(url, poolclass=NullPool)
    query = select(func.count()).where(DRAFTS.c.state == DraftState.SENT)
    samples: list[tuple[int, float]] = []
    try:
        started = time.perf_counter()
        for box in range(mailboxes):
            task.delay(key_of(box, port))  # type: ignore[attr-defined]
        deadline = time.monotonic() + 120 + n / 20
        done = 0
        while done < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker_memory: {done}/{n} sent before the deadline")
            if worker.proc.poll() is not None:
                raise RuntimeError("worker_memory: the worker exited")
            with engine.connect() as c:
                done = int(c.execute(query).scalar_one())
            samples.append((done, rss_of(worker.proc.pid)))
            time.sleep(0.1)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
        worker.stop()
    return samples, seconds


def _result(
    kind: str, n: int, mailboxes: int, samples: list[tuple[int, float]], seconds: float
) -> Result:
    sending = [(x, y) for x, y in samples if x > 0]
    tail = [(x, y) for x, y in sending if x >= n * 0.2]
    growth = slope(tail) * 1000
    start = sending[0][1] if sending else samples[0][1]
    return Result(
        stage=STAGE,
        db=kind,
        items=n,
        unit="messages",
        seconds=seconds,
        target=f"<= {TARGET_MB_PER_1K} MB per 1k msgs",
        met=growth <= TARGET_MB_PER_1K,
        peak_rss_mb=max(y for _, y in samples),
        extra={
            "worker_rss_start_mb": round(start, 1),
            "worker_rss_end_mb": round(samples[-1][1], 1),
            "worker_rss_max_mb": round(max(y for _, y in samples), 1),
            "growth_mb_per_1k": round(growth, 3),
            "samples": len(samples),
            "mailboxes": mailboxes,
            "bench_process_peak_mb": round(peak_rss_mb(), 1),
        },
        notes=f"worker RSS {start:.0f} MB at the first message, {samples[-1][1]:.0f} MB at the "
        f"end, max {max(y for _, y in samples):.0f} MB; growth {growth:+.3f} MB per 1k messages "
        f"(Celery worker --pool solo, {mailboxes} mailbox(es))",
    )
