"""Campaigns as code, end to end through the real CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequencer.core.states import CampaignStatus, EnrollmentState
from tests.cli_helpers import NOW, Cli, init_example

EXPECTED = {  # prospect → (temperature, sequence, referrer id, state)
    "elena.park@northbank.example": ("warm", "warm", "james-hervin", "active"),
    "john.reyes@ledgerline.example": ("warm", "warm", "jon-smith", "active"),
    "priya.nair@fintrust.example": ("cold", "cold", "lena-fox", "active"),
    "marc.dubois@paysage.example": ("cold", "cold", "jon-smith", "active"),
    "aiko.tanaka@kumo.example": ("warm", "unnamed", "omar-haddad", "active"),
    "sam.ortiz@cleardesk.example": ("warm", "warm", "james-hervin", "active"),
}


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path)


def enrollments(uow_factory, name="q4-fintech-intros"):
    with uow_factory() as uow:
        campaign = uow.repo.get_campaign(name)
        assert campaign is not None
        return {e.prospect_email: e for e in uow.repo.list_enrollments(campaign.id)}


def test_it_validates_plans_and_launches_the_example(cli, uow_factory, tmp_path):
    yaml = init_example(cli, tmp_path / "camp")
    assert "OK (6 prospects, 4 referrers, 7 referrals)" in cli("validate", str(yaml)).stdout

    plan = cli.json("plan", str(yaml), "--now", NOW)
    got = {p["email"]: (p["temperature"], p["sequence"], p["referrer_id"]) for p in plan["enroll"]}
    assert got == {k: v[:3] for k, v in EXPECTED.items()}
    john = next(p for p in plan["enroll"] if p["email"].startswith("john"))
    assert john["other_referrers"] == ["lena-fox"]
    assert john["first_step_local"] == "2026-11-23T14:00:00-06:00"  # Chicago, inside the window
    aiko = next(p for p in plan["enroll"] if p["email"].startswith("aiko"))
    assert aiko["may_name_referrer"] is False
    assert aiko["first_step_local"] == "2026-11-24T09:00:00+09:00"  # waits for Tokyo's morning
    with uow_factory() as uow:  # plan wrote nothing
        assert uow.repo.get_campaign("q4-fintech-intros") is None

    report = cli.json("launch", str(yaml), "--now", NOW)
    assert (report["created"], report["enrolled"]) == (True, 6)
    rows = enrollments(uow_factory)
    assert {
        k: (e.temperature, e.sequence, e.referrer["id"], e.state.value) for k, e in rows.items()
    } == EXPECTED
    john_row = rows["john.reyes@ledgerline.example"]
    assert john_row.referral["context"] == "your former colleague on the security team at Altex"
    assert [o["referrer_id"] for o in john_row.other_referrals] == ["lena-fox"]
    assert rows["elena.park@northbank.example"].prospect["industry"] == "banking"  # custom field
    assert rows["aiko.tanaka@kumo.example"].may_name_referrer is False


def test_it_changes_nothing_when_launched_again(cli, uow_factory, tmp_path):
    yaml = init_example(cli, tmp_path / "camp")
    cli("launch", str(yaml), "--now", NOW)
    before = enrollments(uow_factory)
    again = cli.json("launch", str(yaml), "--now", NOW)
    assert (again["created"], again["spec_changed"], again["enrolled"]) == (False, False, 0)
    assert again["already_enrolled"] == 6
    after = enrollments(uow_factory)
    assert {k: (e.id, e.updated_at) for k, e in after.items()} == {
        k: (e.id, e.updated_at) for k, e in before.items()
    }


def test_an_edited_file_updates_the_campaign_and_enrolls_only_new_people(
    cli, uow_factory, tmp_path
):
    yaml = init_example(cli, tmp_path / "camp")
    cli("launch", str(yaml), "--now", NOW)
    with (yaml.parent / "prospects.csv").open("a", encoding="utf-8") as fh:
        fh.write("nina.berg@fjord.example,Nina,Berg,CFO,Fjord,Europe/Oslo,banking\n")
    with (yaml.parent / "referrals.csv").open("a", encoding="utf-8") as fh:
        fh.write("jon-smith,nina.berg@fjord.example,5,your former colleague at DNB\n")
    yaml.write_text(yaml.read_text().replace("daily_cap: 150", "daily_cap: 90"))
    report = cli.json("launch", str(yaml), "--now", NOW)
    assert (report["created"], report["spec_changed"], report["enrolled"]) == (False, True, 1)
    assert [p["email"] for p in report["enroll"]] == ["nina.berg@fjord.example"]
    assert len(enrollments(uow_factory)) == 7
    shown = cli.json("campaign", "show", "q4-fintech-intros")
    assert shown["spec"]["mailbox"]["daily_cap"] == 90


def test_a_held_prospect_is_released_when_consent_arrives(cli, uow_factory, tmp_path):
    yaml = init_example(cli, tmp_path / "camp")
    text = yaml.read_text()
    cut = text.index("  # used instead of warm/cold")
    yaml.write_text(text[:cut] + text[text.index("compliance:") :])  # no `unnamed` sequence
    report = cli.json("launch", str(yaml), "--now", NOW)
    (held,) = report["held"]
    assert held["email"] == "aiko.tanaka@kumo.example"
    assert "Omar Haddad (omar-haddad) has not consented" in held["held"]
    row = enrollments(uow_factory)["aiko.tanaka@kumo.example"]
    assert (row.state, row.next_due_at) == (EnrollmentState.HELD, None)

    referrers = yaml.parent / "referrers.csv"
    referrers.write_text(referrers.read_text().replace("since 2023,no", "since 2023,yes"))
    again = cli.json("launch", str(yaml), "--now", NOW)
    assert again["released"] == 1 and again["enrolled"] == 0
    row = enrollments(uow_factory)["aiko.tanaka@kumo.example"]
    assert (row.state, row.sequence, row.may_name_referrer) == (
        EnrollmentState.ACTIVE,
        "warm",
        True,
    )
    assert row.next_due_at is not None


def test_bad_rows_are_reported_and_good_rows_still_launch(cli, uow_factory, tmp_path):
    yaml = init_example(cli, tmp_path / "camp")
    with (yaml.parent / "prospects.csv").open("a", encoding="utf-8") as fh:
        fh.write("not-an-email,Bad,Row,,,,\n")
    result = cli("validate", str(yaml), code=1)
    assert "prospects.csv: row 8: email: An email address must have an @-sign." in result.stderr
    report = cli.json("launch", str(yaml), "--now", NOW)
    assert report["enrolled"] == 6
    assert [p["row"] for p in report["row_problems"]] == [8]
    assert [(e["row"], e["reason"]) for e in report["excluded"]] == [(8, "invalid")]


def test_a_broken_campaign_file_reports_every_problem_and_writes_nothing(
    cli, uow_factory, tmp_path
):
    yaml = init_example(cli, tmp_path / "camp")
    text = yaml.read_text()
    text = text.replace("port: 2525", "port: 25x").replace(
        "timezone: America/New_York", "timezone: Mars/Base"
    )
    text = text.replace("name_referrer: consented", "name_referer: consented")
    yaml.write_text(text)
    lines = cli("launch", str(yaml), code=1).stderr.splitlines()
    name = str(yaml)
    assert lines[:3] == [
        f"{name}:9:13: rep.timezone: unknown time zone 'Mars/Base' (use an IANA name such as America/New_York)",
        f"{name}:14:33: mailbox.smtp.port: expected an integer from 1 to 65535, got '25x'",
        f"{name}:27:3: temperature.name_referer: unknown key 'name_referer' (did you mean 'name_referrer'?)",
    ]
    assert lines[-1] == "3 problem(s); nothing was changed."
    with uow_factory() as uow:
        assert uow.repo.list_campaigns() == []


def test_suppressed_and_busy_prospects_are_excluded(cli, uow_factory, tmp_path):
    yaml = init_example(cli, tmp_path / "camp")
    cli("suppress", "add", "Elena.Park@NorthBank.example")
    cli("suppress", "add", "@PAYSAGE.example")
    assert [s["value"] for s in cli.json("suppress", "list")] == [
        "@paysage.example",
        "elena.park@northbank.example",
    ]
    report = cli.json("launch", str(yaml), "--now", NOW)
    excluded = {e["email"]: e["reason"] for e in report["excluded"]}
    assert excluded == {
        "elena.park@northbank.example": "suppressed",
        "marc.dubois@paysage.example": "suppressed",
    }

    other = init_example(cli, tmp_path / "other")
    other.write_text(
        other.read_text().replace("campaign: q4-fintech-intros", "campaign: q1-followups")
    )
    second = cli.json("launch", str(other), "--now", NOW)
    assert second["enrolled"] == 0
    assert {e["reason"] for e in second["excluded"]} == {"suppressed", "active_elsewhere"}
    assert "already in active campaign 'q4-fintech-intros'" in {
        e["detail"] for e in second["excluded"]
    }


def test_campaigns_can_be_paused_resumed_and_stopped(cli, uow_factory, tmp_path):
    yaml = init_example(cli, tmp_path / "camp")
    cli("launch", str(yaml), "--now", NOW)
    listed = cli.json("campaigns")
    assert [(c["name"], c["status"], c["enrollments"]) for c in listed] == [
        ("q4-fintech-intros", "active", 6)
    ]
    assert listed[0]["by_temperature"] == {"warm": 4, "cold": 2}
    cli("campaign", "pause", "q4-fintech-intros")
    assert "resumed" in cli("campaign", "resume", "q4-fintech-intros").stdout
    cli("campaign", "stop", "q4-fintech-intros")
    assert (
        "cannot 'resume' from state 'stopped'"
        in cli("campaign", "resume", "q4-fintech-intros", code=1).stderr
    )
    with uow_factory() as uow:
        assert uow.repo.get_campaign("q4-fintech-intros").status is CampaignStatus.STOPPED
    assert "was stopped and cannot be launched again" in cli("launch", str(yaml), code=1).stderr
    assert "no campaign named 'nope'" in cli("campaign", "show", "nope", code=1).stderr


def test_someone_who_replied_is_never_enrolled_again(cli, uow_factory, tmp_path):
    yaml = init_example(cli, tmp_path / "camp")
    cli("launch", str(yaml), "--now", NOW)
    elena = enrollments(uow_factory)["elena.park@northbank.example"]
    with uow_factory() as uow:
        uow.repo.update_enrollment(elena.id, elena.updated_at, state=EnrollmentState.REPLIED)
        uow.commit()
    cli("campaign", "stop", "q4-fintech-intros")  # nothing is live any more
    other = init_example(cli, tmp_path / "other")
    other.write_text(
        other.read_text().replace("campaign: q4-fintech-intros", "campaign: q1-followups")
    )
    report = cli.json("launch", str(other), "--now", NOW)
    assert report["enrolled"] == 5
    (excluded,) = report["excluded"]
    assert (excluded["email"], excluded["reason"]) == (
        "elena.park@northbank.example",
        "already_replied",
    )
    assert "already replied to campaign 'q4-fintech-intros'" in excluded["detail"]
