"""Pytest plugin: the figures behind ``docs/reliability.md``.

A fault or bad-input test asks for the ``reliability`` fixture and records what it tried and what
it counted, *before* asserting on it::

    @pytest.mark.reliability
    def test_worker_killed(reliability, ...):
        ...
        reliability.record("workers", "SIGKILL of the embedded runner mid-run",
                           trials=rounds, duplicates=dupes, lost=lost, wrong_sends=0,
                           outcome="every draft sent or needs_attention")
        assert dupes == 0 and lost == 0

The test's own assertions are the proof; the record is the published figure. When
``REFSEQ_RELIABILITY_LOG`` names a file, every record is appended to it as a JSON line together
with the test's result (passed/failed), which ``python -m tests.reliability_report`` turns into
the table. ``soak_rounds(ci, soak)`` is how many repetitions a test should run: ``ci`` normally,
``soak`` when ``REFSEQ_SOAK=1`` (the long variant, ``make reliability ARGS=--soak``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

LOG_ENV = "REFSEQ_RELIABILITY_LOG"
SOAK_ENV = "REFSEQ_SOAK"


def soaking() -> bool:
    return os.environ.get(SOAK_ENV, "") not in ("", "0")


def soak_rounds(ci: int, soak: int) -> int:
    """Repetitions for a fault test: ``ci`` in the normal suite, ``soak`` in the soak run."""
    return soak if soaking() else ci


@dataclass
class Record:
    area: str
    fault: str
    trials: int
    duplicates: int
    lost: int
    wrong_sends: int
    outcome: str
    test: str
    result: str = "unknown"


@dataclass
class Recorder:
    test: str
    records: list[Record] = field(default_factory=list)

    def record(
        self,
        area: str,
        fault: str,
        *,
        trials: int = 1,
        duplicates: int = 0,
        lost: int = 0,
        wrong_sends: int = 0,
        outcome: str = "",
    ) -> None:
        """Add one row: ``area`` (workers, broker, database, smtp, imap, races, yaml, csv,
        templates, inbound, web, property), what was tried, how often, and what was counted."""
        if trials < 1:
            raise ValueError("a reliability row needs at least one trial")
        self.records.append(
            Record(area, fault, trials, duplicates, lost, wrong_sends, outcome, self.test)
        )


_RECORDERS: dict[str, Recorder] = {}
_RESULTS: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability: a fault or bad-input test whose figures go to docs/reliability.md"
    )


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Recorder:
    return _RECORDERS.setdefault(request.node.nodeid, Recorder(request.node.nodeid))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.failed:
        previous = _RESULTS.get(report.nodeid)
        if previous != "failed":
            _RESULTS[report.nodeid] = report.outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        for nodeid, recorder in _RECORDERS.items():
            for rec in recorder.records:
                rec.result = _RESULTS.get(nodeid, "unknown")
                row: dict[str, Any] = asdict(rec)
                out.write(json.dumps(row) + "\n")
