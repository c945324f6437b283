"""Bad campaign YAML: each case is refused with file:line:col, field and a clear message, by
`refseq validate` and `refseq launch` through the real CLI, and nothing is written or sent.

The campaign is the example wired to a real SMTP sink so that, were a broken file accepted,
the next `refseq tick` would send at once (see ``tests/faults/badinput.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sequencer.core.spec import MAX_FILE_BYTES, load_campaign
from tests.faults.badinput import Sandbox, first_problem, nonzero, row_counts
from tests.reliability import Recorder
from tests.smtp_sink import Sink

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

# 9 anchors, each a list of 9 aliases of the one before: 9**9 (387 million) values expanded.
BOMB = "".join(
    f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 9 if i else ["lol"] * 9) + "]\n" for i in range(9)
)
PWNED = "/tmp/refseq-yaml-tag-was-executed"


@dataclass(frozen=True)
class Case:
    id: str
    old: str  # text of the good campaign to replace
    new: str
    at: str  # a substring of the line the problem is on (after the edit)
    col: int
    where: str  # "field: message" the line must start with, after "file:line:col: "
    pg: bool = False  # also on PostgreSQL


CASES = [
    Case(
        "syntax: unclosed flow list",
        "daily_cap: 1000",
        "daily_cap: [1000",
        "min_gap",
        3,
        "invalid YAML: expected ',' or ']', but got '<scalar>' "
        "(while parsing a flow sequence that starts at line 16, column 14)",
        pg=True,
    ),
    Case(
        "syntax: tab indentation",
        "  daily_cap: 1000",
        "\tdaily_cap: 1000",
        "daily_cap",
        1,
        "invalid YAML: found character '\\t' that cannot start any token "
        "(indent with spaces, not tabs)",
    ),
    Case(
        "duplicate key",
        "  daily_cap: 1000",
        "  daily_cap: 1000\n  daily_cap: 20",
        "daily_cap: 20",
        3,
        "mailbox.daily_cap: duplicate key 'daily_cap' ('daily_cap' is already set on line 16)",
        pg=True,
    ),
    Case(
        "unknown key (typo)",
        "name_referrer: consented",
        "name_referer: consented",
        "name_referer",
        3,
        "temperature.name_referer: unknown key 'name_referer' (did you mean 'name_referrer'?)",
    ),
    Case(
        "unknown top-level key",
        "routing:",
        "routng: {}\nrouting:",
        "routng",
        1,
        "routng: unknown key 'routng' (did you mean 'routing'?)",
    ),
    Case(
        "YAML 1.1 trap: NO is not a boolean",
        "notify_rep: true",
        "notify_rep: NO",
        "notify_rep",
        15,
        "routing.notify_rep: expected a boolean, got 'NO' (use true or false)",
    ),
    Case(
        "YAML 1.1 trap: yes/on are not booleans",
        "notify_rep: true",
        "notify_rep: on",
        "notify_rep",
        15,
        "routing.notify_rep: expected a boolean, got 'on' (use true or false)",
    ),
    Case(
        "YAML 1.1 trap: 01234 is not a time",
        'start: "00:00"',
        "start: 01234",
        "01234",
        62,
        'schedule.window.start: expected a time as "HH:MM" in quotes, got 01234 (e.g. "09:30")',
    ),
    Case(
        "YAML 1.1 trap: unquoted postal code 01101 keeps its zero in the message",
        'postal_address: "Acme Analytics Inc, 100 Main St, Springfield, MA 01101"',
        "postal_address: 01101",
        "postal_address",
        19,
        "compliance.postal_address: expected text, got 01101 (put it in quotes)",
    ),
    Case(
        "alias bomb (billion laughs)",
        "holidays: [2026-12-24, 2026-12-25, 2027-01-01]",
        "holidays:\n" + BOMB,
        "&l5 [",
        5,
        "invalid YAML: the aliases (*name) stand for over 100,000 values "
        "(a campaign file does not need nested &anchors and *aliases; write the values out)",
        pg=True,
    ),
    Case(
        "5000 nested brackets",
        "description: Intros",
        "description: " + "[" * 5000 + "]" * 5000 + "\nx: Intros",
        "description",
        78,
        "invalid YAML: brackets nested more than 64 levels deep "
        "(a campaign needs a few levels; is this the right file?)",
    ),
    Case(
        "!!python/object tag",
        "description: Intros",
        f"description: !!python/object/apply:os.system ['touch {PWNED}']\nx: Intros",
        "python/object",
        14,
        "the YAML tag '!!python/object/apply:os.system' is not allowed "
        "(a campaign file holds plain values only; remove the tag)",
        pg=True,
    ),
    Case(
        "application tag (!env)",
        "username: dana}",
        "username: !env dana}",
        "!env",
        66,
        "the YAML tag '!env' is not allowed (a campaign file holds plain values only; remove the tag)",
    ),
    Case(
        "inline secret: password",
        "username: dana}",
        "username: dana, password: hunter2}",
        "hunter2",
        72,
        "mailbox.smtp.password: secrets never go in the campaign file "
        "(put it in an environment variable and name it with password_env)",
        pg=True,
    ),
    Case(
        "inline secret: webhook_url",
        "webhook_url_env: CRM_WEBHOOK_URL",
        "webhook_url: https://hooks.example/hunter2",
        "webhook_url",
        3,
        "routing.webhook_url: secrets never go in the campaign file "
        "(put it in an environment variable and name it with webhook_url_env)",
    ),
    Case(
        "inline secret: API token under a section",
        "  daily_cap: 1000",
        "  daily_cap: 1000\n  Token: hunter2",
        "Token",
        3,
        "mailbox.Token: secrets never go in the campaign file "
        "(put it in an environment variable and name it with password_env)",
    ),
    Case(
        "secret value where an env var name goes",
        "password_env: REFSEQ_IMAP_PASSWORD",
        "password_env: hunter2",
        "hunter2",
        85,
        "mailbox.imap.password_env: expected the name of an environment variable (A-Z, 0-9 and _), "
        "such as REP_SMTP_PASSWORD (never put the secret itself here; set it in an environment "
        "variable and name that)",
    ),
    Case(
        "a NUL byte in the text",
        "description: Intros",
        "description: In\x00tros",
        "description",
        16,
        "invalid YAML: special characters are not allowed (U+0000)",
    ),
]


def _params() -> list[object]:
    out = []
    for case in CASES:
        for db in ("sqlite", "postgresql") if case.pg else ("sqlite",):
            marks = [pytest.mark.pg] if db == "postgresql" else []
            out.append(pytest.param(case, db, id=f"{db}-{case.id}", marks=marks))
    return out


@pytest.fixture
def sandbox(db_url: str, tmp_path: Path, smtp_sink: Sink) -> Sandbox:
    return Sandbox(db_url, tmp_path / "camp", smtp_sink)


@pytest.mark.reliability
@pytest.mark.parametrize(("case", "db_url"), _params(), indirect=["db_url"])
def test_a_broken_campaign_file_is_refused_with_where_and_why(
    case: Case, sandbox: Sandbox, reliability: Recorder
) -> None:
    sandbox.edit_yaml(case.old, case.new)
    outcome = sandbox.refused()
    expected = f"{sandbox.yaml}:{sandbox.line_of(case.at)}:{case.col}: {case.where}"
    got = first_problem(outcome.launch)
    reliability.record(
        "yaml",
        case.id,
        trials=1,
        wrong_sends=len(sandbox.sink.handler.received),
        outcome=f"refused in {outcome.seconds:.2f}s: {case.where.split(' (')[0][:90]}",
    )
    assert got.startswith(expected), (got, expected)
    assert first_problem(outcome.validate) == got
    assert "hunter2" not in "\n".join(outcome.validate + outcome.launch)  # never echo a secret
    assert not Path(PWNED).exists()


@pytest.mark.reliability
@SQLITE_ONLY
@pytest.mark.parametrize(
    ("fault", "content", "message"),
    [
        (
            "UTF-16 file",
            lambda good: good.encode("utf-16"),
            "{file}:1:1: not UTF-8 text: the file is UTF-16 (save the file as UTF-8)",
        ),
        (
            "Latin-1 bytes",
            lambda good: good.replace("Intros to", "Intros \u00e0 la").encode("latin-1"),
            "{file}:4:21: not UTF-8 text (byte 0xe0: invalid continuation byte) "
            "(save the file as UTF-8)",
        ),
        (
            "oversize file (2 MiB of comments)",
            lambda good: (good + ("# padding " * 100 + "\n") * 2100).encode(),
            "{file}: the file is {size:,} bytes; a campaign file is at most "
            f"{MAX_FILE_BYTES:,} bytes (is this the right file?)",
        ),
        ("empty file", lambda good: b"", "{file}:1:1: the campaign file is empty (it needs "),
        (
            "a list instead of settings",
            lambda good: b"- campaign: x\n",
            "{file}:1:1: expected a mapping of campaign settings at the top level, got a list",
        ),
    ],
    ids=["utf16", "latin1", "oversize", "empty", "top-level-list"],
)
def test_an_unreadable_campaign_file_is_refused(
    sandbox: Sandbox, reliability: Recorder, fault: str, content: object, message: str
) -> None:
    data = content(sandbox.good_yaml)  # type: ignore[operator]
    sandbox.yaml.write_bytes(data)
    started = time.monotonic()
    outcome = sandbox.refused()
    seconds = time.monotonic() - started
    expected = message.format(file=sandbox.yaml, size=len(data))
    got = first_problem(outcome.launch)
    reliability.record(
        "yaml", fault, trials=1, wrong_sends=len(sandbox.sink.handler.received),
        outcome=f"refused in {seconds:.2f}s: {got.split(': ', 1)[1][:90]}",
    )  # fmt: skip
    assert got.startswith(expected), (got, expected)


@pytest.mark.reliability
def test_yaml_1_1_look_alikes_are_read_as_written(
    sandbox: Sandbox, reliability: Recorder, db_url: str
) -> None:
    """Values YAML 1.1 would turn into booleans, sexagesimal or octal numbers stay text."""
    sandbox.edit_yaml("name: Dana Whitfield", "name: NO")  # a country code / a name, not false
    sandbox.edit_yaml('start: "00:00"', "start: 09:30")  # YAML 1.1: the number 570
    sandbox.edit_yaml('end: "23:59"', "end: 17:45")
    sandbox.edit_yaml("description: Intros", "description: !!str 01234 Intros")
    report = sandbox.launched()
    shown = sandbox.cli.json("campaign", "show", report["campaign"])
    spec = shown["spec"]
    window = spec["schedule"]["window"]
    got = (spec["rep"]["name"], window["start"], window["end"])
    reliability.record(
        "yaml",
        "YAML 1.1 look-alikes accepted as text (NO, 09:30, 17:45)",
        trials=3,
        wrong_sends=0,
        outcome=f"read as {got}",
    )
    assert got == ("NO", "09:30", "17:45")
    # and the window really is 09:30-17:45: the 20:00 UTC tick drafts but sends nothing
    tick = sandbox.tick()
    assert tick["send"]["sent"] == 0 and sandbox.sink.handler.received == []
    assert nonzero(row_counts(db_url))["enrollments"] == 6


@pytest.mark.reliability
def test_a_billion_laughs_is_refused_without_expanding_it(
    tmp_path: Path, reliability: Recorder
) -> None:
    """The check itself (no CLI): quick and small, whatever the alias depth."""
    import tracemalloc

    example = Path(__file__).resolve().parents[2] / "sequencer" / "example" / "campaign.yaml"
    deep = "".join(
        f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 20 if i else ["lol"] * 20) + "]\n"
        for i in range(30)
    )  # 20**30 values
    path = tmp_path / "campaign.yaml"
    text = example.read_text().replace(
        "holidays: [2026-12-24, 2026-12-25, 2027-01-01]", "holidays:\n" + deep
    )
    path.write_text(text)
    tracemalloc.start()
    started = time.monotonic()
    spec, errors, _ = load_campaign(path)
    seconds = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    reliability.record(
        "yaml",
        "alias bomb of 20**30 values, parsed directly",
        trials=1,
        outcome=f"refused in {seconds:.2f}s, peak {peak // 1024} KiB",
    )
    assert spec is None
    assert [e.message for e in errors] == [
        "invalid YAML: the aliases (*name) stand for over 100,000 values"
    ]
    assert peak < 20 * 1024 * 1024  # expanded, it would not fit in any memory
