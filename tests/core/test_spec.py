"""Campaign YAML validation: exact values for a good file, exact messages for bad ones."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from sequencer.core.model import (
    Approval,
    CampaignSpec,
    DataFiles,
    Delay,
    DelayUnit,
    MailboxSpec,
    NamePolicy,
    RepSpec,
    RoutingSpec,
    ScheduleSpec,
    Security,
    SendWindow,
    ServerSpec,
    StepSpec,
    TemperatureRule,
)
from sequencer.core.spec import load_campaign, parse_campaign

FIXTURES = Path(__file__).parent.parent / "fixtures" / "campaigns"
FULL = (FIXTURES / "full.yaml").read_text()
MINIMAL = (FIXTURES / "minimal.yaml").read_text()
DATA_FILES = ("prospects.csv", "referrers.csv", "referrals.csv", "p.csv", "r.csv", "rr.csv")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A campaign folder (the working directory) with empty CSVs and a templates folder."""
    for name in DATA_FILES:
        (tmp_path / name).write_text("")
    (tmp_path / "my_templates").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def check(text: str) -> list[str]:
    """Write ``camp.yaml`` in the working directory, load it, return the rendered errors."""
    Path("camp.yaml").write_text(text)
    spec, errors, _warnings = load_campaign(Path("camp.yaml"))
    if errors:
        assert spec is None
    return [p.render() for p in errors]


def warnings_of(text: str) -> list[str]:
    Path("camp.yaml").write_text(text)
    _spec, _errors, warnings = load_campaign(Path("camp.yaml"))
    return [p.render() for p in warnings]


# --------------------------------------------------------------------------- good files


def test_it_parses_a_full_campaign_into_exact_values(folder: Path) -> None:
    (folder / "sub").mkdir()
    path = folder / "sub" / "camp.yaml"
    path.write_text(FULL.replace(": prospects.csv", ": ../prospects.csv"))
    for name in ("referrers.csv", "referrals.csv"):
        (folder / "sub" / name).write_text("")
    (folder / "sub" / "my_templates").mkdir()

    spec, errors, warnings = load_campaign(path)

    assert (errors, warnings) == ([], [])
    assert spec == CampaignSpec(
        name="q4-fintech-intros",
        source=path,
        description="Intros to fintech prospects via happy customers",
        rep=RepSpec(name="Dana Rep", email="dana@acme.example", timezone="America/New_York"),
        mailbox=MailboxSpec(
            smtp=ServerSpec("127.0.0.1", 2525, Security.NONE, "dana", "REP_SMTP_PASSWORD"),
            imap=ServerSpec("127.0.0.1", 1143, Security.STARTTLS, "dana", "REP_IMAP_PASSWORD"),
            imap_folder="Referrals",
            daily_cap=150,
            min_gap_seconds=120,
        ),
        data=DataFiles(
            prospects=folder / "prospects.csv",
            referrers=folder / "sub" / "referrers.csv",
            referrals=folder / "sub" / "referrals.csv",
        ),
        templates_dir=folder / "sub" / "my_templates",
        temperature=TemperatureRule(
            min_our_strength=3,
            min_their_strength=5,
            min_nps=9,
            name_referrer=NamePolicy.ALWAYS,
        ),
        schedule=ScheduleSpec(
            timezone="Europe/Berlin",
            window=SendWindow(days=(0, 2, 4), start=time(8, 30), end=time(18, 0)),
            holidays=(date(2026, 12, 24), date(2026, 12, 25)),
        ),
        sequences={
            "warm": (
                StepSpec("warm_intro", None, False, Approval.REQUIRED),
                StepSpec("warm_follow_up", Delay(3, DelayUnit.BUSINESS_DAYS), True, Approval.AUTO),
            ),
            "cold": (
                StepSpec("cold_intro", None, False, Approval.REQUIRED),
                StepSpec("cold_follow_up", Delay(1, DelayUnit.DAYS), True, Approval.REQUIRED),
                StepSpec("cold_breakup", Delay(36, DelayUnit.HOURS), False, Approval.REQUIRED),
            ),
        },
        postal_address="Acme Inc, 1 Main St, Springfield",
        routing=RoutingSpec(
            notify_rep=False,
            webhook_url_env="CRM_WEBHOOK_URL",
            thank_referrer="off",
            webhook_secret_env="CRM_WEBHOOK_SECRET",
        ),
    )


