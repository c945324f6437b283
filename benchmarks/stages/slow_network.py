"""slow network: sending across many mailboxes to a server that holds every message 300 ms.

A real remote server answers the end of DATA only after it has queued (and often scanned) the
message: hundreds of milliseconds during which one SMTP session can do nothing else. One
session at a time would cap a whole outbox near 3 messages/s. The target: 1,000 mailboxes x
2,000 messages a day inside an 8-hour window = 70 messages/s sustained.

refseq's side is one pass of the embedded runner (``run_pass(..., ["send"])``) with the default
``REFSEQ_SEND_CONCURRENCY``: mailboxes are sent from concurrently, each by one thread over its
own SMTP session. The sink is aiosmtpd in its own process, ``await asyncio.sleep(0.3)`` in
``handle_DATA``, so it holds any number of sessions at once. No raw baseline: the floor is set
by the server (N sessions / 0.3 s).
"""

from __future__ import annotations

import time

from benchmarks.harness import Context, Result, peak_rss_mb
from benchmarks.sendkit import DRAFT_CFG, NOW, database, seed
from benchmarks.sinks import SinkProcess
from sequencer.adapters.db.session import make_uow_factory
from sequencer.adapters.smtp import SmtpMailer
from sequencer.config import Settings
from sequencer.core.ports import Mailer
from sequencer.services.runner import Deps, run_pass
from sequencer.services.sending import SendConfig

STAGE = "slow_network"
HOLD = 0.3
TARGET = 70.0


def _mailer() -> Mailer:
    return SmtpMailer(local_hostname="bench.local")


def run(ctx: Context) -> list[Result]:
    mailboxes = ctx.pick(60, 1000, 1000)
    per_box = ctx.pick(1, 3, 10)
    n = mailboxes * per_box
    concurrency = Settings.from_env(
        {"REFSEQ_SECRET_KEY": "benchmark-secret-key-0123456789"}
    ).send_concurrency
    results = []
    for kind in ctx.dbs:
        with SinkProcess(hold=HOLD) as sink, database(ctx, kind, "slow") as url:
            seed(url, n, sink.port, mailboxes=mailboxes)
            factory = make_uow_factory(url)
            deps = Deps(
                uow_factory=factory,
                draft_cfg=DRAFT_CFG,
                send_cfg=SendConfig(env={}),
                mailer_factory=_mailer,
                send_concurrency=concurrency,
            )
            try:
                started = time.perf_counter()
                report = run_pass(deps, NOW, ["send"])
                seconds = time.perf_counter() - started
            finally:
                deps.close()
                factory.dispose()
        sending = report.sending
        if sending is None or sending.sent != n or sending.errors:
            raise RuntimeError(f"slow_network: expected {n} sent, got {sending}")
        rate = n / seconds
        results.append(
            Result(
                stage=STAGE,
                db=kind,
                items=n,
                unit="messages",
                seconds=seconds,
                # --quick: one message per mailbox, a couple of seconds: each mailbox's connection
                # setup dominates, so it shows the path works, not the sustained rate.
                target="n/a (quick)" if ctx.size == "quick" else f">= {TARGET:.0f} msg/s",
                met=None if ctx.size == "quick" else rate >= TARGET,
                peak_rss_mb=peak_rss_mb(),
                extra={
                    "mailboxes": mailboxes,
                    "hold_s": HOLD,
                    "concurrency": concurrency,
                    "sink_peak_sessions": sink.peak_concurrent,
                    "ceiling_msg_s": round(concurrency / HOLD, 1),
                },
                notes=f"{mailboxes} mailboxes x {per_box}, sink holds each message {HOLD} s, "
                f"REFSEQ_SEND_CONCURRENCY={concurrency} (default)",
            )
        )
    return results
