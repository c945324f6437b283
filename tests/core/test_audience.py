"""Loading prospects.csv / referrers.csv / referrals.csv into an Audience."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from sequencer.core.audience import (
    InvalidEmail,
    load_audience,
    normalize_email,
    parse_prospects,
    parse_referrals,
    parse_referrers,
)
from sequencer.core.model import Prospect, Referral, Referrer

PROSPECTS = "email,first_name,last_name,title,company,timezone\n"
REFERRERS = "id,name,our_strength\n"
REFERRALS = "referrer_id,prospect_email,strength\n"


def lines(text: str) -> io.StringIO:
    return io.StringIO(text, newline="")


def rendered(problems) -> list[str]:
    return [p.render() for p in problems]


def prospects(text: str):
    return parse_prospects(lines(text), "prospects.csv")


def referrers(text: str):
    return parse_referrers(lines(text), "referrers.csv")


def referrals(text: str):
    return parse_referrals(lines(text), "referrals.csv")


def write(tmp_path: Path, p: str, r: str, f: str, encoding: str = "utf-8") -> tuple[Path, ...]:
    paths = tuple(tmp_path / n for n in ("prospects.csv", "referrers.csv", "referrals.csv"))
    for path, text in zip(paths, (p, r, f), strict=True):
        path.write_text(text, encoding=encoding, newline="")
    return paths


def load(tmp_path: Path, p: str, r: str, f: str):
    return load_audience(*write(tmp_path, p, r, f), label_base=tmp_path)


# --- good input -------------------------------------------------------------------------------


def test_it_parses_prospects_with_custom_fields_and_messy_headers():
    text = (
        " Email ,FIRST_NAME,Last_Name,title,company,TimeZone,Lead Source,Deal Size\r\n"
        "  Ann@Example.COM , Ann ,Lee,CTO,Acme,Europe/Berlin, Webinar ,10k\r\n"
        "\r\n"
        "bob@acme.io,Bob,,,,,,\r\n"
    )
    kept, problems, excluded = prospects(text)
    assert problems == []
    assert excluded == []
    assert kept == [
        Prospect(
            "Ann@example.com",
            "Ann",
            "Lee",
            "CTO",
            "Acme",
            "Europe/Berlin",
            {"lead source": "Webinar", "deal size": "10k"},
            row=2,
        ),
        Prospect("bob@acme.io", "Bob", "", "", "", "", {"lead source": "", "deal size": ""}, row=4),
    ]


def test_it_parses_referrers_with_every_column():
    text = (
        "id,name,email,title,company,is_customer,nps,our_strength,our_context,consent\n"
        'r1,Rita Ray,Rita@Ray.ORG,VP Sales,Rayco,Yes,9,5,"Met at SaaStr\nclosed a deal",y\n'
        "r2,Sam Stone,,,,,,1,,\n"
        "r3,Tom,,,,0,0,3,,TRUE\n"
    )
    kept, problems, excluded = referrers(text)
    assert problems == []
    assert excluded == []
    assert kept == [
        Referrer(
            "r1",
            "Rita Ray",
            "Rita@ray.org",
            "VP Sales",
            "Rayco",
            True,
            9,
            5,
            "Met at SaaStr\nclosed a deal",
            True,
            row=2,
        ),
        Referrer("r2", "Sam Stone", "", "", "", False, None, 1, "", False, row=4),
        Referrer("r3", "Tom", "", "", "", False, 0, 3, "", True, row=5),
    ]


def test_it_parses_referrals_and_reads_crlf_inside_a_context_as_a_line_feed():
    text = (
        "referrer_id,prospect_email,strength,context\r\n"
        'r1,Ann@Example.com,4,"Worked\r\ntogether"\r\n'
    )
    kept, problems, _ = referrals(text)
    assert problems == []
    assert kept == [Referral("r1", "Ann@example.com", 4, "Worked\ntogether", row=2)]


def test_it_loads_three_files_with_an_excel_bom_and_labels_relative_to_the_base(tmp_path):
    paths = write(
        tmp_path,
        PROSPECTS + "ann@example.com,Ann,Lee,CTO,Acme,\n",
        "id,name,our_strength,email\nr1,Rita,5,rita@ray.org\n",
        REFERRALS + "r1,ANN@example.com,3\n",
        encoding="utf-8-sig",
    )
    assert paths[0].read_bytes().startswith(b"\xef\xbb\xbf")
    calls: list[int] = []
    result = load_audience(*paths, label_base=tmp_path, progress=calls.append)
    assert result.problems == []
    assert result.excluded == []
    assert [p.email for p in result.audience.prospects] == ["ann@example.com"]
    assert list(result.audience.referrers) == ["r1"]
    assert result.audience.referrals == (Referral("r1", "ANN@example.com", 3, "", row=2),)
    assert calls == [3]


def test_it_reports_progress_every_thousand_rows(tmp_path):
    body = "".join(f"p{i}@example.com,P{i},,,,\n" for i in range(2500))
    calls: list[int] = []
    result = load_audience(
        *write(tmp_path, PROSPECTS + body, REFERRERS, REFERRALS), progress=calls.append
    )
    assert len(result.audience.prospects) == 2500
    assert calls == [1000, 2000, 2500]


# --- bad prospects ----------------------------------------------------------------------------


def test_it_reports_a_bad_email_and_keeps_the_good_rows():
    kept, problems, excluded = prospects(
        PROSPECTS + "ann@example.com,Ann,,,,\nbob.example.com,Bob,,,,\n"
    )
    assert rendered(problems) == [
        "prospects.csv: row 3: email: An email address must have an @-sign. "
        "(fix the address or remove the row)"
    ]
    assert [p.email for p in kept] == ["ann@example.com"]
    assert excluded == [("bob.example.com", 3, "prospects.csv", "invalid")]


def test_it_reports_empty_required_cells():
    kept, problems, _ = prospects(
        PROSPECTS + ",Ann,,,,\nbob@example.com,,,,,\ncy@example.com,Cy,,,,\n"
    )
    assert rendered(problems) == [
        "prospects.csv: row 2: email: is empty (fill it in or remove the row)",
        "prospects.csv: row 3: first_name: is empty (fill it in or remove the row)",
    ]
    assert [p.email for p in kept] == ["cy@example.com"]


def test_it_drops_a_duplicate_email_and_keeps_the_first():
    kept, problems, excluded = prospects(
        PROSPECTS + "ann@example.com,Ann,,,,\nbob@example.com,Bob,,,,\nANN@EXAMPLE.com,Annie,,,,\n"
    )
    assert rendered(problems) == [
        "prospects.csv: row 4: email: duplicate of row 2 (the first row is used; remove this one)"
    ]
    assert [(p.first_name, p.row) for p in kept] == [("Ann", 2), ("Bob", 3)]
    assert excluded == [("ANN@EXAMPLE.com", 4, "prospects.csv", "duplicate")]


def test_it_rejects_an_unknown_timezone_with_a_suggestion():
    kept, problems, _ = prospects(
        PROSPECTS
        + "ann@example.com,Ann,,,,America/New York\n"
        + "bob@example.com,Bob,,,,Mars/Olympus_Mons_Base\n"
        + "cy@example.com,Cy,,,,Asia/Tokyo\n"
    )
    assert rendered(problems) == [
        "prospects.csv: row 2: timezone: 'America/New York' is not a known IANA time zone "
        "(did you mean America/New_York?)",
        "prospects.csv: row 3: timezone: 'Mars/Olympus_Mons_Base' is not a known IANA time zone "
        "(use an IANA name such as America/New_York, or leave it empty)",
    ]
    assert [p.timezone for p in kept] == ["Asia/Tokyo"]


@pytest.mark.parametrize(
    ("cell", "column", "code"),
    [
        ('"Ann\nMarie"', "first_name", "000A"),
        ('"Ann\rMarie"', "first_name", "000D"),
        ("Ann\tMarie", "first_name", "0009"),
        ("Ann\x00", "first_name", "0000"),
        ("Ann\u2028Marie", "first_name", "2028"),
    ],
)
def test_it_rejects_line_breaks_and_controls_in_header_fields(cell, column, code):
    kept, problems, _ = prospects(
        PROSPECTS + f"ann@example.com,{cell},,,,\nbob@example.com,Bob,,,,\n"
    )
    assert rendered(problems) == [
        f"prospects.csv: row 2: {column}: contains a line break or control character (U+{code}) "
        "(keep this field on one line without control characters)"
    ]
    assert [p.email for p in kept] == ["bob@example.com"]


def test_it_rejects_control_characters_in_custom_fields_and_company():
    text = (
        "email,first_name,company,pain\n"
        'ann@example.com,Ann,"Acme\r\nInc",x\n'
        'bob@example.com,Bob,B,"a\nb"\n'
    )
    kept, problems, _ = prospects(text)
    assert rendered(problems) == [
        "prospects.csv: row 2: company: contains a line break or control character (U+000D) "
        "(keep this field on one line without control characters)",
        "prospects.csv: row 4: pain: contains a line break or control character (U+000A) "
        "(keep this field on one line without control characters)",
    ]
    assert kept == []


def test_it_numbers_rows_by_physical_line_when_a_quoted_cell_spans_lines():
    text = PROSPECTS + 'ann@example.com,Ann,"two\nlines",,,\nbad,Bob,,,,\n'
    _, problems, _ = prospects(text)
    assert [p.row for p in problems] == [2, 4]


def test_it_reports_a_row_with_more_cells_than_the_header():
    kept, problems, _ = prospects(
        "email,first_name,company\nann@example.com,Ann,Acme, Inc.\nbob@example.com,Bob,B,\n"
    )
    assert rendered(problems) == [
        "prospects.csv: row 2: the row has 4 cells but the header has 3 columns "
        "(quote values that contain commas, or remove the extra cells)"
    ]
    # a trailing empty cell (as spreadsheets write) is harmless
    assert [p.email for p in kept] == ["bob@example.com"]


def test_it_reports_a_value_under_a_column_without_a_header():
    kept, problems, _ = prospects(
        "email,,first_name\nann@example.com,x,Ann\nbob@example.com,,Bob\n"
    )
    assert rendered(problems) == [
        "prospects.csv: row 2: column 2: has a value but the column has no header "
        "(add a header for this column or remove the value)"
    ]
    assert [p.email for p in kept] == ["bob@example.com"]
    assert kept[0].custom == {}


def test_it_reports_missing_header_columns_once_and_reads_no_rows():
    kept, problems, excluded = prospects("E-mail,Name,company\nann@example.com,Ann,A\n")
    assert rendered(problems) == [
        "prospects.csv: row 1: missing required column(s): email, first_name "
        "(the header row must name email, first_name; found: e-mail, name, company)"
    ]
    assert kept == []
    assert excluded == []


def test_it_reports_a_column_named_twice():
    kept, problems, _ = prospects("email,first_name,Email\nann@example.com,Ann,x\n")
    assert rendered(problems) == [
        "prospects.csv: row 1: column(s) named more than once: email "
        "(give every column a different name)"
    ]
    assert kept == []


def test_it_reports_an_empty_file():
    _, problems, _ = prospects("\n\n")
    assert rendered(problems) == [
        "prospects.csv: row 1: the file is empty (add a header row: email,first_name)"
    ]


def test_it_reports_a_file_that_is_not_utf8_naming_the_row(tmp_path):
    paths = write(tmp_path, "", REFERRERS, REFERRALS)
    paths[0].write_bytes(
        (PROSPECTS + "ann@example.com,Ann,,,,\n").encode()
        + "zoe@example.com,Zoë,,,,\n".encode("cp1252")
    )
    result = load_audience(*paths, label_base=tmp_path)
    assert rendered(result.problems) == [
        "prospects.csv: row 3: the file is not UTF-8 text (byte 0xeb on this row) "
        "(save the file as UTF-8)"
    ]
    assert result.audience.prospects == ()


def test_it_reports_a_missing_file(tmp_path):
    paths = write(tmp_path, PROSPECTS, REFERRERS, REFERRALS)
    paths[1].unlink()
    result = load_audience(*paths, label_base=tmp_path)
    assert rendered(result.problems) == [
        "referrers.csv: cannot read the file: No such file or directory (check the path)"
    ]


# --- bad referrers ----------------------------------------------------------------------------


def test_it_reports_bad_referrer_cells_and_keeps_the_good_rows():
    text = (
        "id,name,email,is_customer,nps,our_strength,our_context,consent\n"
        "r1,Rita,,yes,,5,,no\n"
        ",Nobody,,,,3,,\n"
        "r2,,,,,3,,\n"
        "r3,Sam,sam@,,,3,,\n"
        "r4,Tom,,maybe,,3,,\n"
        "r5,Uma,,,11,3,,\n"
        "r6,Vic,,,,high,,\n"
        "r7,Wes,,,,0,,\n"
        "r8,Xia,,,,,,\n"
        'r9,Yan,,,,3,"tab\there",\n'
        'r10,Zed,,,,3,"cr\rhere",sure\n'
        "r1,Rita again,,,,4,,\n"
        '"r11","Al\nBundy",,,,2,,\n'
    )
    kept, problems, excluded = referrers(text)
    assert rendered(problems) == [
        "referrers.csv: row 3: id: is empty (fill it in or remove the row)",
        "referrers.csv: row 4: name: is empty (fill it in or remove the row)",
        "referrers.csv: row 5: email: There must be something after the @-sign. "
        "(fix the address or leave it empty)",
        "referrers.csv: row 6: is_customer: 'maybe' is not yes or no "
        "(use yes/no, true/false, y/n or 1/0; empty means no)",
        "referrers.csv: row 7: nps: '11' is not a whole number from 0 to 10 "
        "(use a whole number from 0 to 10, or leave it empty)",
        "referrers.csv: row 8: our_strength: 'high' is not a whole number from 1 to 5 "
        "(use a whole number from 1 to 5)",
        "referrers.csv: row 9: our_strength: '0' is not a whole number from 1 to 5 "
        "(use a whole number from 1 to 5)",
        "referrers.csv: row 10: our_strength: is empty (use a whole number from 1 to 5)",
        "referrers.csv: row 11: our_context: contains a control character (U+0009) "
        "(remove it; only line breaks are allowed in this field)",
        "referrers.csv: row 12: our_context: contains a control character (U+000D) "
        "(remove it; only line breaks are allowed in this field)",
        "referrers.csv: row 12: consent: 'sure' is not yes or no "
        "(use yes/no, true/false, y/n or 1/0; empty means no)",
        # a lone \r inside a quoted cell counts as a line break, as in the reader's line_num
        "referrers.csv: row 14: id: duplicate of row 2 (the first row is used; remove this one)",
        "referrers.csv: row 15: name: contains a line break or control character (U+000A) "
        "(keep this field on one line without control characters)",
    ]
    assert [(r.id, r.name, r.is_customer) for r in kept] == [("r1", "Rita", True)]
    assert excluded[0] == ("", 3, "referrers.csv", "invalid")
    assert excluded[-2] == ("r1", 14, "referrers.csv", "duplicate")
    assert len(excluded) == 12


# --- bad referrals ----------------------------------------------------------------------------


def test_it_reports_bad_referral_cells_and_duplicate_pairs():
    text = (
        "referrer_id,prospect_email,strength,context\n"
        "r1,ann@example.com,5,\n"
        "r1,ann@,5,\n"
        ",ann@example.com,5,\n"
        "r1,bob@example.com,9,\n"
        "r1,ANN@example.com,2,\n"
        'r1,cy@example.com,3,"bell\x07"\n'
    )
    kept, problems, excluded = referrals(text)
    assert rendered(problems) == [
        "referrals.csv: row 3: prospect_email: There must be something after the @-sign. "
        "(fix the address or remove the row)",
        "referrals.csv: row 4: referrer_id: is empty (fill it in or remove the row)",
        "referrals.csv: row 5: strength: '9' is not a whole number from 1 to 5 "
        "(use a whole number from 1 to 5)",
        "referrals.csv: row 6: prospect_email: duplicate of row 2 "
        "(the first row is used; remove this one)",
        "referrals.csv: row 7: context: contains a control character (U+0007) "
        "(remove it; only line breaks are allowed in this field)",
    ]
    assert kept == [Referral("r1", "ann@example.com", 5, "", row=2)]
    assert excluded[3] == ("ANN@example.com", 6, "referrals.csv", "duplicate")


# --- cross-file checks ------------------------------------------------------------------------


def test_it_cross_checks_referrals_against_referrers_and_prospects(tmp_path):
    result = load(
        tmp_path,
        PROSPECTS
        + "ann@example.com,Ann,,,,\n"
        + "rita@ray.org,Rita,,,,\n"
        + "bob@example.com,Bob,,,,Nowhere/Land\n",
        "id,name,our_strength,email\n"
        + "rita,Rita,5,Rita@Ray.org\n"
        + "sam,Sam,4,\n"
        + "tom,Tom,9,\n",
        REFERRALS
        + "rita,ann@example.com,4\n"  # good
        + "Rita,ann@example.com,4\n"  # unknown id, case-insensitive match
        + "samm,ann@example.com,4\n"  # unknown id, close match
        + "zzz-unknown,ann@example.com,4\n"  # unknown id, no match
        + "sam,nobody@example.com,4\n"  # unknown prospect
        + "rita,RITA@ray.org,4\n"  # referrer is the prospect
        + "tom,ann@example.com,4\n"  # referrer left out
        + "sam,bob@example.com,4\n"  # prospect left out
        + "sam,ann@example.com,2\n",  # good
    )
    problems = [p.render() for p in result.problems]
    assert problems == [
        "prospects.csv: row 4: timezone: 'Nowhere/Land' is not a known IANA time zone "
        "(use an IANA name such as America/New_York, or leave it empty)",
        "referrers.csv: row 4: our_strength: '9' is not a whole number from 1 to 5 "
        "(use a whole number from 1 to 5)",
        "referrals.csv: row 3: referrer_id: no referrer with id 'Rita' in referrers.csv "
        "(did you mean 'rita'?)",
        "referrals.csv: row 4: referrer_id: no referrer with id 'samm' in referrers.csv "
        "(did you mean 'sam'?)",
        "referrals.csv: row 5: referrer_id: no referrer with id 'zzz-unknown' in referrers.csv "
        "(add the referrer or fix the id)",
        "referrals.csv: row 6: prospect_email: no prospect with this email in prospects.csv "
        "(add the prospect to prospects.csv or fix the address)",
        "referrals.csv: row 7: prospect_email: the referrer is the prospect "
        "(a person cannot refer themselves; remove the row)",
        "referrals.csv: row 8: referrer_id: referrer 'tom' was left out: referrers.csv row 4 "
        "has problems (fix that row first)",
        "referrals.csv: row 9: prospect_email: the prospect was left out: prospects.csv row 4 "
        "has problems (fix that row first)",
    ]
    assert result.audience.referrals == (
        Referral("rita", "ann@example.com", 4, "", row=2),
        Referral("sam", "ann@example.com", 2, "", row=10),
    )
    assert sorted(result.audience.referrers) == ["rita", "sam"]
    assert [e for e in result.excluded if e[2] == "referrals.csv"] == [
        ("ann@example.com", 3, "referrals.csv", "invalid"),
        ("ann@example.com", 4, "referrals.csv", "invalid"),
        ("ann@example.com", 5, "referrals.csv", "invalid"),
        ("nobody@example.com", 6, "referrals.csv", "invalid"),
        ("RITA@ray.org", 7, "referrals.csv", "invalid"),
        ("ann@example.com", 8, "referrals.csv", "invalid"),
        ("bob@example.com", 9, "referrals.csv", "invalid"),
    ]


def test_it_reports_a_duplicate_referral_pair_through_load(tmp_path):
    result = load(
        tmp_path,
        PROSPECTS + "ann@example.com,Ann,,,,\n",
        REFERRERS + "r1,Rita,5\n",
        REFERRALS + "r1,ann@example.com,5\nr1,Ann@Example.com,3\n",
    )
    assert rendered(result.problems) == [
        "referrals.csv: row 3: prospect_email: duplicate of row 2 "
        "(the first row is used; remove this one)"
    ]
    assert [r.strength for r in result.audience.referrals] == [5]


def test_it_summarises_referrals_when_a_file_they_depend_on_cannot_be_read(tmp_path):
    result = load(
        tmp_path,
        "mail,first\nann@example.com,Ann\n",
        REFERRERS + "r1,Rita,5\n",
        REFERRALS + "r1,ann@example.com,5\nr1,bob@example.com,3\n",
    )
    assert rendered(result.problems) == [
        "prospects.csv: row 1: missing required column(s): email, first_name "
        "(the header row must name email, first_name; found: mail, first)",
        "referrals.csv: 2 referral(s) left out because prospects.csv could not be read "
        "(fix that file first)",
    ]
    assert result.audience.referrals == ()
    assert len(result.excluded) == 2


# --- emails and scale -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "Ann@Example.COM",
        " ann.lee+tag@sub.example.co.uk ",
        "Postmaster@Example.com",
        "o'brien@example.ie",
        '"quoted"@example.com',
        '"with space"@example.com',
        "ü@bücher.de",
        "a@xn--bcher-kva.de",
        "x" * 70 + "@example.com",
        "a@" + "b" * 64 + ".com",
        "a" * 64 + "@" + ".".join(["c" * 60] * 3) + ".com",
        "a@b",
        "a@@b.com",
        "a..b@example.com",
        "a@example..com",
        "a@localhost",
        "a@acme.test",
        "a@[127.0.0.1]",
        "Ann <ann@example.com>",
        "a@-example.com",
        "a@example.com.",
    ],
)
def test_it_normalizes_emails_exactly_like_email_validator(raw):
    try:
        expected: str | None = validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        expected = None
        message = str(exc)
    if expected is None:
        with pytest.raises(InvalidEmail) as info:
            normalize_email(raw)
        assert str(info.value) == message
    else:
        assert normalize_email(raw) == expected


def test_it_rejects_an_empty_email():
    with pytest.raises(ValueError, match=r"^The email address is empty\.$"):
        normalize_email("  ")


def test_it_loads_a_20k_row_file_with_some_bad_rows(tmp_path):
    n = 20_000
    prospect_rows = "".join(
        f"person{i}@Company{i % 300}.com,First{i},Last{i},CTO,Co {i % 300},Europe/Berlin,s{i % 7}\n"
        if i % 1000 != 999
        else f"person{i}-at-nowhere,First{i},,,,,\n"
        for i in range(n)
    )
    referrer_rows = "".join(f"r{i},Referrer {i},{i % 5 + 1}\n" for i in range(500))
    referral_rows = "".join(f"r{i % 500},person{i}@company{i % 300}.com,3\n" for i in range(n))
    result = load(
        tmp_path,
        PROSPECTS.rstrip("\n") + ",segment\n" + prospect_rows,
        REFERRERS + referrer_rows,
        REFERRALS + referral_rows,
    )
    assert len(result.audience.prospects) == n - 20
    assert result.audience.prospects[0].custom == {"segment": "s0"}
    assert len(result.audience.referrers) == 500
    assert len(result.audience.referrals) == n - 20
    assert len(result.problems) == 40  # each bad prospect row, and its referral
    assert len(result.excluded) == 40
