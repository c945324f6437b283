"""How much of a CSV file refseq reads: a size cap, a row cap and a cap on problems listed.

A file over the size cap is refused before it is read; one with more data rows than the row cap
is refused at the first row over it. A file with more problems than the problem cap is not
checked further (the rest is only counted: "N more row(s) not checked") and refused too: a
file of junk costs neither minutes, memory nor a screenful per row. These are file problems:
nothing launches. Rows are read as a stream, so memory grows with the rows kept, never with
the file. Problems found by checking rows against the other files (a referral to an unknown
prospect) are listed up to the cap, then counted ("... and N more problem(s)").

The defaults fit a million-prospect campaign; each can be changed by an environment variable:

========================== ============ ==========================================
variable                    default      what
========================== ============ ==========================================
``REFSEQ_CSV_MAX_BYTES``    268435456    size of one CSV file (256 MiB)
``REFSEQ_CSV_MAX_ROWS``     2000000      data rows in one CSV file
``REFSEQ_CSV_MAX_PROBLEMS`` 100          problems listed per CSV file
========================== ============ ==========================================
"""

from __future__ import annotations

import codecs
import contextvars
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sequencer.config import env_int
from sequencer.errors import Problem

CHUNK = 1 << 20


@dataclass(frozen=True)
class CsvLimits:
    max_bytes: int = 256 << 20
    max_rows: int = 2_000_000
    max_problems: int = 100

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CsvLimits:
        env = os.environ if env is None else env
        return cls(
            max_bytes=env_int(env, "REFSEQ_CSV_MAX_BYTES", cls.max_bytes, minimum=1),
            max_rows=env_int(env, "REFSEQ_CSV_MAX_ROWS", cls.max_rows, minimum=1),
            max_problems=env_int(env, "REFSEQ_CSV_MAX_PROBLEMS", cls.max_problems, minimum=1),
        )


_DEFAULTS = CsvLimits()
_ACTIVE: contextvars.ContextVar[CsvLimits | None] = contextvars.ContextVar(
    "refseq_csv_limits", default=None
)


def active() -> CsvLimits:
    """The limits in force (``using``), else the defaults."""
    return _ACTIVE.get() or _DEFAULTS


@contextmanager
def using(limits: CsvLimits) -> Iterator[CsvLimits]:
    """Read CSVs under ``limits`` inside the block."""
    token = _ACTIVE.set(limits)
    try:
        yield limits
    finally:
        _ACTIVE.reset(token)


class CappedProblems(list[Problem]):
    """A file's problems: the first ``cap`` are kept, the rest only counted (``more``)."""

    def __init__(self, source: str, cap: int) -> None:
        super().__init__()
        self.source = source
        self.cap = cap
        self.more = 0
        self.forced: list[Problem] = []

    @property
    def full(self) -> bool:
        """More problems came than are kept."""
        return self.more > 0

    def append(self, problem: Problem) -> None:
        if len(self) < self.cap:
            super().append(problem)
        else:
            self.more += 1

    def extend(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            self.append(problem)

    def force(self, problem: Problem) -> None:
        """A problem with the whole file: kept even past the cap."""
        super().append(problem)
        self.forced.append(problem)

    def summary(self) -> Problem | None:
        if not self.more:
            return None
        return Problem(
            self.source,
            f"... and {self.more} more problem(s) in this file (only the first {self.cap} "
            "are listed)",
            hint="fix these and run it again; REFSEQ_CSV_MAX_PROBLEMS sets how many are listed",
        )


def listed(source: str, *groups: list[Problem]) -> list[Problem]:
    """One file's problems from ``groups`` (each maybe a ``CappedProblems``), by row: at most
    the cap of them, then one line saying how many more there are."""
    cap = active().max_problems
    forced = {id(p) for g in groups if isinstance(g, CappedProblems) for p in g.forced}
    every = [p for g in groups for p in g]
    if len(groups) > 1:
        every.sort(key=lambda p: p.row or 0)
    kept: list[Problem] = []
    regular = 0
    for problem in every:
        if id(problem) in forced:
            kept.append(problem)
        elif regular < cap:
            kept.append(problem)
            regular += 1
    out = CappedProblems(source, cap)
    out.more = sum(g.more for g in groups if isinstance(g, CappedProblems))
    out.more += len(every) - len(kept)
    summary = out.summary()
    return [*kept, summary] if summary is not None else kept


def too_big(path: Path, label: str, limits: CsvLimits) -> Problem | None:
    """The problem with a file over the size cap (checked before reading it), else None."""
    try:
        size = path.stat().st_size
    except OSError:
        return None  # reading it reports why
    if size <= limits.max_bytes:
        return None
    return Problem(
        label,
        f"the file is {size:,} bytes, more than the limit of {limits.max_bytes:,}",
        hint="split the campaign, or raise REFSEQ_CSV_MAX_BYTES",
    )


def stopped(label: str, row: int, cap: int, unchecked: int) -> Problem:
    return Problem(
        label,
        f"more than {cap} problems: the file was not checked past this row "
        f"({unchecked:,} more row(s) not checked), so none of it is used",
        row=row,
        hint="is it the right file? fix the problems listed, or raise REFSEQ_CSV_MAX_PROBLEMS",
    )


def too_many_rows(label: str, row: int, max_rows: int) -> Problem:
    return Problem(
        label,
        f"the file has more than {max_rows:,} data rows; it was not read past this row",
        row=row,
        hint="split the campaign, or raise REFSEQ_CSV_MAX_ROWS",
    )


def utf8_problem(path: Path, label: str) -> Problem | None:
    """Read the file once, in chunks, as UTF-8: the first undecodable byte's row, else None."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # The decoder's buffered bytes come first: count from the start of the error.
                buffered = len(exc.object) - len(chunk)
                start = max(exc.start - buffered, 0)
                line = lines + chunk.count(b"\n", 0, start)
                bad = exc.object[exc.start]
                message = f"the file is not UTF-8 text (byte 0x{bad:02x} on this row)"
                return Problem(label, message, row=line, hint="save the file as UTF-8")
            if not chunk:
                return None
            lines += chunk.count(b"\n")


def stream_lines(path: Path) -> Iterator[str]:
    """The file's lines, decoded as they are read (an Excel BOM is dropped)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        yield from fh
