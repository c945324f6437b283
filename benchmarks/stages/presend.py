"""presend: the window left between reading the rep's mailbox and sending to a prospect.

After each claim, before sending the batch, the sender reads the IMAP mailboxes of the campaigns
(``services/presend.py``), so a reply that arrived since the last poll holds the send back. A
reply can still slip through only if it lands between that read (its SEARCH) and the start of
DATA: that window is measured here, per message, on a real Dovecot and a loopback SMTP sink in
its own process. Without the read the window is the time since the last regular poll: up to
its period (60 s under Celery beat or ``refseq run``).

refseq's side is ``send_due`` with the read for each claimed batch; the baseline is the same
``send_due`` without it (the ratio is the cost of the read). N approved drafts, one mailbox
without ``min_gap`` (a claim is a batch of up to 10 messages, so one read covers 10 sends).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from benchmarks.harness import Context, Result, peak_rss_mb
from benchmarks.sendkit import NOW, clear, database, seed
from benchmarks.sinks import SinkProcess
from sequencer.adapters.db.session import make_uow_factory
from sequencer.adapters.imap import ImapMailboxReader
from sequencer.adapters.smtp import SmtpMailer
from sequencer.core.ports import Checkpoint, FetchBatch, ImapAccount, MailboxReader
from sequencer.services.inbox import InboxConfig
from sequencer.services.presend import inbox_refresher
from sequencer.services.sending import SendConfig, send_due

STAGE = "presend"
TARGET_MS = 1000.0  # p95 of the window: a second instead of a minute
PASSWORD_ENV = "BENCH_IMAP_PASSWORD"


class _TimedReader:
    """An ImapMailboxReader that notes when each read's SEARCH answered."""

    def __init__(self) -> None:
        self.inner = ImapMailboxReader()
        self.reads: list[float] = []

    def fetch_new(
        self,
        account: ImapAccount,
        checkpoint: Checkpoint | None,
        rescan_since: datetime,
        limit: int = 500,
    ) -> FetchBatch:
        batch = self.inner.fetch_new(account, checkpoint, rescan_since, limit)
        self.reads.append(time.perf_counter())
        return batch

    def find_message_id(self, account: ImapAccount, folder: str | None, message_id: str) -> bool:
        return self.inner.find_message_id(account, folder, message_id)

    def close(self) -> None:
        self.inner.close()


class _TimedMailer:
    """An SmtpMailer that notes when each message's DATA starts (right after before_data)."""

    def __init__(self) -> None:
        self.inner = SmtpMailer(local_hostname="bench.local")
        self.data_starts: list[float] = []

    def send(
        self,
        account: Any,
        envelope_from: str,
        recipient: str,
        message: bytes,
        before_data: Callable[[], None],
    ) -> Any:
        def noted() -> None:
            before_data()
            self.data_starts.append(time.perf_counter())

        return self.inner.send(account, envelope_from, recipient, message, noted)

    def close(self) -> None:
        self.inner.close()


def _send(
    url: str, sink_port: int, n: int, imap: dict[str, Any], env: dict[str, str], read: bool
) -> tuple[float, list[float]]:
    clear(url)
    seed(url, n, sink_port, imap=imap)
    factory = make_uow_factory(url)
    reader, mailer = _TimedReader(), _TimedMailer()

    @contextmanager
    def lease(key: str) -> Iterator[MailboxReader | None]:
        yield reader

    before = inbox_refresher(factory, lease, InboxConfig(env=env)) if read else None
    try:
        started = time.perf_counter()
        report = send_due(
            factory, mailer, SendConfig(env=env), NOW, random.Random(1), before_batch=before
        )
        seconds = time.perf_counter() - started
    finally:
        mailer.close()
        reader.close()
        factory.dispose()
    if report.sent != n or report.errors:
        raise RuntimeError(f"presend: expected {n} sent, got {report}")
    windows = []
    for start in mailer.data_starts:
        earlier = [r for r in reader.reads if r <= start]
        if earlier:
            windows.append((start - earlier[-1]) * 1000)
    if read and len(windows) != n:
        raise RuntimeError(f"presend: {len(windows)} of {n} sends had a read before them")
    return seconds, windows


def run(ctx: Context) -> list[Result]:
    from tests.dovecot import Dovecot

    n = ctx.pick(40, 500, 2000)
    results = []
    dovecot = Dovecot.start()
    try:
        with SinkProcess() as sink:
            for kind in ctx.dbs:
                login, password = dovecot.user(f"presend{kind}")
                imap = {
                    "host": "127.0.0.1",
                    "port": dovecot.port,
                    "username": login,
                    "password_env": PASSWORD_ENV,
                }
                env = {PASSWORD_ENV: password}
                with database(ctx, kind, "presend") as url:
                    _send(url, sink.port, 20, imap, env, True)  # warm up
                    ours: list[float] = []
                    without: list[float] = []
                    windows: list[float] = []
                    for i in range(ctx.reps):
                        for read in (True, False) if i % 2 == 0 else (False, True):
                            seconds, w = _send(url, sink.port, n, imap, env, read)
                            (ours if read else without).append(seconds)
                            if read:
                                windows += w
                results.append(
                    _result(kind, n, statistics.median(ours), statistics.median(without), windows)
                )
    finally:
        dovecot.stop()
    return results


def _result(kind: str, n: int, ours: float, without: float, windows: list[float]) -> Result:
    ordered = sorted(windows)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Result(
        stage=STAGE,
        db=kind,
        items=n,
        unit="messages",
        seconds=ours,
        baseline_seconds=without,
        baseline="send_due without the read (window: up to the poll period, 60 s)",
        target=f"window p95 <= {TARGET_MS:.0f} ms",
        met=p95 <= TARGET_MS,
        peak_rss_mb=peak_rss_mb(),
        extra={
            "window_p50_ms": round(p50, 1),
            "window_p95_ms": round(p95, 1),
            "window_max_ms": round(ordered[-1], 1),
        },
        notes=f"read-to-DATA window p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms "
        "(Dovecot on loopback; one read per claim of up to 10)",
    )
