"""Render every step of every enrollment's sequence against its real data, before launch.

The check is one batch: templates are looked up and compiled once for it (``Renderer`` with
``reload=False``), not once per render. A large audience is rendered in worker processes, in
chunks whose results are taken in order, so the problems and their order are exactly those of
rendering one prospect after the other; if the processes cannot be used, the rest is rendered
here. The processes are started with "spawn" (a fresh interpreter: nothing inherited from this
one's threads or caches), so a script that runs the check must, as always with
multiprocessing, keep its top-level code under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from sequencer.core import blanks
from sequencer.core.drafts import (
    DraftConfig,
    EnrollmentData,
    render_for,
    render_sequence,
    renderer_for,
)
from sequencer.core.model import Audience, CampaignSpec
from sequencer.core.plan import PlannedEnrollment, build_plan, to_new_enrollment
from sequencer.core.ports import NewEnrollment
from sequencer.core.render import RenderedEmail, Renderer, available_templates, template_dirs
from sequencer.errors import Problem, RenderError
from sequencer.memlimit import headroom, limit_address_space
from sequencer.services.blankcells import BlankCell, BlankCells, blank_cells, data_rows

# A template broken for everyone would otherwise print one line per prospect.
EXAMPLES_PER_PROBLEM = 3
#: From this many prospects on, the render check uses worker processes (starting them costs
#: about a second; below this the check takes about that long in total).
PARALLEL_FROM = 5_000
#: At most this many worker processes.
MAX_WORKERS = 2
#: Address space a render-check process may grow by (or less: REFSEQ_MEMORY_HEADROOM).
RENDER_HEADROOM = 1 << 30
#: Prospects per chunk: the unit of work of a worker process and of ``progress`` calls.
CHUNK = 500
_EPOCH = datetime(2026, 1, 5, 12, tzinfo=UTC)  # any instant: timing plays no part in rendering


def planned(
    spec: CampaignSpec, audience: Audience
) -> Iterator[tuple[PlannedEnrollment, NewEnrollment]]:
    """Every prospect that has a referral path, as launch would enroll them (ignoring the DB)."""
    plan = build_plan(spec, audience, now=_EPOCH, suppressed=set(), live_elsewhere={}, already={})
    policy = spec.temperature.name_referrer
    for p in plan.enroll:
        if not p.held:
            yield p, to_new_enrollment(p, policy)


def _template_file(spec: CampaignSpec, cfg: DraftConfig, template: str) -> str:
    """``warm_intro/body.txt`` → the file's path as a person would open it."""
    name = template.split("/", 1)[0]
    for folder in template_dirs(cfg.shipped_templates, spec.templates_dir):
        if (folder / name).is_dir():
            return str(folder / template)
    return template


@dataclass
class _Collector:
    spec: CampaignSpec
    cfg: DraftConfig

    def __post_init__(self) -> None:
        self.seen: dict[tuple[str, int | None, str], list[str]] = defaultdict(list)
        self.blank = BlankCells()

    def add(self, failure: _Failure | BlankCell) -> None:
        if isinstance(failure, BlankCell):
            self.blank.add(failure)
            return
        template, line, message, email = failure
        self.seen[(template, line, message)].append(email)

    def problems(self) -> list[Problem]:
        out = self.blank.problems()
        for (template, line, message), emails in self.seen.items():
            source = _template_file(self.spec, self.cfg, template)
            for email in emails[:EXAMPLES_PER_PROBLEM]:
                out.append(Problem(source, f"{message}, for prospect {email}", line=line))
            if len(emails) > EXAMPLES_PER_PROBLEM:
                more = len(emails) - EXAMPLES_PER_PROBLEM
                out.append(
                    Problem(source, f"{message}, and for {more} more prospect(s)", line=line)
                )
        return out


def render_check(
    spec: CampaignSpec,
    audience: Audience,
    cfg: DraftConfig,
    progress: Callable[[int], None] | None = None,
    *,
    workers: int | None = None,
) -> list[Problem]:
    """Render each step each enrollment would get; every failure with its template file:line.

    ``progress(prospects done)`` is called after each chunk of :data:`CHUNK` prospects.
    ``workers``: processes to render in (1: render here); by default up to
    :data:`MAX_WORKERS` from :data:`PARALLEL_FROM` prospects on. The result is the same either
    way, problems in the same order.
    """
    dirs = template_dirs(cfg.shipped_templates, spec.templates_dir)
    known = available_templates(dirs)
    problems: list[Problem] = []
    for key, steps in spec.sequences.items():
        for i, step in enumerate(steps):
            if step.template not in known:
                problems.append(
                    Problem(
                        str(spec.source),
                        f"no template named {step.template!r}",
                        field=f"sequences.{key}[{i}].template",
                        hint=f"add {step.template}/subject.txt and body.txt to the campaign's "
                        f"templates folder, or use one of: {', '.join(sorted(known))}",
                    )
                )
    if problems:
        return problems
    collector = _Collector(spec, cfg)
    snapshots = (_Snapshot.of(e, data_rows(spec, p)) for p, e in planned(spec, audience))
    chunks = _chunks(snapshots, CHUNK)
    count = _worker_count(workers, len(audience.prospects))
    results = _in_processes(spec, cfg, chunks, count) if count > 1 else ((c, None) for c in chunks)
    renderer: Renderer | None = None
    done = 0
    for chunk, failures in results:
        if failures is None:  # not rendered by a worker process: render it here
            renderer = renderer or renderer_for(spec, cfg, reload=False)  # one batch
            failures = _check_chunk(spec, cfg, renderer, chunk)
        for failure in failures:
            collector.add(failure)
        done += len(chunk)
        if progress is not None:
            progress(done)
    return collector.problems()