def test_a_sent_folder_is_read_and_survives_storage(folder: Path) -> None:
    """``imap.sent_folder`` (where the workers settle unknown send outcomes) round-trips through
    the stored JSON; a campaign without it keeps the JSON (and so the spec hash) it had."""
    from sequencer.core.specjson import spec_from_json, spec_to_json

    text = edit(
        FULL,
        "    folder: Referrals\n",
        '    folder: Referrals\n    sent_folder: "[Gmail]/Sent Mail"\n',
    )
    Path("camp.yaml").write_text(text)
    spec, errors, _ = load_campaign(Path("camp.yaml"))
    assert errors == [] and spec is not None
    assert spec.mailbox.imap_sent_folder == "[Gmail]/Sent Mail"
    assert spec_from_json(spec_to_json(spec)) == spec

    Path("camp.yaml").write_text(FULL)
    plain, _, _ = load_campaign(Path("camp.yaml"))
    assert plain is not None and plain.mailbox.imap_sent_folder is None
    assert "imap_sent_folder" not in spec_to_json(plain)["mailbox"]
    assert spec_from_json(spec_to_json(plain)) == plain


def test_it_fills_in_defaults_for_optional_settings(folder: Path) -> None:
    spec, errors, warnings = parse_campaign(MINIMAL, folder / "camp.yaml")

    assert (errors, warnings) == ([], [])
    assert spec is not None
    assert spec.description == ""
    assert spec.templates_dir is None
    assert spec.rep.email == "Sam@acme.example"  # domain normalised by email_validator
    assert spec.mailbox == MailboxSpec(
        smtp=ServerSpec("smtp.acme.example", 465, Security.SSL, "sam", None),
        imap=None,
        imap_folder="INBOX",
        daily_cap=200,
        min_gap_seconds=60,
    )
    assert spec.temperature == TemperatureRule(4, 4, None, NamePolicy.CONSENTED)
    assert spec.schedule == ScheduleSpec(
        timezone="prospect",
        window=SendWindow(days=(0, 1, 2, 3, 4), start=time(9), end=time(17)),
        holidays=(),
    )
    assert spec.routing == RoutingSpec(
        notify_rep=True, webhook_url_env=None, thank_referrer="draft"
    )
    assert set(spec.sequences) == {"warm", "cold"}


def test_it_accepts_an_unnamed_sequence_and_a_window_spanning_midnight(folder: Path) -> None:
    text = edit(MINIMAL, "  cold: [", "  unnamed: [{template: unnamed_intro}]\n  cold: [")
    text += 'schedule: {timezone: rep, window: {days: [sat, SUN], start: "22:00", end: "06:00"}}\n'

    spec, errors, _ = parse_campaign(text, folder / "camp.yaml")

    assert errors == []
    assert spec is not None
    assert spec.sequences["unnamed"] == (StepSpec("unnamed_intro", None, False, Approval.REQUIRED),)
    assert spec.schedule.timezone == "rep"
    assert spec.schedule.window == SendWindow(days=(5, 6), start=time(22), end=time(6))


@pytest.mark.parametrize(
    ("written", "seconds"), [("90s", 90), ("2m", 120), ("1h", 3600), ("45", 45), ("0", 0)]
)
def test_it_reads_min_gap_durations(folder: Path, written: str, seconds: int) -> None:
    text = edit(MINIMAL, "mailbox:\n", f"mailbox:\n  min_gap: {written}\n")
    spec, errors, _ = parse_campaign(text, folder / "camp.yaml")
    assert errors == []
    assert spec is not None
    assert spec.mailbox.min_gap_seconds == seconds


