"""CSV files are read within limits: size, rows and problems (through the real CLI).

* 20 MB of junk as prospects.csv: `refseq validate` (the entry point, in a subprocess under
  RLIMIT_AS) stops checking after 100 problems, says how many rows it did not check, prints
  about a hundred lines, in seconds and a few tens of MB (it took minutes, GBs and millions
  of lines).
* A file over REFSEQ_CSV_MAX_BYTES, or with more rows than REFSEQ_CSV_MAX_ROWS, is refused
  with a clear error; the launch changes nothing.
* Problems found across files (referrals to unknown prospects) are listed up to the cap, then
  counted in one line.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.cli_helpers import NOW, Cli, init_example
from tests.faults.badinput import nonzero, row_counts
from tests.faults.limited import REFSEQ, run_limited

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
HEADER = "email,first_name,last_name,title,company,timezone,industry\n"


def _junk(path: Path, size: int) -> int:
    rng = random.Random(7)
    rows = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write(HEADER)
        written = len(HEADER)
        while written < size:
            line = "".join(rng.choice("abcdefghij,xyz0123456789@. ") for _ in range(30)) + "\n"
            written += fh.write(line)
            rows += 1
    return rows


def test_junk_csv_is_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    cli = Cli(f"sqlite:///{tmp_path}/refseq.db", tmp_path)
    yaml = init_example(cli, tmp_path / "camp")
    rows = _junk(yaml.with_name("prospects.csv"), 20_000_000)
    env = {**os.environ, "REFSEQ_DATABASE_URL": f"sqlite:///{tmp_path}/refseq.db"}
    assert REFSEQ.exists()

    code, stderr, peak_mb, seconds = run_limited(["validate", str(yaml)], env, timeout=60)

    lines = stderr.splitlines()
    assert code == 1, stderr[-2000:]
    assert len(lines) < 120, len(lines)
    stop = [line for line in lines if "the file was not checked past this row" in line]
    assert len(stop) == 1, lines[-5:]
    checked = sum(line.startswith("prospects.csv: row ") for line in lines) - 1
    unchecked = int(stop[0].split("(")[1].split(" more row")[0].replace(",", ""))
    assert 0 < unchecked < rows and checked <= 100
    assert "more than 100 problems" in stop[0]
    assert peak_mb < 250, f"validate peaked at {peak_mb:.0f} MB"
    assert seconds < 45, f"validate took {seconds:.1f}s"


@SQLITE_ONLY
def test_a_file_over_the_size_cap_is_refused(db_url: str, tmp_path: Path) -> None:
    cli = Cli(db_url, tmp_path)
    yaml = init_example(cli, tmp_path / "camp")
    size = yaml.with_name("prospects.csv").stat().st_size
    cli.env["REFSEQ_CSV_MAX_BYTES"] = "300"
    lines = cli("validate", str(yaml), code=1).stderr.splitlines()
    assert lines[0] == (
        f"prospects.csv: the file is {size:,} bytes, more than the limit of 300 "
        "(split the campaign, or raise REFSEQ_CSV_MAX_BYTES)"
    ), lines
    before = row_counts(db_url)
    cli("launch", str(yaml), "--now", NOW, code=1)
    assert nonzero(row_counts(db_url)) == nonzero(before)


@SQLITE_ONLY
def test_a_file_over_the_row_cap_is_refused(db_url: str, tmp_path: Path) -> None:
    cli = Cli(db_url, tmp_path)
    yaml = init_example(cli, tmp_path / "camp")
    cli.env["REFSEQ_CSV_MAX_ROWS"] = "4"
    lines = cli("validate", str(yaml), code=1).stderr.splitlines()
    assert lines[0] == (
        "prospects.csv: row 6: the file has more than 4 data rows; it was not read past this "
        "row (split the campaign, or raise REFSEQ_CSV_MAX_ROWS)"
    ), lines
    before = row_counts(db_url)
    cli("launch", str(yaml), "--now", NOW, code=1)
    assert nonzero(row_counts(db_url)) == nonzero(before)


@SQLITE_ONLY
def test_cross_file_problems_are_listed_up_to_the_cap(db_url: str, tmp_path: Path) -> None:
    cli = Cli(db_url, tmp_path)
    yaml = init_example(cli, tmp_path / "camp")
    referrals = yaml.with_name("referrals.csv")
    extra = "".join(f"james-hervin,nobody{i}@x.example,3,\n" for i in range(250))
    referrals.write_text(referrals.read_text(encoding="utf-8") + extra, encoding="utf-8")
    lines = cli("validate", str(yaml), code=1).stderr.splitlines()
    listed = [line for line in lines if line.startswith("referrals.csv: row ")]
    assert len(listed) == 100, len(listed)
    assert "referrals.csv: ... and 150 more problem(s) in this file" in lines[-2], lines[-3:]
    cli.env["REFSEQ_CSV_MAX_PROBLEMS"] = "300"
    lines = cli("validate", str(yaml), code=1).stderr.splitlines()
    assert sum(line.startswith("referrals.csv: row ") for line in lines) == 250
