"""sending: approved drafts → SMTP (a loopback aiosmtpd sink in its own process) → recorded SENT.

refseq's side is ``send_due`` with the real ``SmtpMailer``: claim under the mailbox lock with
every re-check (campaign, suppression, enrollment, consent, window, cap and gap, mail waiting to
be read), ``data_started_at`` written before DATA, the outcome and the enrollment's next step
written after. The raw baseline sends the very same message bytes with ``smtplib.SMTP`` over one
reused connection to the same sink and records nothing. Each repetition starts from an emptied
database with N freshly seeded drafts (untimed).
"""

from __future__ import annotations

import random
import smtplib
import time

from sqlalchemy import func, select

from benchmarks.harness import Context, Result, alternate, peak_rss_mb
from benchmarks.sendkit import NOW, clear, database, seed
from benchmarks.sinks import SinkProcess
from sequencer.adapters.db.repository import DRAFTS
from sequencer.adapters.db.session import make_uow_factory
from sequencer.adapters.smtp import SmtpMailer
from sequencer.core.states import DraftState
from sequencer.services.sending import SendConfig, send_due

STAGE = "sending"
TARGET = 0.7


def sent_count(url: str) -> int:
    factory = make_uow_factory(url)
    try:
        with factory() as uow:
            return int(
                uow.session.execute(
                    select(func.count()).where(DRAFTS.c.state == DraftState.SENT)
                ).scalar_one()
            )
    finally:
        factory.dispose()


def send_raw(port: int, messages: list[tuple[str, str, bytes]]) -> float:
    started = time.perf_counter()
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.local")
    try:
        for sender, rcpt, raw in messages:
            refused = smtp.sendmail(sender, [rcpt], raw)
            assert not refused, refused
    finally:
        smtp.quit()
    return time.perf_counter() - started


def send_ours(url: str, port: int, n: int, mailboxes: int = 1) -> float:
    clear(url)
    seed(url, n, port, mailboxes)
    factory = make_uow_factory(url)
    mailer = SmtpMailer(local_hostname="bench.local")
    try:
        started = time.perf_counter()
        report = send_due(factory, mailer, SendConfig(env={}), NOW, random.Random(1))
        seconds = time.perf_counter() - started
    finally:
        mailer.close()
        factory.dispose()
    if report.sent != n or report.errors or sent_count(url) != n:
        raise RuntimeError(f"sending: expected {n} sent, got {report}")
    return seconds


def run(ctx: Context) -> list[Result]:
    n = ctx.pick(100, 2000, 10_000)
    results = []
    with SinkProcess() as sink:
        for kind in ctx.dbs:
            with database(ctx, kind, "sending") as url:
                messages = seed(url, n, sink.port)
                send_raw(sink.port, messages[:20])  # warm both paths up once
                send_ours(url, sink.port, 20)
                ours, raw = alternate(
                    lambda: send_ours(url, sink.port, n),
                    lambda: send_raw(sink.port, messages),  # noqa: B023
                    ctx.reps,
                )
            r = Result(
                stage=STAGE,
                db=kind,
                items=n,
                unit="messages",
                seconds=ours,
                baseline_seconds=raw,
                baseline="raw smtplib, one reused connection, same bytes",
                target=f">= {TARGET}",
                peak_rss_mb=peak_rss_mb(),
                notes="one mailbox, sink in its own process",
            )
            r.met = (r.ratio or 0) >= TARGET
            results.append(r)
    return results