@pytest.mark.parametrize(
    ("written", "delay"),
    [
        ("1 hour", Delay(1, DelayUnit.HOURS)),
        ("12 hours", Delay(12, DelayUnit.HOURS)),
        ("1 day", Delay(1, DelayUnit.DAYS)),
        ("365 days", Delay(365, DelayUnit.DAYS)),
        ("1 business day", Delay(1, DelayUnit.BUSINESS_DAYS)),
        ("5 Business Days", Delay(5, DelayUnit.BUSINESS_DAYS)),
    ],
)
def test_it_reads_step_delays(folder: Path, written: str, delay: Delay) -> None:
    text = edit(MINIMAL, "warm: [{template: warm_intro}]", "warm:\n    - template: warm_intro")
    text = edit(
        text,
        "    - template: warm_intro\n",
        f"    - template: warm_intro\n    - {{template: b, after: {written}}}\n",
    )
    spec, errors, _ = parse_campaign(text, folder / "camp.yaml")
    assert errors == []
    assert spec is not None
    assert spec.sequences["warm"][1].after == delay


# --------------------------------------------------------------------------- reading the file


def test_it_reports_a_missing_campaign_file(folder: Path) -> None:
    spec, errors, warnings = load_campaign(Path("nope.yaml"))
    assert spec is None
    assert warnings == []
    assert [p.render() for p in errors] == ["nope.yaml: campaign file not found"]


def test_it_reports_a_folder_given_as_the_campaign_file(folder: Path) -> None:
    _, errors, _ = load_campaign(Path("my_templates"))
    assert [p.render() for p in errors] == [
        "my_templates: is a folder, expected a campaign YAML file"
    ]


def test_it_reports_a_file_that_is_not_utf8(folder: Path) -> None:
    Path("camp.yaml").write_bytes(b"campaign: caf\xe9\n")
    _, errors, _ = load_campaign(Path("camp.yaml"))
    assert [p.render() for p in errors] == [
        "camp.yaml:1:14: not UTF-8 text (byte 0xe9: invalid continuation byte) "
        "(save the file as UTF-8)"
    ]


# --------------------------------------------------------------------------- YAML level


def test_it_reports_yaml_syntax_errors_with_one_based_positions(folder: Path) -> None:
    text = edit(FULL, "  min_gap: 2m\n", "  min_gap: [2m\n")
    assert check(text) == [
        "camp.yaml:23:5: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence that starts at line 22, column 12)"
    ]


def test_it_explains_tabs_used_for_indentation(folder: Path) -> None:
    assert check("campaign: x\nrep:\n\tname: Dana\n") == [
        "camp.yaml:3:1: invalid YAML: found character '\\t' that cannot start any token "
        "(indent with spaces, not tabs)"
    ]


def test_it_reports_every_duplicate_key_with_its_path(folder: Path) -> None:
    text = edit(FULL, "    port: 2525\n", "    port: 2525\n    port: 2526\n")
    text = edit(text, "campaign: q4-fintech-intros\n", "campaign: a\ncampaign: b\n")
    assert check(text) == [
        "camp.yaml:2:1: campaign: duplicate key 'campaign' ('campaign' is already set on line 1)",
        "camp.yaml:12:5: mailbox.smtp.port: duplicate key 'port' "
        "('port' is already set on line 11)",
    ]


def test_it_reports_impossible_dates(folder: Path) -> None:
    text = edit(FULL, "[2026-12-25, 2026-12-24]", "[2026-12-25, 2026-02-30]")
    assert check(text) == ["camp.yaml:34:26: schedule.holidays[1]: no such date: 2026-02-30"]


def test_it_reports_an_empty_file(folder: Path) -> None:
    assert check("# nothing yet\n") == [
        "camp.yaml:1:1: the campaign file is empty "
        "(it needs campaign, rep, mailbox, data, sequences, compliance)"
    ]


def test_it_requires_a_mapping_at_the_top_level(folder: Path) -> None:
    assert check("- campaign: x\n") == [
        "camp.yaml:1:1: expected a mapping of campaign settings at the top level, got a list "
        "(write one setting per line, e.g. campaign: q4-fintech-intros)"
    ]


# --------------------------------------------------------------------------- keys


def test_it_reports_unknown_keys_with_a_suggestion(folder: Path) -> None:
    text = edit(FULL, "  name_referrer: always\n", "  name_referer: always\n")
    text = edit(text, "    folder: Referrals\n", "    folder: Referrals\n    mailbox: x\n")
    text += "notes: hi\n"
    assert check(text) == [
        "camp.yaml:21:5: mailbox.imap.mailbox: unknown key 'mailbox' "
        "(known keys: host, port, security, username, password_env, folder, sent_folder)",
        "camp.yaml:31:3: temperature.name_referer: unknown key 'name_referer' "
        "(did you mean 'name_referrer'?)",
        "camp.yaml:54:1: notes: unknown key 'notes' (known keys: campaign, description, "
        "rep, mailbox, data, templates, temperature, schedule, sequences, compliance, routing)",
    ]


