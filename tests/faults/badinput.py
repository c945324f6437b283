"""Shared helpers for the bad-input catalogue (``tests/faults/test_bad_*.py``).

A catalogue case is a broken input, the clear error it must produce (and where: file:line:col,
CSV row and column, template file:line) and the proof that nothing was written or sent:

* :class:`Sandbox` is the example campaign rewritten so that everything it enrolls is drafted,
  auto-approved and *sent at once* to a real SMTP sink (every day open 00:00-23:59 UTC, no gap
  between sends). A bad input that slipped through would therefore reach the sink on the first
  ``refseq tick``.
* :meth:`Sandbox.refused` runs the real CLI (``validate``, ``launch``, ``tick``) against the real
  database and checks the exit codes, the messages, that every table's row count is unchanged
  and that the sink received nothing.
* :func:`row_counts` counts the rows of every table (the schema as migrated, not a list kept
  here, so a new table is covered too).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from tests.cli_helpers import NOW, Cli, init_example
from tests.smtp_sink import Sink

#: The sandbox's tick: Monday 2026-11-23 20:00 UTC, inside its all-day window.
TICK = NOW


def row_counts(db_url: str) -> dict[str, int]:
    """Rows in every table of the migrated schema (``alembic_version`` left out)."""
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            names = sorted(inspect(connection).get_table_names())
            return {
                name: int(connection.scalar(text(f'SELECT count(*) FROM "{name}"')) or 0)
                for name in names
                if name != "alembic_version"
            }
    finally:
        engine.dispose()


def snapshot(db_url: str) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, as text, in a stable order: "nothing changed" means equal."""
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            names = sorted(inspect(connection).get_table_names())
            return {
                name: sorted(
                    tuple(str(v) for v in row)
                    for row in connection.execute(text(f'SELECT * FROM "{name}"'))
                )
                for name in names
                if name != "alembic_version"
            }
    finally:
        engine.dispose()


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


@dataclass
class Outcome:
    """What the CLI said about a refused input."""

    validate: list[str]  # stderr lines of `refseq validate`
    launch: list[str]  # stderr lines of `refseq launch`
    seconds: float  # wall time of validate + launch (reported, never asserted)


class Sandbox:
    """The example campaign in ``folder``, wired to ``sink``, sending as soon as it is launched."""

    def __init__(self, db_url: str, folder: Path, sink: Sink) -> None:
        self.db_url = db_url
        self.sink = sink
        self.cli = Cli(db_url, folder.parent)
        self.yaml = init_example(self.cli, folder)
        self.dir = self.yaml.parent
        spec = self.yaml.read_text(encoding="utf-8")
        spec = spec.replace("port: 2525", f"port: {sink.port}")
        spec = spec.replace("min_gap: 90s", "min_gap: 0s").replace(
            "daily_cap: 150", "daily_cap: 1000"
        )
        spec = spec.replace("timezone: prospect", "timezone: UTC")
        spec = spec.replace(
            'days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"',
            'days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"',
        )
        spec = re.sub(r"approval: required", "approval: auto", spec)
        self.yaml.write_text(spec, encoding="utf-8")
        self.good_yaml = spec

    # ------------------------------------------------------------------ files

    def csv(self, name: str) -> Path:
        return self.dir / f"{name}.csv"

    def read_csv(self, name: str) -> str:
        return self.csv(name).read_text(encoding="utf-8-sig")

    def write_csv(self, name: str, content: str | bytes) -> None:
        if isinstance(content, bytes):
            self.csv(name).write_bytes(content)
        else:
            self.csv(name).write_text(content, encoding="utf-8")

    def edit_yaml(self, old: str, new: str) -> str:
        spec = self.yaml.read_text(encoding="utf-8")
        assert old in spec, f"{old!r} is not in the sandbox campaign"
        spec = spec.replace(old, new, 1)
        self.yaml.write_text(spec, encoding="utf-8")
        return spec

    def line_of(self, needle: str) -> int:
        """1-based line of the first line containing ``needle`` in the campaign file."""
        for i, line in enumerate(self.yaml.read_text(encoding="utf-8").splitlines(), 1):
            if needle in line:
                return i
        raise AssertionError(f"{needle!r} not in the campaign file")

    def template(self, name: str, subject: str, body: str, html: str | None = None) -> Path:
        """An override template folder ``tpl/<name>`` (the campaign's ``templates:`` dir)."""
        folder = self.dir / "tpl" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "subject.txt").write_text(subject, encoding="utf-8")
        (folder / "body.txt").write_text(body, encoding="utf-8")
        if html is not None:
            (folder / "body.html").write_text(html, encoding="utf-8")
        spec = self.yaml.read_text(encoding="utf-8")
        if "\ntemplates: tpl\n" not in spec:
            self.yaml.write_text(spec + "templates: tpl\n", encoding="utf-8")
        return folder

    # ------------------------------------------------------------------ running

    def tick(self, now: str = TICK) -> Any:
        """One pass of the workers' job (sweep, poll/process, draft, send) through the CLI."""
        return self.cli.json("tick", "--now", now)

    def refused(self, *, launch_code: int = 1) -> Outcome:
        """``validate`` and ``launch`` both fail (exit 1), ``launch`` says nothing was changed,
        a ``tick`` afterwards sends nothing, and no table gained or lost a row."""
        before = row_counts(self.db_url)
        started = time.monotonic()
        validate = self.cli("validate", str(self.yaml), code=1).stderr.splitlines()
        launch = self.cli("launch", str(self.yaml), "--now", TICK, code=launch_code)
        seconds = time.monotonic() - started
        launch_lines = launch.stderr.splitlines()
        assert launch_lines and launch_lines[-1].endswith("nothing was changed."), launch_lines
        self.tick()
        assert row_counts(self.db_url) == before, "a refused campaign changed the database"
        assert self.sink.handler.received == [], "a refused campaign sent mail"
        return Outcome(validate, launch_lines, seconds)

    def launched(self) -> dict[str, Any]:
        """``launch --json`` (must succeed); returns its report."""
        report: dict[str, Any] = self.cli.json("launch", str(self.yaml), "--now", TICK)
        return report

    def recipients(self) -> list[str]:
        return sorted(r for m in self.sink.handler.received for r in m.rcpt_tos)

    def sent_to(self, address: str) -> int:
        folded = address.casefold()
        return sum(r.casefold() == folded for m in self.sink.handler.received for r in m.rcpt_tos)


def first_problem(lines: Sequence[str]) -> str:
    """The first error line (warnings skipped)."""
    for line in lines:
        if not line.startswith("warning: "):
            return line
    raise AssertionError(f"no error line in {lines!r}")
