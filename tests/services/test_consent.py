"""Consent to name a referrer is live, and the best path is one that may be named.

Everything through the `refseq` entry point, on SQLite and PostgreSQL, sending to a real
aiosmtpd; what reached the SMTP peer is parsed with the standard library, not refseq's code.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sequencer.core.states import DraftState
from tests.cli_helpers import Cli, init_example
from tests.smtp_sink import Sink

MON = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 New York
FRI = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # the warm follow-ups (3 business days) are due
SECRET = "test-secret-key-0123456789"


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    c = Cli(db_url, tmp_path)
    c.env.update(REFSEQ_SECRET_KEY=SECRET, REFSEQ_ACTOR="ops@acme.example")
    return c


def campaign(cli: Cli, folder: Path, sink: Sink, name: str = "q4-fintech-intros") -> Path:
    yaml = init_example(cli, folder)
    text = (
        yaml.read_text()
        .replace("port: 2525", f"port: {sink.port}")
        .replace("min_gap: 90s", "min_gap: 0s")
        .replace("campaign: q4-fintech-intros", f"campaign: {name}")
        .replace("approval: required", "approval: auto")
    )
    yaml.write_text(text)
    return yaml


def tick(cli: Cli, at: datetime) -> None:
    cli("tick", "--now", at.isoformat(), "--only", "draft")
    cli("tick", "--now", at.isoformat(), "--only", "send")


def received(sink: Sink, prefix: str, since: int = 0) -> list[tuple[bytes, str]]:
    """(raw bytes, decoded text of every part) of what the peer got for ``prefix``…"""
    out = []
    for r in sink.handler.received[since:]:
        if r.rcpt_tos[0].startswith(prefix):
            msg = email.message_from_bytes(r.data, policy=email.policy.default)
            parts = [str(msg["Subject"])]
            parts += [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
            out.append((r.data, "\n".join(parts)))
    return out


def names(sink: Sink, prefix: str, who: str, since: int = 0) -> list[bool]:
    return [who in text for _, text in received(sink, prefix, since)]


def held(cli: Cli) -> dict[str, dict[str, object]]:
    return {h["prospect"]: h for h in cli.json("held")}


def test_a_revocation_holds_every_in_flight_enrollment_naming_the_referrer(
    cli: Cli, tmp_path: Path, smtp_sink: Sink
) -> None:
    yaml = campaign(cli, tmp_path / "a", smtp_sink)
    cli("launch", str(yaml), "--now", MON.isoformat())
    tick(cli, MON)
    assert names(smtp_sink, "elena", "James") == [True]  # the warm intro named him
    before = len(smtp_sink.handler.received)

    out = cli("consent", "revoke", "james-hervin", "--now", (MON + timedelta(hours=2)).isoformat())
    assert "2 enrollment(s) naming them are held" in out.stdout
    h = held(cli)
    assert {"elena.park@northbank.example", "sam.ortiz@cleardesk.example"} <= set(h)
    assert "revoked consent" in str(h["elena.park@northbank.example"]["reason"])

    tick(cli, FRI)  # the follow-ups are due: neither names James, nor goes out at all
    assert names(smtp_sink, "elena", "James", before) == []
    assert names(smtp_sink, "sam", "James", before) == []
    assert all(b"Hervin" not in raw for raw, _ in received(smtp_sink, "", before))

    # Release is refused while he may not be named; the audit says who, when and via what.
    elena_id = str(h["elena.park@northbank.example"]["id"])
    refused = cli("release", elena_id, code=1)
    assert "may not be named" in refused.stderr + refused.stdout
    (change,) = [c for c in cli.json("consent", "list") if c["via"] == "cli"]
    assert (change["referrer"], change["consent"], change["by"], change["current"]) == (
        "james-hervin",
        "revoked",
        "ops@acme.example",
        True,
    )
    assert change["at"].startswith("2026-11-23T16:00")

    # Granted again: a person releases, and the held follow-up goes out naming him.
    cli("consent", "grant", "james-hervin", "--now", FRI.isoformat())
    cli("release", elena_id, "--now", FRI.isoformat())
    tick(cli, FRI + timedelta(hours=1))
    assert names(smtp_sink, "elena", "James", before) == [True]


def test_a_relaunch_whose_csv_revokes_consent_stops_the_named_follow_up(
    cli: Cli, tmp_path: Path, smtp_sink: Sink
) -> None:
    yaml = campaign(cli, tmp_path / "a", smtp_sink)
    cli("launch", str(yaml), "--now", MON.isoformat())
    tick(cli, MON)
    before = len(smtp_sink.handler.received)
    referrers = yaml.parent / "referrers.csv"
    lines = referrers.read_text().splitlines()
    lines[1] = lines[1].removesuffix(",yes") + ",no"  # james-hervin withdraws
    referrers.write_text("\n".join(lines) + "\n")
    out = cli("launch", str(yaml), "--now", (MON + timedelta(hours=3)).isoformat())

    tick(cli, FRI)
    tick(cli, FRI + timedelta(days=3))
    assert all(b"James" not in raw for raw, _ in received(smtp_sink, "", before))
    assert all("James" not in text for _, text in received(smtp_sink, "", before))
    assert "2 live enrollment(s) naming them held" in out.stdout
    change = cli.json("consent", "list", "--referrer", "james-hervin")[-1]
    assert (change["via"], change["consent"], change["current"]) == ("launch", "revoked", True)

    # Launching the unchanged file again does not undo a revocation made since by a person.
    cli("consent", "revoke", "jon-smith")
    cli("launch", str(yaml), "--now", (MON + timedelta(hours=4)).isoformat())
    jon = cli.json("consent", "list", "--referrer", "jon-smith")
    assert [c["consent"] for c in jon if c["current"]] == ["revoked"]


def test_a_revocation_in_another_campaign_reaches_this_one(
    cli: Cli, tmp_path: Path, smtp_sink: Sink
) -> None:
    first = campaign(cli, tmp_path / "a", smtp_sink)
    cli("launch", str(first), "--now", MON.isoformat())
    second = campaign(cli, tmp_path / "b", smtp_sink, name="q4-second")
    # A prospect of the second campaign, referred by James too.
    with (second.parent / "prospects.csv").open("a") as f:
        f.write("li.wei@orbit.example,Li,Wei,CTO,Orbit,America/New_York,banking\n")
    (second.parent / "referrals.csv").write_text(
        "referrer_id,prospect_email,strength,context\n"
        "james-hervin,li.wei@orbit.example,5,your former colleague at Chase\n"
    )
    unknown = cli("consent", "revoke", "james", code=1)
    assert "no referrer 'james' in any launched campaign" in unknown.stderr
    assert (
        "not an email address"
        in cli("consent", "grant", "james-hervin", "--prospect", "li", code=1).stderr
    )
    cli("consent", "revoke", "james-hervin", "--prospect", "Li.Wei@orbit.example")
    plan = cli.json("plan", str(second), "--now", MON.isoformat())
    (li,) = [p for p in plan["enroll"] if p["email"] == "li.wei@orbit.example"]
    assert (li["may_name_referrer"], li["sequence"]) == (False, "unnamed")
    assert "revoked consent" in li["why"]
    cli("launch", str(second), "--now", MON.isoformat())
    tick(cli, MON)
    assert names(smtp_sink, "li.wei", "James") == [False]
    assert names(smtp_sink, "elena", "James") == [True]  # the revocation was for Li only


REFERRERS = """id,name,email,title,company,is_customer,nps,our_strength,our_context,consent
star,Stella Starr,stella@star.example,CEO,Star,yes,10,5,has been a customer for years,no
agreed,Ada Agreed,ada@agreed.example,CTO,Agreed,yes,9,4,has run our product since 2023,yes
grump,Gus Grumble,gus@grump.example,CFO,Grump,yes,3,5,was a customer until last year,yes
"""
REFERRALS = """referrer_id,prospect_email,strength,context
star,elena.park@northbank.example,5,your former colleague at Chase
agreed,elena.park@northbank.example,4,your board colleague
grump,sam.ortiz@cleardesk.example,5,your former colleague at Rakuten
"""


def _ranked_campaign(cli: Cli, tmp_path: Path, sink: Sink) -> Path:
    yaml = campaign(cli, tmp_path / "a", sink)
    yaml.write_text(
        yaml.read_text().replace(
            "warm_when: {min_our_strength: 4, min_their_strength: 4}",
            "warm_when: {min_our_strength: 4, min_their_strength: 4, min_nps: 7}",
        )
    )
    (yaml.parent / "referrers.csv").write_text(REFERRERS)
    (yaml.parent / "referrals.csv").write_text(REFERRALS)
    return yaml


def _plan(cli: Cli, yaml: Path) -> dict[str, dict[str, object]]:
    return {p["email"]: p for p in cli.json("plan", str(yaml), "--now", MON.isoformat())["enroll"]}


def test_a_path_that_may_be_named_outranks_a_stronger_one_that_may_not(
    cli: Cli, tmp_path: Path, smtp_sink: Sink
) -> None:
    yaml = _ranked_campaign(cli, tmp_path, smtp_sink)
    elena = _plan(cli, yaml)["elena.park@northbank.example"]
    assert (elena["referrer_id"], elena["may_name_referrer"], elena["sequence"]) == (
        "agreed",
        True,
        "warm",
    )
    assert "not the stronger star" in str(elena["why"])
    assert "not consented" in str(elena["why"])
    table = cli("plan", str(yaml), "--now", MON.isoformat()).stdout
    assert "not the stronger star" in table

    cli("launch", str(yaml), "--now", MON.isoformat())
    tick(cli, MON)
    assert names(smtp_sink, "elena", "Ada") == [True]
    assert names(smtp_sink, "elena", "Stella") == [False]


def test_a_detractor_is_never_named_not_even_in_a_cold_intro(
    cli: Cli, tmp_path: Path, smtp_sink: Sink
) -> None:
    yaml = _ranked_campaign(cli, tmp_path, smtp_sink)
    p = _plan(cli, yaml)["sam.ortiz@cleardesk.example"]
    assert (p["referrer_id"], p["may_name_referrer"], p["temperature"]) == ("grump", False, "cold")
    assert p["sequence"] == "unnamed" and "detractor (NPS 3 < 7)" in str(p["why"])

    cli("launch", str(yaml), "--now", MON.isoformat())
    tick(cli, MON)
    ((raw, text),) = received(smtp_sink, "sam")
    assert b"Grumble" not in raw and "Gus" not in text and "Grumble" not in text


def test_a_revocation_between_claim_and_data_stops_the_message_before_data(
    cli: Cli, tmp_path: Path, smtp_sink: Sink, uow_factory: object
) -> None:
    """The race: the sender has claimed James's drafts when consent is revoked; the check
    right before DATA reads the live ledger, so no DATA is sent for them (and they are held)."""
    import random

    from sequencer.adapters.smtp import SmtpMailer
    from sequencer.core.drafts import DraftConfig
    from sequencer.core.naming import ConsentChange, Via
    from sequencer.services.runner import Deps, run_pass
    from sequencer.services.sending import SendConfig

    yaml = campaign(cli, tmp_path / "a", smtp_sink)
    cli("launch", str(yaml), "--now", MON.isoformat())
    cli("tick", "--now", MON.isoformat(), "--only", "draft")
    revoked: list[bool] = []

    class Racing(SmtpMailer):
        def send(self, account, envelope_from, recipient, message, before_data):  # type: ignore[no-untyped-def]
            def late() -> None:
                if not revoked:  # only the ledger row: as if the enrollment were stored by a
                    revoked.append(True)  # launch the revocation's hold could not yet see
                    with uow_factory() as uow:  # type: ignore[operator]
                        uow.repo.add_consent_change(
                            ConsentChange("james-hervin", None, False, "ops", Via.CLI, MON)
                        )
                        uow.commit()
                before_data()

            return super().send(account, envelope_from, recipient, message, late)

    deps = Deps(
        uow_factory=uow_factory,  # type: ignore[arg-type]
        draft_cfg=DraftConfig(SECRET, "https://refseq.acme.example", Path("templates/email")),
        send_cfg=SendConfig(env={}),
        mailer_factory=lambda: Racing(retry_attempts=1, sleep=lambda s: None),
        rng=random.Random(5),
    )
    try:
        run_pass(deps, MON, ["send"])
    finally:
        deps.close()
    assert revoked
    got = received(smtp_sink, "")
    assert got and all(b"James" not in raw for raw, _ in got)
    assert not received(smtp_sink, "elena") and not received(smtp_sink, "sam")
    h = held(cli)
    assert {"elena.park@northbank.example", "sam.ortiz@cleardesk.example"} <= set(h)
    assert [d["state"] for d in cli.json("queue", "--attention")] == []


def test_drafting_and_the_claim_read_the_ledger_not_the_snapshot(
    cli: Cli, tmp_path: Path, smtp_sink: Sink, uow_factory: Any
) -> None:
    """Ledger rows only (as if written by a launch that raced the revocation's hold): the
    drafting tick makes no draft naming the referrer, the claim sends none already drafted."""
    from sequencer.core.naming import ConsentChange, Via

    def revoke_in_ledger_only(referrer: str) -> None:
        with uow_factory() as uow:
            uow.repo.add_consent_change(ConsentChange(referrer, None, False, "ops", Via.CLI, MON))
            uow.commit()

    yaml = campaign(cli, tmp_path / "a", smtp_sink)
    cli("launch", str(yaml), "--now", MON.isoformat())
    revoke_in_ledger_only("jon-smith")  # before drafting
    cli("tick", "--now", MON.isoformat(), "--only", "draft")
    revoke_in_ledger_only("james-hervin")  # drafted already, before sending
    cli("tick", "--now", MON.isoformat(), "--only", "send")
    got = received(smtp_sink, "")
    assert got and all(b"James" not in raw and b"Jon Smith" not in raw for raw, _ in got)
    h = held(cli)
    for prospect in ("marc.dubois", "elena.park", "sam.ortiz"):  # due at MON (John: not yet)
        assert any(k.startswith(prospect) for k in h), prospect
    with uow_factory() as uow:
        views = uow.repo.list_drafts(list(DraftState))
        by_prospect = {v.draft.to_email.split("@")[0]: v.draft for v in views}
        # drafting held Marc (Jon's) without a draft; James's drafts were never even claimed
        assert "marc.dubois" not in by_prospect
        for name in ("elena.park", "sam.ortiz"):
            d = by_prospect[name]
            actions = [ev.action for ev in uow.repo.draft_events(d.id)]
            assert d.state.value == "approved" and "claim" not in actions, (name, actions)
