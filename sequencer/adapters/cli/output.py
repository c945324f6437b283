"""Terminal output: aligned rich tables for people, JSON/CSV for machines, one line per error."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# Piped output is not squeezed into 80 columns: tables stay one row per line for grep and less.
# Everything printed holds user data (names, subjects, bodies, CSV cells), so rich interprets
# none of it: no console markup ("[bold]"), no emoji codes (":x:"), no highlighting.
out = Console(
    soft_wrap=True,
    width=None if sys.stdout.isatty() else 200,
    markup=False,
    emoji=False,
    highlight=False,
)
err = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    out.print(t)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_default, ensure_ascii=False) + "\n")


# A text cell starting with one of these is a formula to Excel, LibreOffice and Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Text from the campaign's data that looks like a formula is written with a leading
    apostrophe, so opening the export in a spreadsheet shows it instead of running it."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def emit_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    w.writerows([_cell(v) for v in row] for row in rows)
    sys.stdout.write(buf.getvalue())


def problem(line: str) -> None:
    err.print(line, markup=False, highlight=False)


@contextmanager
def progress_bar(label: str, total: int | None, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr; yields ``update(done)``. Silent when not a terminal."""
    if not enabled or total is None or total < 2000 or not err.is_terminal:
        yield lambda done: None
        return
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)
