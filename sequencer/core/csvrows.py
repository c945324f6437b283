"""Reading one CSV into checked rows: header checks, physical line numbers, cell hygiene.

Pure helpers behind :mod:`sequencer.core.audience`. A :class:`Row` collects its own problems;
the caller drops any row that has one, so bad rows never sink good ones.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

from sequencer.core.csvlimits import (
    CappedProblems,
    CsvLimits,
    active,
    stopped,
    stream_lines,
    too_big,
    too_many_rows,
    utf8_problem,
)
from sequencer.errors import Problem

# Anything that could break or smuggle an email header: every Cc control (tab included)
# plus the Unicode line/paragraph separators that str.splitlines() also treats as breaks.
HEADER_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Free text (contexts) may keep line feeds; every other control, lone \r included, is refused.
TEXT_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")

TRUE = frozenset({"yes", "true", "1", "y"})
FALSE = frozenset({"no", "false", "0", "n", ""})
PROGRESS_EVERY = 1000
RANGE_HINT = "use a whole number from {lo} to {hi}"
DUPLICATE_HINT = "the first row is used; remove this one"
MAX_FUZZY = 5000  # difflib over more names than this is too slow to be worth it


@dataclass(slots=True)
class Row:
    """One data record. ``cells`` maps every named column to its stripped value ("" if absent)."""

    source: str
    line: int
    cells: dict[str, str]
    problems: list[Problem] = field(default_factory=list)

    def problem(self, column: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.source, message, field=column, row=self.line, hint=hint))

    def text(self, column: str, *, required: bool = False, header: bool = True) -> str:
        """The cell, checked for controls. ``header`` fields refuse every control character;
        free text keeps line feeds (a CRLF inside a quoted cell is read as one line feed)."""
        value = self.cells.get(column, "")
        if not value:
            if required:
                self.problem(column, "is empty", "fill it in or remove the row")
            return ""
        if header:
            bad = HEADER_UNSAFE.search(value)
            if bad:
                self.problem(
                    column,
                    f"contains a line break or control character (U+{ord(bad.group()):04X})",
                    "keep this field on one line without control characters",
                )
            return value
        if "\r" in value:
            value = value.replace("\r\n", "\n")
        bad = TEXT_UNSAFE.search(value)
        if bad:
            self.problem(
                column,
                f"contains a control character (U+{ord(bad.group()):04X})",
                "remove it; only line breaks are allowed in this field",
            )
        return value

    def number(self, column: str, lo: int, hi: int, *, required: bool) -> int | None:
        value = self.cells.get(column, "")
        hint = RANGE_HINT.format(lo=lo, hi=hi) + ("" if required else ", or leave it empty")
        if not value:
            if required:
                self.problem(column, "is empty", hint)
            return None
        if value.isascii() and value.isdigit() and lo <= int(value) <= hi:
            return int(value)
        self.problem(column, f"{value!r} is not a whole number from {lo} to {hi}", hint)
        return None

    def flag(self, column: str) -> bool:
        value = self.cells.get(column, "").casefold()
        if value in TRUE:
            return True
        if value not in FALSE:
            self.problem(
                column,
                f"{self.cells[column]!r} is not yes or no",
                "use yes/no, true/false, y/n or 1/0; empty means no",
            )
        return False


def _blank(record: list[str]) -> bool:
    return all(not cell.strip() for cell in record)


@dataclass(slots=True)
class Sheet:
    """A CSV file opened for reading. ``ok`` is False when the header is unusable (the file
    contributes no rows); the reason is already in ``problems``."""

    source: str
    ok: bool
    columns: list[str]
    problems: CappedProblems
    records: Iterator[tuple[int, int, list[str]]]  # (first line, last line, cells)
    count: int = 0  # data records read so far
    max_rows: int = CsvLimits.max_rows

    def rows(self, progress: Callable[[int], None] | None = None) -> Iterator[Row]:
        width = len(self.columns)
        named = [(i, name) for i, name in enumerate(self.columns) if name]
        unnamed = [i for i, name in enumerate(self.columns) if not name]
        for line, end, record in self.records:
            if self.problems.full:  # past the problem cap: count the rest, check nothing
                unchecked = 1 + sum(1 for _ in self.records)
                cap = self.problems.cap
                self.problems.force(stopped(self.source, line, cap, unchecked))
                self.ok = False
                return
            if end > line and _swallowed_rows(record, width):
                self.problems.append(
                    Problem(
                        self.source,
                        f"a quote opened in this row is never closed: lines {line}-{end} were "
                        "read as one cell, so the rows on them were not imported",
                        row=line,
                        hint='close the quote ("...") or remove it',
                    )
                )
                continue
            self.count += 1
            if self.count > self.max_rows:
                self.problems.force(too_many_rows(self.source, line, self.max_rows))
                self.ok = False
                return
            if progress is not None and self.count % PROGRESS_EVERY == 0:
                progress(self.count)
            n = len(record)
            cells = {name: record[i].strip() if i < n else "" for i, name in named}
            row = Row(self.source, line, cells)
            for i in unnamed:
                if i < n and record[i].strip():
                    row.problem(
                        f"column {i + 1}",
                        "has a value but the column has no header",
                        "add a header for this column or remove the value",
                    )
            if n > width and any(cell.strip() for cell in record[width:]):
                row.problem(
                    "",
                    f"the row has {n} cells but the header has {width} columns",
                    "quote values that contain commas, or remove the extra cells",
                )
            yield row


def _records(
    reader: Iterator[list[str]],
    line_num: Callable[[], int],
    source: str,
    problems: list[Problem],
) -> Iterator[tuple[int, int, list[str]]]:
    """(first physical line, last physical line, cells) for every non-blank record."""
    while True:
        start = line_num() + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(
                Problem(source, f"cannot read this row: {exc}", row=start, hint="fix the row")
            )
            continue
        if not _blank(record):
            yield start, line_num(), record


def _swallowed_rows(record: list[str], width: int) -> bool:
    """A quote that was never closed: the csv module reads on (to the next quote, or the end of
    the file) without complaint, so one cell holds whole rows. A cell with a line break followed
    by a line of as many comma-separated cells as the header is taken for that (a quote in
    those lines would have ended the run, so a plain split counts them exactly)."""
    return width > 1 and any(
        len(line.split(",")) >= width
        for cell in record
        if "\n" in cell
        for line in cell.split("\n")[1:]
    )


def open_sheet(
    lines: Iterable[str],
    source: str,
    required: Sequence[str],
    limits: CsvLimits | None = None,
) -> Sheet:
    """Read the header (first non-blank record) and check it; rows are read lazily (limits:
    ``limits``, else those in force, see :mod:`sequencer.core.csvlimits`)."""
    limits = limits or active()
    problems = CappedProblems(source, limits.max_problems)
    reader = csv.reader(lines)
    records = _records(reader, lambda: reader.line_num, source, problems)
    first = next(records, None)
    if first is None:
        hint = f"add a header row: {','.join(required)}"
        problems.force(Problem(source, "the file is empty", row=1, hint=hint))
        return Sheet(source, False, [], problems, iter(()), max_rows=limits.max_rows)
    line, _, header = first
    columns = [cell.strip().lstrip("\ufeff").strip().casefold() for cell in header]
    seen: set[str] = set()
    twice: list[str] = []
    for name in columns:
        if name and name in seen and name not in twice:
            twice.append(name)
        seen.add(name)
    missing = [c for c in required if c not in seen]
    found = ", ".join(c for c in columns if c) or "none"
    if missing:
        problems.force(
            Problem(
                source,
                f"missing required column(s): {', '.join(missing)}",
                row=line,
                hint=f"the header row must name {', '.join(required)}; found: {found}",
            )
        )
    if twice:
        problems.force(
            Problem(
                source,
                f"column(s) named more than once: {', '.join(twice)}",
                row=line,
                hint="give every column a different name",
            )
        )
    if missing or twice:
        return Sheet(source, False, columns, problems, iter(()), max_rows=limits.max_rows)
    return Sheet(source, True, columns, problems, records, max_rows=limits.max_rows)


def first_or_duplicate(row: Row, column: str, key: object, first: dict[object, int]) -> bool:
    """Record ``key`` for a good row; a key seen on an earlier kept row makes this a duplicate."""
    earlier = first.setdefault(key, row.line)
    if earlier == row.line:
        return False
    row.problem(column, f"duplicate of row {earlier}", DUPLICATE_HINT)
    return True


def source_label(path: Path, base: Path | None) -> str:
    """``path`` relative to ``base`` when it is inside it (for messages), else as given."""
    if base is not None:
        for p, b in ((path, base), (path.resolve(), base.resolve())):
            try:
                return str(p.relative_to(b))
            except ValueError:
                pass
    return str(path)


def read_lines(
    path: Path, label: str, limits: CsvLimits | None = None
) -> tuple[Iterable[str], Problem | None]:
    """The file's lines (read as they are used), or no lines and the one problem that stops it
    being read: it cannot be opened, is over the size cap, or is not UTF-8."""
    limits = limits or active()
    try:
        problem = too_big(path, label, limits) or utf8_problem(path, label)
    except OSError as exc:
        why = exc.strerror or str(exc)
        return (), Problem(label, f"cannot read the file: {why}", hint="check the path")
    if problem is not None:
        return (), problem
    return stream_lines(path), None


class Closest:
    """The known name closest to a wrong one: same ignoring case, else difflib's best, else None."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.folded = {n.casefold(): n for n in self.names}
        self.cache: dict[str, str | None] = {}

    def __call__(self, wrong: str) -> str | None:
        if wrong not in self.cache:
            guess = self.folded.get(wrong.casefold())
            if guess is None and len(self.names) <= MAX_FUZZY:
                close = get_close_matches(wrong, self.names, n=1)
                guess = close[0] if close else None
            self.cache[wrong] = guess
        return self.cache[wrong]
