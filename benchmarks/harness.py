"""What every benchmark stage shares: sizes, alternating repetitions, medians, peak memory, and
the one-line-per-stage result (human table or JSON).

A stage module (``benchmarks/stages/<name>.py``) exposes::

    STAGE = "sending"                      # the name on the command line (--only sending)
    def run(ctx: Context) -> list[Result]  # one Result per database (or one with db="-")

``alternate`` runs refseq's code and its raw baseline turn about (ours, raw, ours, raw, ...) so
both see the same machine noise, and returns the medians. Timing is wall-clock
(``time.perf_counter``); each callable does its own setup outside the timed part by returning the
seconds it measured itself (see ``timed``).
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Size = Literal["quick", "default", "large"]

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class Context:
    size: Size
    dbs: list[str]  # "sqlite" and/or "postgresql"
    pg_admin_url: str
    workdir: str  # a temporary folder the stage may fill (removed afterwards)
    reps: int  # repetitions per side for alternate()
    redis_url: str = "redis://127.0.0.1:6379/14"

    def pick(self, quick: int, default: int, large: int) -> int:
        return {"quick": quick, "default": default, "large": large}[self.size]


@dataclass
class Result:
    stage: str
    db: str  # "sqlite", "postgresql" or "-"
    items: int  # what the rates divide by
    unit: str  # "prospects", "drafts", "messages", "enrollments", ...
    seconds: float  # median seconds of refseq's side
    baseline_seconds: float | None = None  # median seconds of the raw baseline, same items
    baseline: str = ""  # what the raw baseline is, in a few words
    target: str = ""  # e.g. ">= 0.6" (ratio), "<= 2x at 10k", ">= 70 msg/s", "p95 <= 120 s"
    met: bool | None = None  # whether the target was met (None: no target)
    peak_rss_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # any other figures (p95, sizes, ...)
    notes: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else float("inf")

    @property
    def baseline_rate(self) -> float | None:
        if not self.baseline_seconds:
            return None
        return self.items / self.baseline_seconds

    @property
    def ratio(self) -> float | None:
        """refseq's rate ÷ the baseline's rate (1.0 = as fast as the bare minimum)."""
        if not self.baseline_seconds or not self.seconds:
            return None
        return self.baseline_seconds / self.seconds

    def as_json(self) -> dict[str, Any]:
        row = asdict(self)
        row.update(rate=self.rate, baseline_rate=self.baseline_rate, ratio=self.ratio)
        return row


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def alternate(
    ours: Callable[[], float], raw: Callable[[], float], reps: int
) -> tuple[float, float]:
    """Run ``ours`` and ``raw`` turn about ``reps`` times each; medians of the seconds each
    returned. Each callable prepares its own fresh state, times only the work, returns seconds."""
    mine: list[float] = []
    theirs: list[float] = []
    for i in range(reps):
        pair = (ours, raw) if i % 2 == 0 else (raw, ours)
        for fn in pair:
            (mine if fn is ours else theirs).append(fn())
    return statistics.median(mine), statistics.median(theirs)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB); run a stage in a child process to get
    the stage's own."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's current resident memory (MB), from /proc."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