def test_it_reports_missing_required_keys_at_the_parent_mapping(folder: Path) -> None:
    text = edit(FULL, "    port: 2525\n", "")
    text = edit(text, 'compliance:\n  postal_address: "Acme Inc, 1 Main St, Springfield"\n', "")
    text = edit(
        text, "    - template: cold_breakup\n      after: 36 hours\n", "    - thread: false\n"
    )
    assert check(text) == [
        "camp.yaml:1:1: compliance: missing required key 'compliance'",
        "camp.yaml:8:3: mailbox.smtp.port: missing required key 'port'",
        "camp.yaml:43:7: sequences.cold[2].after: missing required key 'after' "
        "(say how long to wait after the previous step, e.g. 3 business days)",
        "camp.yaml:43:7: sequences.cold[2].template: missing required key 'template'",
    ]


def test_it_reports_a_required_section_left_empty(folder: Path) -> None:
    text = edit(MINIMAL, 'compliance: {postal_address: "Acme Inc, 1 Main St"}\n', "compliance:\n")
    assert check(text) == ["camp.yaml:9:1: compliance: needs a value"]


def test_it_requires_warm_and_cold_sequences_with_steps(folder: Path) -> None:
    text = edit(MINIMAL, "  cold: [{template: cold_intro}]\n", "")
    text = edit(text, "warm: [{template: warm_intro}]", "warm: []")
    assert check(text) == [
        "camp.yaml:6:1: sequences.cold: missing required key 'cold'",
        "camp.yaml:7:9: sequences.warm: expected at least one item, got an empty list",
    ]


# --------------------------------------------------------------------------- types and ranges


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    port: 2525\n",
            "    port: 25x\n",
            "camp.yaml:10:11: mailbox.smtp.port: expected an integer from 1 to 65535, got '25x'",
        ),
        (
            "    port: 2525\n",
            "    port: 70000\n",
            "camp.yaml:10:11: mailbox.smtp.port: expected an integer from 1 to 65535, got 70000",
        ),
        (
            "    port: 2525\n",
            '    port: "2525"\n',
            "camp.yaml:10:11: mailbox.smtp.port: expected an integer from 1 to 65535, got '2525' "
            "(write the number without quotes)",
        ),
        (
            "  daily_cap: 150\n",
            "  daily_cap: 150.5\n",
            "camp.yaml:21:14: mailbox.daily_cap: expected an integer from 1 to 10000, got 150.5",
        ),
        (
            "  daily_cap: 150\n",
            "  daily_cap: true\n",
            "camp.yaml:21:14: mailbox.daily_cap: expected an integer from 1 to 10000, got true",
        ),
        (
            "  min_gap: 2m\n",
            "  min_gap: 5 minutes\n",
            "camp.yaml:22:12: mailbox.min_gap: expected a duration such as 90s, 2m or 1h, "
            "got '5 minutes' (a bare number counts seconds)",
        ),
        (
            "  min_gap: 2m\n",
            "  min_gap: 25h\n",
            "camp.yaml:22:12: mailbox.min_gap: "
            "expected a duration from 0 to 86400 seconds, got '25h'",
        ),
        (
            "    security: none\n",
            "    security: tsl\n",
            "camp.yaml:11:15: mailbox.smtp.security: "
            "expected one of none, starttls, ssl, got 'tsl' (did you mean 'ssl'?)",
        ),
        (
            "min_our_strength: 3,",
            "min_our_strength: 6,",
            "camp.yaml:29:33: temperature.warm_when.min_our_strength: "
            "expected an integer from 1 to 5, got 6",
        ),
        (
            "min_nps: 9}",
            "min_nps: 11}",
            "camp.yaml:29:68: temperature.warm_when.min_nps: "
            "expected an integer from 0 to 10, got 11",
        ),
        (
            '  thank_referrer: "off"\n',
            "  thank_referrer: false\n",
            "camp.yaml:52:19: routing.thank_referrer: expected one of draft, off, got false",
        ),
        (
            "  host: 127.0.0.1\n    port: 1143",
            "  host: 1143\n    port: 1143",
            "camp.yaml:15:11: mailbox.imap.host: expected text, got 1143 (put it in quotes)",
        ),
        (
            "  warm_when: {",
            "  warm_when: [",
            "camp.yaml:29:69: invalid YAML: expected ',' or ']', but got '}' "
            "(while parsing a flow sequence that starts at line 29, column 14)",
        ),
        (
            "  name: Dana Rep\n",
            "  name: [Dana]\n",
            "camp.yaml:4:9: rep.name: expected text, got a list",
        ),
    ],
)
def test_it_rejects_wrong_types_and_ranges(folder: Path, old: str, new: str, expected: str) -> None:
    assert check(edit(FULL, old, new)) == [expected]


