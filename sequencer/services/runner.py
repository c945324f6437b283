"""One pass of the workers' job (draft → send → sweep), and replays of a stretch of time.

The Celery beat schedule and `refseq run` call exactly these services; only the trigger differs.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sequencer.core.drafts import DraftConfig
from sequencer.core.ports import MailboxReader, Mailer, UnitOfWork, WebhookPoster
from sequencer.services.attention import CheckReport, check_sent_folders
from sequencer.services.drafting import DraftingReport, draft_due
from sequencer.services.inbox import InboxConfig, InboxReport, poll, process, resume_paused
from sequencer.services.presend import inbox_refresher
from sequencer.services.routing import RoutingReport, deliver_webhooks, notify_handoffs
from sequencer.services.sending import (
    BeforeBatch,
    SendConfig,
    SendReport,
    SweepReport,
    send_due,
    sweep,
)

STAGES = ("sweep", "poll", "draft", "send")


@dataclass
class Deps:
    uow_factory: Callable[[], UnitOfWork]
    draft_cfg: DraftConfig
    send_cfg: SendConfig
    mailer_factory: Callable[[], Mailer]
    rng: random.Random = field(default_factory=random.Random)
    reader_factory: Callable[[], MailboxReader] | None = None
    poster: WebhookPoster | None = None
    inbox_cfg: InboxConfig | None = None
    send_concurrency: int = 1  # mailboxes sending at once (see sending.send_due)
    _mailer: Mailer | None = None
    _reader: MailboxReader | None = None
    _box_mailers: dict[str, Mailer] = field(default_factory=dict)
    _box_readers: dict[str, MailboxReader] = field(default_factory=dict)
    _box_busy: set[str] = field(default_factory=set)
    _box_guard: threading.Lock = field(default_factory=threading.Lock)

    @property
    def mailer(self) -> Mailer:
        if self._mailer is None:
            self._mailer = self.mailer_factory()
        return self._mailer

    @property
    def reader(self) -> MailboxReader | None:
        if self._reader is None and self.reader_factory is not None:
            self._reader = self.reader_factory()
        return self._reader

    @contextmanager
    def mailer_lease(self, key: str) -> Iterator[Mailer | None]:
        """This process's mailer for one mailbox, held by one thread at a time (a mailer and
        its SMTP session are not thread-safe); None while another thread holds it."""
        with self._box_guard:
            if key in self._box_busy:
                leased = None
            else:
                self._box_busy.add(key)
                leased = self._box_mailers.get(key)
                if leased is None:
                    leased = self._box_mailers[key] = self.mailer_factory()
        if leased is None:
            yield None
            return
        try:
            yield leased
        finally:
            with self._box_guard:
                self._box_busy.discard(key)

    @contextmanager
    def reader_lease(self, key: str) -> Iterator[MailboxReader | None]:
        """The IMAP reader of the thread sending from mailbox ``key`` (the sender holds that
        mailbox alone, so its reader is never shared between threads); None without IMAP."""
        if self.reader_factory is None:
            yield None
            return
        with self._box_guard:
            reader = self._box_readers.get(key)
            if reader is None:
                reader = self._box_readers[key] = self.reader_factory()
        yield reader

    def before_batch(self) -> BeforeBatch | None:
        """Read the reps' mailboxes before each claimed batch is sent (services/presend.py)."""
        if self.inbox_cfg is None or self.reader_factory is None:
            return None
        return inbox_refresher(self.uow_factory, self.reader_lease, self.inbox_cfg)

    def close(self) -> None:
        with self._box_guard:
            mailers = list(self._box_mailers.values())
            self._box_mailers.clear()
            readers = list(self._box_readers.values())
            self._box_readers.clear()
        for m in mailers:
            m.close()
        for r in readers:
            r.close()
        if self._mailer is not None:
            self._mailer.close()
            self._mailer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None


