"""reply-to-stop: a reply lands in the rep's mailbox → the enrollment is stopped and the rep
notified, with the worker on its default schedule.

A real Dovecot (``tests.dovecot``) holds the rep's INBOX; K prospects have been sent step 1
(seeded as SENT). ``refseq run`` (the embedded runner: sweep, poll, draft, send; a pass every
``--interval`` seconds, 60 by default, the same period as the Celery beat's poll task) runs in
its own process against the database, Dovecot and a loopback SMTP sink. Meanwhile the benchmark
APPENDs one interested reply per prospect (In-Reply-To their step 1) at random moments, and
watches the database: the latency of a reply is APPEND → its enrollment REPLIED **and** its
handoff's notice to the rep sent (``handoffs.notified_at``). Reported: p50, p95, max.

``--quick`` polls every second instead (the default schedule would take minutes): its p95 says
the path works, not how long a rep waits, so its target is marked not applicable.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from benchmarks.harness import Context, Result, peak_rss_mb
from benchmarks.sendkit import ROOT, SECRET, database, mark_sent, seed
from benchmarks.sinks import SinkProcess
from sequencer.adapters.db.repository import ENROLLMENTS
from sequencer.adapters.db.tables_inbound import Handoff
from sequencer.core.states import EnrollmentState

STAGE = "reply_to_stop"
TARGET_S = 120.0
DEFAULT_INTERVAL = 60.0  # `refseq run --interval` default and the beat's poll period
HANDOFFS = Handoff.__table__


def _reply(prospect: str, message_id: str, subject: str, rep: str, i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = prospect
    msg["To"] = rep
    msg["Subject"] = "Re: " + subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<bench-reply-{i}-{os.getpid()}@prospect.example>"
    msg["In-Reply-To"] = message_id
    msg["References"] = message_id
    msg.set_content(
        "Sounds good, happy to talk. Tuesday at 10 works for me.\n\nPat\n\n"
        "On Mon, Dana Whitfield wrote:\n> Hi Pat,\n> James suggested we talk.\n"
    )
    return msg.as_bytes()


def run(ctx: Context) -> list[Result]:
    from tests.dovecot import Dovecot

    quick = ctx.size == "quick"
    interval = 1.0 if quick else DEFAULT_INTERVAL
    replies = ctx.pick(3, 40, 80)
    spread = ctx.pick(2, 180, 360)  # seconds over which the replies arrive
    results = []
    dovecot = Dovecot.start()
    try:
        with SinkProcess() as sink:
            for kind in ctx.dbs:
                login, password = dovecot.user(f"rep{kind}")  # an empty INBOX per database
                with database(ctx, kind, "replies") as url:
                    latencies = _measure(
                        url, dovecot, login, password, sink.port, replies, spread, interval
                    )
                results.append(_result(kind, latencies, interval, quick))
    finally:
        dovecot.stop()
    return results


def _measure(
    url: str,
    dovecot: object,
    login: str,
    password: str,
    port: int,
    replies: int,
    spread: float,
    interval: float,
) -> list[float]:
    imap = {"host": "127.0.0.1", "port": dovecot.port, "username": login}  # type: ignore[attr-defined]
    imap["password_env"] = "BENCH_IMAP_PASSWORD"
    now = datetime.now(UTC)
    seed(url, replies, port, now=now, imap=imap)
    sent = mark_sent(url, now - timedelta(minutes=5))
    rep = "dana@acme.example"
    env = {
        **os.environ,
        "REFSEQ_DATABASE_URL": url,
        "REFSEQ_SECRET_KEY": SECRET,
        "REFSEQ_BASE_URL": "https://refseq.bench.example",
        "BENCH_IMAP_PASSWORD": password,
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sequencer.adapters.cli.main", "run", "--interval", str(interval)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = create_engine(url, poolclass=NullPool)
    appended: dict[str, float] = {}
    seen: dict[str, float] = {}
    rng = random.Random(9)
    moments = sorted(rng.uniform(0, spread) for _ in sent)
    try:
        time.sleep(min(interval, 3.0))  # let the runner start (its first pass polls too)
        started = time.monotonic()
        pending = list(zip(moments, sent, strict=True))
        deadline = started + spread + 2 * interval + 60
        while len(seen) < len(sent):
            now_m = time.monotonic()
            if now_m > deadline:
                raise RuntimeError(f"reply_to_stop: {len(seen)}/{len(sent)} handled in time")
            if proc.poll() is not None:
                raise RuntimeError(f"reply_to_stop: refseq run exited with {proc.returncode}")
            while pending and started + pending[0][0] <= now_m:
                _, (prospect, message_id, subject) = pending.pop(0)
                raw = _reply(prospect, message_id, subject, rep, len(appended))
                dovecot.append(login, "INBOX", raw)  # type: ignore[attr-defined]
                appended[prospect] = time.monotonic()
            with engine.connect() as c:
                rows = c.execute(
                    select(ENROLLMENTS.c.prospect_email)
                    .join(HANDOFFS, HANDOFFS.c.enrollment_id == ENROLLMENTS.c.id)
                    .where(
                        ENROLLMENTS.c.state == EnrollmentState.REPLIED,
                        HANDOFFS.c.notified_at.is_not(None),
                    )
                ).all()
            stamp = time.monotonic()
            for (prospect,) in rows:
                if prospect in appended and prospect not in seen:
                    seen[prospect] = stamp
            time.sleep(0.1)
    finally:
        engine.dispose()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [seen[p] - appended[p] for p in appended]


def _result(kind: str, latencies: list[float], interval: float, quick: bool) -> Result:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    p50 = statistics.median(ordered)
    schedule = f"poll every {interval:g} s" + (" (quick: not the default)" if quick else "")
    return Result(
        stage=STAGE,
        db=kind,
        items=len(latencies),
        unit="replies",
        seconds=max(ordered),  # the rate column is not the point: see p50/p95 in the notes
        target="n/a (quick)" if quick else f"p95 <= {TARGET_S:.0f} s",
        met=None if quick else p95 <= TARGET_S,
        peak_rss_mb=peak_rss_mb(),
        extra={
            "p50_s": round(p50, 1),
            "p95_s": round(p95, 1),
            "max_s": round(ordered[-1], 1),
            "interval_s": interval,
        },
        notes=f"p50 {p50:.1f} s, p95 {p95:.1f} s, max {ordered[-1]:.1f} s from Dovecot APPEND "
        f"to enrollment REPLIED and rep notified; refseq run, {schedule}",
    )