def test_it_rejects_a_sequence_that_is_not_a_list(folder: Path) -> None:
    text = edit(FULL, "sequences:\n  warm:", "sequences:\n  warm: warm_intro\n  old_warm:")
    assert check(text) == [
        "camp.yaml:36:9: sequences.warm: expected a list, got 'warm_intro'",
        "camp.yaml:37:3: sequences.old_warm: unknown key 'old_warm' (did you mean 'warm'?)",
    ]


@pytest.mark.parametrize("word", ["yes", "no", "on", "1", '"true"'])
def test_it_rejects_booleans_that_are_not_true_or_false(folder: Path, word: str) -> None:
    text = edit(FULL, "  notify_rep: false\n", f"  notify_rep: {word}\n")
    shown = {"1": "1", '"true"': "'true'"}.get(word, f"'{word}'")
    assert check(text) == [
        f"camp.yaml:49:15: routing.notify_rep: expected a boolean, got {shown} (use true or false)"
    ]


# --------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("930", 'expected a time as "HH:MM" in quotes, got 930 (e.g. "09:30")'),
        ("9.5", 'expected a time as "HH:MM" in quotes, got 9.5 (e.g. "09:30")'),
        ('"24:00"', 'expected a 24-hour time as "HH:MM", got \'24:00\' (e.g. "09:30" or "17:00")'),
        ('"9am"', 'expected a 24-hour time as "HH:MM", got \'9am\' (e.g. "09:30" or "17:00")'),
    ],
)
def test_it_rejects_times_that_are_not_hh_mm(folder: Path, written: str, expected: str) -> None:
    text = edit(FULL, "start: 08:30,", f"start: {written},")
    assert check(text) == [f"camp.yaml:33:42: schedule.window.start: {expected}"]


def test_it_rejects_a_window_that_starts_and_ends_at_the_same_time(folder: Path) -> None:
    text = edit(FULL, 'end: "18:00"', 'end: "08:30"')
    assert check(text) == [
        "camp.yaml:33:54: schedule.window.end: the window must not start and end at the same "
        'time (08:30) (an end before the start spans midnight, e.g. start: "22:00", end: "06:00")'
    ]


def test_it_rejects_bad_window_days(folder: Path) -> None:
    text = edit(FULL, "days: [Mon, wed, fri]", "days: [Mon, wed, monday, mon]")
    assert check(text) == [
        "camp.yaml:33:29: schedule.window.days[2]: expected a day name, got 'monday' "
        "(use mon, tue, wed, thu, fri, sat, sun)",
        "camp.yaml:33:37: schedule.window.days[3]: day 'mon' is listed twice",
    ]
    assert check(edit(FULL, "days: [Mon, wed, fri]", "days: []")) == [
        "camp.yaml:33:18: schedule.window.days: expected at least one item, got an empty list"
    ]


def test_it_rejects_holidays_that_are_not_dates(folder: Path) -> None:
    text = edit(FULL, "[2026-12-25, 2026-12-24]", "[2026-12-25, christmas]")
    assert check(text) == [
        "camp.yaml:34:26: schedule.holidays[1]: expected a date as YYYY-MM-DD, got 'christmas'"
    ]


