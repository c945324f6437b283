"""Blank CSV cells that a template prints with no fallback, as problems of the rows they are in.

The render check renders each enrollment while :func:`sequencer.core.blanks.tracking` is on;
each blank variable printed becomes a :class:`BlankCell` of the CSV row it came from (the
prospect's, the referrer's or the referral's), reported as::

    prospects.csv: row 4: industry: is empty, and .../cold_intro/body.txt:3 prints it with no
    fallback (fill it in, or write {{ prospect.industry|fallback('...') }} in the template)

Every row is reported (one line per row, variable and template line), up to
``REFSEQ_CSV_MAX_PROBLEMS`` lines; the rest are counted in one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sequencer.core.blanks import Use
from sequencer.core.csvlimits import CsvLimits
from sequencer.core.csvrows import source_label
from sequencer.core.model import CampaignSpec
from sequencer.core.plan import PlannedEnrollment
from sequencer.errors import Problem


class BlankCell(NamedTuple):
    source: str  # the CSV file, as in its other problems
    row: int
    variable: str  # prospect.industry
    template: str  # the template file's path
    line: int | None
    email: str  # the prospect's


def data_rows(spec: CampaignSpec, planned: PlannedEnrollment) -> dict[str, tuple[str, int]]:
    """Where the data of each tracked context mapping comes from: (CSV file, row)."""
    base = spec.source.parent
    d = spec.data
    return {
        "prospect": (source_label(d.prospects, base), planned.prospect.row),
        "referrer": (source_label(d.referrers, base), planned.path.referrer.row),
        "referral": (source_label(d.referrals, base), planned.path.referral.row),
    }


def blank_cells(
    printed: Iterable[Use], rows: dict[str, tuple[str, int]], email: str = ""
) -> list[BlankCell]:
    out: list[BlankCell] = []
    for use in dict.fromkeys(printed):  # once per variable and template line
        mapping = use.variable.split(".", 1)[0]
        source, row = rows.get(mapping, ("", 0))
        out.append(BlankCell(source, row, use.variable, use.filename, use.line, email))
    return out


class BlankCells:
    """Collects the blank cells of a check; one problem per (row, variable, template line)."""

    def __init__(self, limits: CsvLimits | None = None) -> None:
        self.cap = (limits or CsvLimits.from_env()).max_problems
        self.seen: dict[tuple[str, int, str, str, int | None], None] = {}
        self.more = 0

    def add(self, cell: BlankCell) -> None:
        key = (cell.source, cell.row, cell.variable, cell.template, cell.line)
        if key in self.seen:
            return
        if len(self.seen) < self.cap:
            self.seen[key] = None
        else:
            self.more += 1

    def problems(self) -> list[Problem]:
        out = [_problem(*key) for key in sorted(self.seen, key=_order)]
        if self.more:
            out.append(
                Problem(
                    "templates",
                    f"... and {self.more} more blank cell(s) printed with no fallback (only "
                    f"the first {self.cap} are listed)",
                    hint="REFSEQ_CSV_MAX_PROBLEMS sets how many are listed",
                )
            )
        return out


def _order(key: tuple[str, int, str, str, int | None]) -> tuple[str, int, str, str, int]:
    source, row, variable, template, line = key
    return source, row, variable, template, line or 0


def _problem(source: str, row: int, variable: str, template: str, line: int | None) -> Problem:
    column = variable.split(".", 1)[-1]
    where = f"{template}:{line}" if line is not None else template or "a template"
    return Problem(
        source or "templates",
        f"is empty, and {where} prints it with no fallback",
        field=column,
        row=row or None,
        hint=f"fill it in, or write {{{{ {variable}|fallback('...') }}}} in the template",
    )
