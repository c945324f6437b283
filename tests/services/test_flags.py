""" "I don't know this referrer" holds in every campaign and every state, now and later.

Through the `refseq` entry point on SQLite and PostgreSQL: real aiosmtpd out, real Dovecot in;
what reached the SMTP peer is parsed with the standard library.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import Cli, imap_at, init_example
from tests.dovecot import Dovecot
from tests.smtp_sink import Sink

MON = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 New York
SECRET = "test-secret-key-0123456789"
REP = "dana@acme.example"


@pytest.fixture
def world(db_url: str, tmp_path: Path, smtp_sink: Sink, dovecot: Dovecot, imap_user: str) -> Any:
    login, password = dovecot.user(imap_user)
    cli = Cli(db_url, tmp_path)
    cli.env.update(REFSEQ_SECRET_KEY=SECRET, TEST_IMAP_PW=password, REFSEQ_ACTOR="ops")

    def make(folder: str, name: str = "q4-fintech-intros") -> Path:
        yaml = init_example(cli, tmp_path / folder)
        text = (
            imap_at(yaml.read_text(), dovecot.port)
            .replace("port: 2525", f"port: {smtp_sink.port}")
            .replace("min_gap: 90s", "min_gap: 0s")
            .replace(
                "username: dana, password_env: REFSEQ_IMAP_PASSWORD",
                f"username: {login}, password_env: TEST_IMAP_PW",
            )
            .replace("campaign: q4-fintech-intros", f"campaign: {name}")
            .replace("approval: required", "approval: auto")
        )
        yaml.write_text(text)
        return yaml

    return {"cli": cli, "make": make, "sink": smtp_sink, "dovecot": dovecot, "user": imap_user}


def texts(sink: Sink, prefix: str, since: int = 0) -> list[tuple[bytes, str]]:
    out = []
    for r in sink.handler.received[since:]:
        if r.rcpt_tos[0].startswith(prefix):
            msg = email.message_from_bytes(r.data, policy=email.policy.default)
            parts = [str(msg["Subject"])]
            parts += [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
            out.append((r.data, "\n".join(parts)))
    return out


def answer(world: Any, to_prefix: str, sender: str, body: str, at: datetime, **hdr: str) -> None:
    ((raw, _),) = texts(world["sink"], to_prefix)[:1]
    sent = email.message_from_bytes(raw, policy=email.policy.default)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Date"] = sender, REP, format_datetime(at)
    msg["Subject"] = hdr.pop("subject", "Re: " + str(sent["Subject"]))
    msg["Message-ID"] = f"<r-{to_prefix}-{at.timestamp():.0f}@example.org>"
    msg["In-Reply-To"] = msg["References"] = sent["Message-ID"]
    for k, v in hdr.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    world["dovecot"].append(world["user"], "INBOX", msg.as_bytes(), date=at)


def ids(cli: Cli) -> dict[str, dict[str, Any]]:
    return {h["prospect"]: h for h in cli.json("held")}


def test_a_flag_holds_the_referrer_everywhere_tells_the_rep_and_can_be_cleared(world: Any) -> None:
    cli, sink = world["cli"], world["sink"]
    yaml = world["make"]("a")
    cli("launch", str(yaml), "--now", MON.isoformat())
    cli("tick", "--now", MON.isoformat())
    assert [("James" in t) for _, t in texts(sink, "sam")] == [True]

    tue, wed = MON + timedelta(days=1), MON + timedelta(days=2)
    answer(
        world,
        "sam",
        "Sam Ortiz <sam.ortiz@cleardesk.example>",
        "I am out of the office with limited access to email. I will be back on 7 December 2026.",
        tue,
        subject="Automatic reply: hello",
        Auto_Submitted="auto-replied",
    )
    cli("tick", "--now", (tue + timedelta(minutes=5)).isoformat())
    answer(
        world,
        "elena",
        "Elena Park <elena.park@northbank.example>",
        "Sorry, I don't know James. Who is he?",
        wed,
    )
    before = len(sink.handler.received)
    cli("tick", "--now", (wed + timedelta(minutes=5)).isoformat())

    # Sam, paused for his out-of-office, comes back on the 7th: no step names James.
    cli(
        "run",
        "--from",
        (wed + timedelta(hours=1)).isoformat(),
        "--until",
        datetime(2026, 12, 9, 16, tzinfo=UTC).isoformat(),
        "--step",
        "6h",
    )
    assert all(b"James" not in raw for raw, _ in texts(sink, "sam", before))
    assert all("James" not in t for _, t in texts(sink, "sam", before))

    # The flag is listed, and the rep is told (the existing handoff notice, by email).
    (flag,) = cli.json("flags")
    assert (flag["referrer"], flag["prospect"], flag["state"]) == (
        "james-hervin",
        "elena.park@northbank.example",
        "open",
    )
    notices = texts(sink, REP, before)
    assert notices and "don't know James" in notices[0][1]
    # …and James is not thanked for a referral the prospect disowns.
    assert [q for q in cli.json("queue") if q["prospect"] == "james@pixel.example"] == []
    # Sam is held (not paused): a person decides, and `refseq held` says why.
    held = ids(cli)
    assert "flagged" in str(held["sam.ortiz@cleardesk.example"]["reason"])

    # A campaign launched later does not name him either, and plan says why.
    later = world["make"]("b", name="q1-later")
    with (later.parent / "prospects.csv").open("a") as f:
        f.write("li.wei@orbit.example,Li,Wei,CTO,Orbit,America/New_York,banking\n")
    (later.parent / "referrals.csv").write_text(
        "referrer_id,prospect_email,strength,context\n"
        "james-hervin,li.wei@orbit.example,5,your former colleague at Chase\n"
    )
    dec10 = datetime(2026, 12, 10, 15, tzinfo=UTC)
    plan = cli.json("plan", str(later), "--now", dec10.isoformat())
    (li,) = [p for p in plan["enroll"] if p["email"] == "li.wei@orbit.example"]
    assert li["may_name_referrer"] is False and "flagged" in li["why"]
    cli("launch", str(later), "--now", dec10.isoformat())
    cli("tick", "--now", dec10.isoformat(), "--only", "draft")
    cli("tick", "--now", dec10.isoformat(), "--only", "send")
    ((raw, text),) = texts(sink, "li.wei")
    assert b"James" not in raw and "James" not in text

    # Release is refused while the flag holds (confirmed still holds); cleared, it works.
    sam_id = str(held["sam.ortiz@cleardesk.example"]["id"])
    assert "flagged" in cli("release", sam_id, code=1).stderr
    cli("flags", "confirm", "james-hervin")
    assert cli.json("flags")[0]["state"] == "confirmed"
    cli("release", sam_id, code=1)
    cli("flags", "clear", str(flag["id"]))
    assert cli.json("flags") == []
    assert [f["resolved_by"] for f in cli.json("flags", "--all")] == ["ops"]
    cli("release", sam_id, "--now", dec10.isoformat())
    assert "sam.ortiz@cleardesk.example" not in ids(cli)


def test_a_paused_enrollment_can_be_released(world: Any) -> None:
    cli = world["cli"]
    yaml = world["make"]("a")
    cli("launch", str(yaml), "--now", MON.isoformat())
    cli("tick", "--now", MON.isoformat())
    tue = MON + timedelta(days=1)
    answer(
        world,
        "sam",
        "Sam Ortiz <sam.ortiz@cleardesk.example>",
        "I am out of the office with limited access to email. I will be back on 7 December 2026.",
        tue,
        subject="Automatic reply: hello",
        Auto_Submitted="auto-replied",
    )
    cli("tick", "--now", (tue + timedelta(minutes=5)).isoformat())
    campaign = cli.json("campaign", "show", "q4-fintech-intros")
    assert campaign  # the campaign exists; now find Sam's enrollment id
    from sequencer.adapters.db.session import make_uow_factory

    factory = make_uow_factory(cli.env["REFSEQ_DATABASE_URL"])
    try:
        with factory() as uow:
            cid = uow.repo.list_campaigns()[0].campaign.id
            (sam,) = [
                e
                for e in uow.repo.list_enrollments(cid)
                if e.prospect_email == "sam.ortiz@cleardesk.example"
            ]
    finally:
        factory.dispose()
    assert sam.state.value == "paused"
    out = cli("release", str(sam.id), "--now", (tue + timedelta(hours=1)).isoformat())
    assert "active" in out.stdout