def test_it_rejects_unknown_time_zones(folder: Path) -> None:
    text = edit(FULL, "  timezone: America/New_York\n", "  timezone: America/Springfield\n")
    text = edit(text, "  timezone: Europe/Berlin\n", "  timezone: europe/berlin\n")
    assert check(text) == [
        "camp.yaml:6:13: rep.timezone: unknown time zone 'America/Springfield' "
        "(use an IANA name such as America/New_York)",
        "camp.yaml:32:13: schedule.timezone: unknown time zone 'europe/berlin' "
        "(did you mean 'Europe/Berlin'?)",
    ]


@pytest.mark.parametrize("zone", ["../../etc/passwd", "/etc/localtime", "localtime", '""'])
def test_it_rejects_path_like_or_empty_time_zones(folder: Path, zone: str) -> None:
    text = edit(FULL, "  timezone: America/New_York\n", f"  timezone: {zone}\n")
    shown = "''" if zone == '""' else f"'{zone}'"
    assert check(text) == [
        f"camp.yaml:6:13: rep.timezone: unknown time zone {shown} "
        "(use an IANA name such as America/New_York)"
    ]


# --------------------------------------------------------------------------- secrets


def test_it_rejects_secrets_written_into_the_file(folder: Path) -> None:
    text = edit(FULL, "    password_env: REP_SMTP_PASSWORD\n", "    password: hunter2\n")
    text = edit(text, "  webhook_url_env: CRM_WEBHOOK_URL\n", "  webhook_url: https://x.example\n")
    text += "extra:\n  api: {Token: abc}\n"
    errors = check(text)
    assert errors == [
        "camp.yaml:13:5: mailbox.smtp.password: secrets never go in the campaign file "
        "(put it in an environment variable and name it with password_env)",
        "camp.yaml:50:3: routing.webhook_url: secrets never go in the campaign file "
        "(put it in an environment variable and name it with webhook_url_env)",
        "camp.yaml:53:1: extra: unknown key 'extra' (known keys: campaign, description, rep, "
        "mailbox, data, templates, temperature, schedule, sequences, compliance, routing)",
        "camp.yaml:54:9: extra.api.Token: secrets never go in the campaign file "
        "(put it in an environment variable and name it with password_env)",
    ]
    assert not any("hunter2" in e or "abc}" in e for e in errors)


def test_a_webhook_needs_its_own_signing_secret(folder: Path) -> None:
    """The CRM verifies with a secret of its own, never with REFSEQ_SECRET_KEY."""
    text = edit(FULL, "  webhook_secret_env: CRM_WEBHOOK_SECRET\n", "")
    assert check(text) == [
        "camp.yaml:48:1: routing.webhook_secret_env: missing required key 'webhook_secret_env' "
        "(name the environment variable holding this endpoint's own signing secret (e.g. "
        "CRM_WEBHOOK_SECRET); the receiver verifies X-Refseq-Signature with it)"
    ]
    text = edit(FULL, "webhook_secret_env: CRM_WEBHOOK_SECRET", "webhook_secret_env: s3cret!")
    assert check(text) == [
        "camp.yaml:51:23: routing.webhook_secret_env: expected the name of an environment "
        "variable (A-Z, 0-9 and _), such as REP_SMTP_PASSWORD (never put the secret itself "
        "here; set it in an environment variable and name that)"
    ]


@pytest.mark.parametrize("value", ["hunter2!", "s3cr3t pass", "rep_smtp_password", "1ABC"])
def test_it_rejects_env_values_that_are_not_variable_names(folder: Path, value: str) -> None:
    text = edit(FULL, "password_env: REP_IMAP_PASSWORD", f"password_env: {value}")
    errors = check(text)
    assert errors == [
        "camp.yaml:19:19: mailbox.imap.password_env: expected the name of an environment "
        "variable (A-Z, 0-9 and _), such as REP_SMTP_PASSWORD (never put the secret itself "
        "here; set it in an environment variable and name that)"
    ]
    assert value not in errors[0]


# --------------------------------------------------------------------------- files and names