# --------------------------------------------------------------------------- chunks


class _Snapshot(NamedTuple):
    """What rendering reads of an enrollment (``EnrollmentData``): what a worker is sent."""

    prospect_email: str
    prospect: dict[str, str]
    referrer: dict[str, Any]
    referral: dict[str, Any]
    other_referrals: list[dict[str, Any]]
    temperature: str
    sequence: str
    may_name_referrer: bool
    rows: dict[str, tuple[str, int]] = {}  # "prospect" -> (CSV file, row) of its data

    @classmethod
    def of(cls, e: EnrollmentData, rows: dict[str, tuple[str, int]] | None = None) -> _Snapshot:
        return cls(
            e.prospect_email,
            e.prospect,
            e.referrer,
            e.referral,
            e.other_referrals,
            e.temperature,
            e.sequence,
            e.may_name_referrer,
            rows or {},
        )


# template file, line, message, prospect email (a RenderError does not survive pickling)
_Failure = tuple[str, int | None, str, str]
_Result = list[_Failure | BlankCell]


def _chunks(items: Iterable[_Snapshot], size: int) -> Iterator[list[_Snapshot]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _check_chunk(
    spec: CampaignSpec, cfg: DraftConfig, renderer: Renderer, chunk: list[_Snapshot]
) -> list[_Failure | BlankCell]:
    failures: list[_Failure | BlankCell] = []
    for enrollment in chunk:
        with blanks.tracking() as printed:
            for result in render_sequence(spec, enrollment, cfg, renderer):
                if isinstance(result, RenderError):
                    failures.append(
                        (result.template, result.line, result.message, enrollment.prospect_email)
                    )
        failures += blank_cells(printed, enrollment.rows, enrollment.prospect_email)
    return failures


# --------------------------------------------------------------------------- worker processes


def _worker_count(requested: int | None, prospects: int) -> int:
    if requested is not None:
        return requested
    if prospects < PARALLEL_FROM:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


_WORKER: tuple[CampaignSpec, DraftConfig, Renderer] | None = None


def _start_worker(spec: CampaignSpec, cfg: DraftConfig) -> None:
    global _WORKER
    extra = headroom()
    limit_address_space(min(extra, RENDER_HEADROOM))  # this process only renders
    _WORKER = (spec, cfg, renderer_for(spec, cfg, reload=False))  # one per process and check


def _ready() -> None:
    """A first task: makes the pool start its processes."""


def _check_in_worker(chunk: list[_Snapshot]) -> _Result:
    assert _WORKER is not None, "_start_worker did not run"
    spec, cfg, renderer = _WORKER
    return _check_chunk(spec, cfg, renderer, chunk)


def _in_processes(
    spec: CampaignSpec, cfg: DraftConfig, chunks: Iterator[list[_Snapshot]], workers: int
) -> Iterator[tuple[list[_Snapshot], _Result | None]]:
    """Each chunk with its failures, in the order of ``chunks``, rendered by ``workers`` fresh
    processes (templates as they are now, whatever this process has cached). ``None`` instead
    of the failures: the pool could not render that chunk (it could not start, a process died,
    ...); it and every later chunk are then left to the caller. An exception raised while
    rendering (not a RenderError) is also left to the caller, who meets it again."""
    pool: ProcessPoolExecutor | None = None
    try:
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),  # safe with threads (a progress bar)
            initializer=_start_worker,
            initargs=(spec, cfg),
        )
        for _ in range(workers):  # start them now: they get ready while the plan is made
            pool.submit(_ready)
    except Exception:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        yield from ((chunk, None) for chunk in chunks)
        return
    pending: deque[tuple[list[_Snapshot], Future[_Result]]] = deque()
    broken = False

    def take() -> tuple[list[_Snapshot], _Result | None]:
        nonlocal broken
        chunk, future = pending.popleft()
        if not broken:
            try:
                return chunk, future.result()
            except Exception:
                broken = True
                pool.shutdown(wait=False, cancel_futures=True)
        return chunk, None

    try:
        for chunk in chunks:
            if broken:
                yield chunk, None
                continue
            try:
                pending.append((chunk, pool.submit(_check_in_worker, chunk)))
            except Exception:
                broken = True
                pool.shutdown(wait=False, cancel_futures=True)
                yield chunk, None
                continue
            while len(pending) > 4 * workers:  # keep every worker busy, but memory bounded
                yield take()
        while pending:
            yield take()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def preview(
    spec: CampaignSpec, audience: Audience, cfg: DraftConfig, email: str | None, step: int | None
) -> list[tuple[NewEnrollment, int, RenderedEmail]]:
    """Render without storing anything: one prospect (or the first) and one step (or all)."""
    out = []
    for p, enrollment in planned(spec, audience):
        if email is not None and p.prospect.key != email.casefold():
            continue
        count = len(spec.sequences[enrollment.sequence])
        indexes = [step - 1] if step is not None else list(range(count))
        for index in indexes:
            if not 0 <= index < count:
                raise RenderError(
                    enrollment.sequence,
                    None,
                    f"the {enrollment.sequence} sequence has "
                    f"{count} step(s); there is no step {index + 1}",
                )
            out.append((enrollment, index, render_for(spec, enrollment, index, cfg)))
        if email is None or out:
            break
    return out


def draft_config(secret_key: str, base_url: str, shipped: Path) -> DraftConfig:
    return DraftConfig(secret_key=secret_key, base_url=base_url, shipped_templates=shipped)
