"""One pass of the workers' job (draft → send → sweep), and replays of a stretch of time.

The Celery beat schedule and `refseq run` call exactly these services; only the trigger differs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sequencer.core.drafts import DraftConfig
from sequencer.core.ports import Mailer, UnitOfWork
from sequencer.services.drafting import DraftingReport, draft_due
from sequencer.services.sending import SendConfig, SendReport, SweepReport, send_due, sweep

STAGES = ("draft", "send", "sweep")


@dataclass
class Deps:
    uow_factory: Callable[[], UnitOfWork]
    draft_cfg: DraftConfig
    send_cfg: SendConfig
    mailer_factory: Callable[[], Mailer]
    rng: random.Random = field(default_factory=random.Random)
    _mailer: Mailer | None = None

    @property
    def mailer(self) -> Mailer:
        if self._mailer is None:
            self._mailer = self.mailer_factory()
        return self._mailer

    def close(self) -> None:
        if self._mailer is not None:
            self._mailer.close()
            self._mailer = None


@dataclass
class PassReport:
    now: datetime
    drafting: DraftingReport | None = None
    sending: SendReport | None = None
    sweeping: SweepReport | None = None

    def summary(self) -> str:
        parts = []
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
    if "draft" in wanted:
        report.drafting = draft_due(deps.uow_factory, deps.draft_cfg, now)
    if "send" in wanted and not stop():
        report.sending = send_due(deps.uow_factory, deps.mailer, deps.send_cfg, now, deps.rng, stop)
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