@dataclass
class PassReport:
    now: datetime
    drafting: DraftingReport | None = None
    sending: SendReport | None = None
    sweeping: SweepReport | None = None
    inbox: InboxReport | None = None
    attention: CheckReport | None = None
    routing: list[RoutingReport] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        if self.inbox:
            i = self.inbox
            parts.append(f"polled {i.stored} new")
            handled = ", ".join(f"{n} {k}" for k, n in sorted(i.handled.items()))
            if handled:
                parts.append(f"handled {handled}")
            for label, n in (
                ("unmatched", i.unmatched),
                ("for a human", i.unhandled),
                ("handed off", i.handoffs),
            ):
                if n:
                    parts.append(f"{n} {label}")
            parts.extend(i.errors)
        if self.attention:
            if self.attention.found:
                n = len(self.attention.found)
                parts.append(f"{n} unknown send(s) found in the Sent folder: recorded as sent")
            parts.extend(self.attention.errors)
        for r in self.routing:
            if r.notified:
                parts.append(f"notified the rep of {r.notified} handoff(s)")
            if r.webhooks_delivered:
                parts.append(f"{r.webhooks_delivered} webhook(s) delivered")
            parts.extend(r.errors)
        if self.drafting:
            d = self.drafting
            parts.append(f"drafted {d.created} ({d.auto_approved} auto-approved)")
            if d.errors:
                parts.append(f"{len(d.errors)} failed to render")
        if self.sending:
            s = self.sending
            parts.append(f"sent {s.sent}")
            for label, n in (
                ("retry later", s.retried),
                ("failed", s.failed),
                ("need attention", s.attention),
                ("cancelled", s.cancelled),
                ("deferred to the window", s.deferred),
                ("claim(s) taken back by another process", s.lost),
            ):
                if n:
                    parts.append(f"{n} {label}")
            parts.extend(f"{k}: {why}" for k, why in sorted(s.waiting.items()))
            parts.extend(s.errors)
        if self.sweeping and (self.sweeping.released or self.sweeping.attention):
            parts.append(
                f"swept {self.sweeping.released} back, {self.sweeping.attention} to attention"
            )
        return "; ".join(parts)


def run_pass(
    deps: Deps,
    now: datetime,
    stages: Iterable[str] = STAGES,
    stop: Callable[[], bool] = lambda: False,
) -> PassReport:
    wanted = set(stages)
    report = PassReport(now)
    if "sweep" in wanted:
        report.sweeping = sweep(deps.uow_factory, deps.send_cfg, now)
    if "poll" in wanted and deps.inbox_cfg is not None:
        reader = deps.reader
        if reader is not None:
            report.inbox = poll(deps.uow_factory, reader, deps.inbox_cfg, now)
            report.attention = check_sent_folders(
                deps.uow_factory, reader, deps.inbox_cfg.env, now, automatic=True
            )
        else:
            report.inbox = process(deps.uow_factory, deps.inbox_cfg, now)
        report.routing.append(
            notify_handoffs(deps.uow_factory, deps.mailer, deps.draft_cfg, deps.inbox_cfg.env, now)
        )
        if deps.poster is not None:
            report.routing.append(
                deliver_webhooks(
                    deps.uow_factory,
                    deps.poster,
                    deps.draft_cfg.secret_key,
                    deps.inbox_cfg.env,
                    now,
                )
            )
    if "draft" in wanted:
        resume_paused(deps.uow_factory, now)
        report.drafting = draft_due(deps.uow_factory, deps.draft_cfg, now)
    if "send" in wanted and not stop():
        report.sending = send_due(
            deps.uow_factory,
            deps.mailer,
            deps.send_cfg,
            now,
            deps.rng,
            stop,
            mailer_for=deps.mailer_lease,
            concurrency=deps.send_concurrency,
            before_batch=deps.before_batch(),
        )
    return report


def moments(start: datetime, until: datetime, step: timedelta) -> Iterator[datetime]:
    if step <= timedelta(0):
        raise ValueError("the step must be positive")
    now = start
    while now <= until:
        yield now
        now += step


def replay(
    deps: Deps,
    start: datetime,
    until: datetime,
    step: timedelta,
    on_pass: Callable[[PassReport], None] = lambda r: None,
    stop: Callable[[], bool] = lambda: False,
) -> list[PassReport]:
    """Run a pass at every ``step`` from ``start`` to ``until`` on the simulated clock."""
    reports = []
    for now in moments(start, until, step):
        if stop():
            break
        report = run_pass(deps, now, stop=stop)
        on_pass(report)
        reports.append(report)
    return reports