def test_it_reports_missing_data_files_at_their_value(folder: Path) -> None:
    (folder / "referrals.csv").unlink()
    text = edit(FULL, "  prospects: prospects.csv\n", "  prospects: prospect.csv\n")
    assert check(text) == [
        f"camp.yaml:24:14: data.prospects: file not found: {folder / 'prospect.csv'} "
        f"(paths are relative to the campaign file's folder {folder})",
        f"camp.yaml:26:14: data.referrals: file not found: {folder / 'referrals.csv'} "
        f"(paths are relative to the campaign file's folder {folder})",
    ]


def test_it_rejects_a_folder_given_as_a_data_file_and_a_missing_templates_folder(
    folder: Path,
) -> None:
    text = edit(FULL, "  referrers: referrers.csv\n", "  referrers: my_templates\n")
    text = edit(text, "templates: my_templates\n", "templates: templates\n")
    assert check(text) == [
        f"camp.yaml:25:14: data.referrers: not a file: {folder / 'my_templates'} "
        f"(paths are relative to the campaign file's folder {folder})",
        f"camp.yaml:27:12: templates: folder not found: {folder / 'templates'} "
        f"(paths are relative to the campaign file's folder {folder})",
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../warm_intro", "expected a template name, not a path: '../warm_intro'"),
        ("emails/warm_intro", "expected a template name, not a path: 'emails/warm_intro'"),
        ("warm_intro.txt", "expected a template name, not a path: 'warm_intro.txt'"),
        ("Warm Intro", "expected a template name (a-z, 0-9, '-' and '_'), got 'Warm Intro'"),
    ],
)
def test_it_rejects_template_names_that_are_paths(folder: Path, name: str, message: str) -> None:
    text = edit(FULL, "    - template: cold_intro\n", f"    - template: {name}\n")
    assert check(text) == [
        f"camp.yaml:40:17: sequences.cold[0].template: {message} "
        "(templates are referenced by name, e.g. warm_intro)"
    ]


def test_it_rejects_a_bad_campaign_name_and_rep_email(folder: Path) -> None:
    text = edit(FULL, "campaign: q4-fintech-intros\n", "campaign: Q4 Fintech\n")
    text = edit(text, "  email: dana@acme.example\n", "  email: dana.acme.example\n")
    assert check(text) == [
        "camp.yaml:1:11: campaign: expected a campaign name of lowercase letters, digits, '-' "
        "and '_' (at most 64), got 'Q4 Fintech' (e.g. q4-fintech-intros)",
        "camp.yaml:5:10: rep.email: not a valid email address: 'dana.acme.example' "
        "(An email address must have an @-sign.)",
    ]


# --------------------------------------------------------------------------- steps


def test_it_rejects_after_and_thread_on_the_first_step(folder: Path) -> None:
    text = edit(
        FULL,
        "    - template: cold_intro\n",
        "    - template: cold_intro\n      after: 2 days\n      thread: true\n",
    )
    assert check(text) == [
        "camp.yaml:41:14: sequences.cold[0].after: the first step is sent when the prospect "
        "starts the sequence and takes no 'after' (remove 'after' from the first step)",
        "camp.yaml:42:15: sequences.cold[0].thread: the first step starts the thread and cannot "
        "reply in one (use thread: true on follow-up steps only)",
    ]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("3", "expected a delay such as 3 business days, 2 days or 4 hours, got 3 "
              '(add a unit, e.g. "3 business days")'),
        ("3d", "expected a delay such as 3 business days, 2 days or 4 hours, got '3d'"),
        ("2 weeks", "expected a delay such as 3 business days, 2 days or 4 hours, got '2 weeks'"),
        ("0 days", "expected a delay from 1 to 365, got '0 days'"),
        ("400 hours", "expected a delay from 1 to 365, got '400 hours'"),
    ],
)  # fmt: skip
def test_it_rejects_bad_delays(folder: Path, written: str, expected: str) -> None:
    text = edit(FULL, "      after: 1 day\n", f"      after: {written}\n")
    assert check(text) == [f"camp.yaml:42:14: sequences.cold[1].after: {expected}"]


def test_it_rejects_a_step_that_is_not_a_mapping(folder: Path) -> None:
    text = edit(FULL, "    - template: cold_intro\n", "    - cold_intro\n")
    assert check(text) == [
        "camp.yaml:40:7: sequences.cold[0]: expected a step mapping such as "
        "{template: warm_intro}, got 'cold_intro'"
    ]


# --------------------------------------------------------------------------- all at once


def test_it_reports_all_errors_together_in_file_order(folder: Path) -> None:
    text = edit(FULL, "    port: 2525\n", "    port: 25x\n")
    text = edit(text, "  timezone: America/New_York\n", "  timezone: Mars/Olympus\n")
    text = edit(text, "start: 08:30", "start: 830")
    text = edit(text, "thread: true, approval: auto}", "thread: yes, approval: auto}")
    text = edit(text, "  prospects: prospects.csv\n", "  prospects: nope.csv\n")
    text = edit(text, "  name_referrer: always\n", "  name_referer: always\n")
    text = edit(text, "    password_env: REP_SMTP_PASSWORD\n", "    password: x\n")

    assert check(text) == [
        "camp.yaml:6:13: rep.timezone: unknown time zone 'Mars/Olympus' "
        "(use an IANA name such as America/New_York)",
        "camp.yaml:10:11: mailbox.smtp.port: expected an integer from 1 to 65535, got '25x'",
        "camp.yaml:13:5: mailbox.smtp.password: secrets never go in the campaign file "
        "(put it in an environment variable and name it with password_env)",
        f"camp.yaml:24:14: data.prospects: file not found: {folder / 'nope.csv'} "
        f"(paths are relative to the campaign file's folder {folder})",
        "camp.yaml:30:3: temperature.name_referer: unknown key 'name_referer' "
        "(did you mean 'name_referrer'?)",
        'camp.yaml:33:42: schedule.window.start: expected a time as "HH:MM" in quotes, got 830 '
        '(e.g. "09:30")',
        "camp.yaml:38:66: sequences.warm[1].thread: expected a boolean, got 'yes' "
        "(use true or false)",
    ]


# --------------------------------------------------------------------------- warnings


def test_it_warns_about_an_unnamed_sequence_that_can_never_be_used(folder: Path) -> None:
    text = edit(FULL, "  cold:\n", "  unnamed: [{template: unnamed_intro}]\n  cold:\n")
    assert warnings_of(text) == [
        "camp.yaml:39:3: sequences.unnamed: sequence 'unnamed' is never used because "
        "temperature.name_referrer is 'always'"
    ]


def test_it_warns_about_a_password_sent_in_clear_to_a_remote_server(folder: Path) -> None:
    text = edit(
        FULL,
        "    host: 127.0.0.1\n    port: 2525\n",
        "    host: mail.acme.example\n    port: 2525\n",
    )
    spec, errors, warnings = parse_campaign(text, folder / "camp.yaml")
    assert errors == []
    assert spec is not None
    assert [w.render() for w in warnings] == [
        f"{folder / 'camp.yaml'}:11:15: mailbox.smtp.security: the password for "
        "mail.acme.example would be sent unencrypted "
        "(use starttls or ssl for servers that are not on this machine)"
    ]


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "text",
    [
        "[",
        "a: *nope\n",
        "a: &x [*x]\n",
        "x: &a {p: 1}\ny: {<<: *a, q: 2}\n",
        "? [a, b]\n: 1\n",
        "1: 2\nnull: 3\ntrue: 4\n",
        "campaign: !custom x\n",
        "rep: [1, 2]\nmailbox: 3\ndata: x\nsequences: {warm: [[]], cold: [null]}\ncompliance: []\n",
        "sequences: {warm: [{template: {a: 1}, after: [], thread: {}, approval: []}]}\n",
        "schedule: {window: {days: mon, start: null, end: []}, holidays: {a: 1}}\n",
        "mailbox: {smtp: {port: .inf, password_env: 3}, min_gap: -5, daily_cap: 1e3}\n",
        "\ufeffcampaign: x\n",
        "a: 1\n---\nb: 2\n",
        "a: 2026-13-45\n",
        "just text\n",
        'data: {prospects: "a\\0b.csv"}\ntemplates: "x\\0"\n',
    ],
)
def test_it_never_raises_on_malformed_input(folder: Path, text: str) -> None:
    spec, errors, _ = parse_campaign(text, Path("camp.yaml"))
    assert spec is None
    assert errors
    assert all(p.source == "camp.yaml" and p.message for p in errors)
