"""Sending over real SMTP (aiosmtpd on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import update

from sequencer.adapters.db.tables import Draft
from sequencer.adapters.smtp import SmtpMailer
from sequencer.core.drafts import DraftConfig
from sequencer.core.states import DraftState, EnrollmentState
from sequencer.services.runner import Deps, replay, run_pass
from sequencer.services.sending import SendConfig, send_due, sweep
from tests.cli_helpers import Cli, init_example
from tests.smtp_sink import Sink

MON = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York
SECRET = "test-secret-key-0123456789"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    c = Cli(db_url, tmp_path)
    c.env["REFSEQ_SECRET_KEY"] = SECRET
    return c


def campaign(
    cli: Cli, tmp_path: Path, sink: Sink, *, auto: bool = True, min_gap: str = "0s", cap: int = 150
) -> Path:
    yaml = init_example(cli, tmp_path / "camp")
    text = yaml.read_text().replace("port: 2525", f"port: {sink.port}")
    text = text.replace("min_gap: 90s", f"min_gap: {min_gap}").replace(
        "daily_cap: 150", f"daily_cap: {cap}"
    )
    if auto:
        text = text.replace("approval: required", "approval: auto")
    yaml.write_text(text)
    cli("launch", str(yaml), "--now", MON.isoformat())
    return yaml


_OPEN: list[Deps] = []


@pytest.fixture(autouse=True)
def _close_mailers():
    yield
    while _OPEN:
        _OPEN.pop().close()


def deps(uow_factory, mailer: SmtpMailer | None = None) -> Deps:
    d = Deps(
        uow_factory=uow_factory,
        draft_cfg=DraftConfig(SECRET, "https://refseq.acme.example", Path("templates/email")),
        send_cfg=SendConfig(env={}, max_attempts=3),
        mailer_factory=lambda: mailer or SmtpMailer(retry_attempts=1, sleep=lambda s: None),
        rng=random.Random(7),
    )
    _OPEN.append(d)
    return d


def sent_rows(uow_factory) -> dict[tuple[str, int], datetime]:
    with uow_factory() as uow:
        views = uow.repo.list_drafts([DraftState.SENT])
    return {(v.draft.to_email.split("@")[0], v.draft.step_number): v.draft.sent_at for v in views}


def test_warm_and_cold_sequences_go_out_at_the_right_local_times(
    cli, tmp_path, smtp_sink, uow_factory
):
    campaign(cli, tmp_path, smtp_sink)
    cli("run", "--from", MON.isoformat(), "--until", "2026-12-10T00:00:00+00:00", "--step", "1h")
    assert sent_rows(uow_factory) == {
        # warm (NY): intro Monday 09:00 local; follow-up 3 business days later, same hour
        ("elena.park", 1): utc(2026, 11, 23, 14),
        ("elena.park", 2): utc(2026, 11, 26, 14),
        ("sam.ortiz", 1): utc(2026, 11, 23, 14),
        ("sam.ortiz", 2): utc(2026, 11, 26, 14),
        # warm (Chicago): the window opens an hour later in UTC
        ("john.reyes", 1): utc(2026, 11, 23, 15),
        ("john.reyes", 2): utc(2026, 11, 26, 15),
        # cold (London 14:00, Paris 15:00 local: inside the window at launch): 3 steps
        ("priya.nair", 1): utc(2026, 11, 23, 14),
        ("priya.nair", 2): utc(2026, 11, 27, 14),
        ("priya.nair", 3): utc(2026, 12, 7, 14),
        ("marc.dubois", 1): utc(2026, 11, 23, 14),
        ("marc.dubois", 2): utc(2026, 11, 27, 14),
        ("marc.dubois", 3): utc(2026, 12, 7, 14),
        # unnamed (Tokyo): waits for 09:00 JST, follow-up 4 business days later
        ("aiko.tanaka", 1): utc(2026, 11, 24, 0),
        ("aiko.tanaka", 2): utc(2026, 11, 30, 0),
    }
    received = smtp_sink.handler.received
    assert len(received) == 14 and len(set(smtp_sink.handler.message_ids())) == 14
    by_subject = {(r.rcpt_tos[0], r.message["Subject"]): r.message for r in received}
    first = next(
        m for (to, s), m in by_subject.items() if to.startswith("elena") and not s.startswith("Re:")
    )
    follow = next(
        m for (to, s), m in by_subject.items() if to.startswith("elena") and s.startswith("Re:")
    )
    assert follow["Subject"] == "Re: " + first["Subject"]
    assert (
        follow["In-Reply-To"] == first["Message-ID"] and follow["References"] == first["Message-ID"]
    )
    assert {r.mail_from for r in received} == {"dana@acme.example"}
    with uow_factory() as uow:
        (c,) = uow.repo.list_campaigns()
        states = {e.prospect_email: e.state for e in uow.repo.list_enrollments(c.campaign.id)}
    assert set(states.values()) == {EnrollmentState.COMPLETED}


def test_required_approval_holds_the_send_until_a_rep_approves(
    cli, tmp_path, smtp_sink, uow_factory
):
    campaign(cli, tmp_path, smtp_sink, auto=False)
    d = deps(uow_factory)
    run_pass(d, MON)
    assert smtp_sink.handler.received == []
    cli("approve", "--all", "--campaign", "q4-fintech-intros")
    report = run_pass(d, MON + timedelta(minutes=5))
    assert report.sending is not None and report.sending.sent == 4
    assert sorted(r.rcpt_tos[0] for r in smtp_sink.handler.received) == [
        "elena.park@northbank.example",
        "marc.dubois@paysage.example",
        "priya.nair@fintrust.example",
        "sam.ortiz@cleardesk.example",
    ]


def test_the_daily_cap_and_min_gap_hold_and_status_says_so(cli, tmp_path, smtp_sink, uow_factory):
    campaign(cli, tmp_path, smtp_sink, min_gap="10m", cap=3)
    replay(deps(uow_factory), MON, MON + timedelta(hours=3), timedelta(minutes=5))
    times = sorted(r.at for r in smtp_sink.handler.received)
    sent = sorted(sent_rows(uow_factory).values())
    assert len(sent) == 3  # the cap: 3 per rolling 24 h
    gaps = [b - a for a, b in pairwise(sent)]
    assert all(g >= timedelta(minutes=10) for g in gaps), gaps
    assert all(g <= timedelta(minutes=15) for g in gaps), gaps  # gap + jitter, on a 5-min grid
    assert len(times) == 3
    status = cli.json("status", "--now", (MON + timedelta(hours=3)).isoformat())
    (mailbox,) = status["mailboxes"]
    assert (mailbox["sent_last_24h"], mailbox["daily_cap"]) == (3, 3)
    assert mailbox["blocked"] == "daily cap reached (3/3 in 24 h)"
    assert mailbox["next_send_at"] == (sent[0] + timedelta(hours=24)).isoformat()
    # The next day the budget frees up as Monday's sends age out; Tokyo's window is closed then.
    replay(
        deps(uow_factory),
        MON + timedelta(hours=24),
        MON + timedelta(hours=27),
        timedelta(minutes=5),
    )
    later = sent_rows(uow_factory)
    assert len(later) == 5 and ("aiko.tanaka", 1) not in later


def test_a_temporary_refusal_is_retried_and_sent_once(cli, tmp_path, smtp_sink, uow_factory):
    campaign(cli, tmp_path, smtp_sink)
    smtp_sink.handler.rcpt_replies = ["451 4.3.0 Try again later", "421 4.7.0 Too busy"]
    d = deps(uow_factory)
    first = run_pass(d, MON).sending
    assert first is not None and (first.retried, first.sent) == (2, 2)
    second = run_pass(d, MON + timedelta(minutes=5)).sending
    assert second is not None and second.sent == 2
    assert len(smtp_sink.handler.received) == 4
    assert len(set(smtp_sink.handler.message_ids())) == 4


def test_an_unknown_recipient_fails_and_suppresses_the_address(
    cli, tmp_path, smtp_sink, uow_factory
):
    campaign(cli, tmp_path, smtp_sink)
    smtp_sink.handler.rcpt_replies = ["550 5.1.1 <elena.park@northbank.example>: no such user"]
    report = run_pass(deps(uow_factory), MON).sending
    assert report is not None and (report.failed, report.sent) == (1, 3)
    with uow_factory() as uow:
        assert "elena.park@northbank.example" in uow.repo.suppressed_values()
        views = {v.draft.to_email: v for v in uow.repo.list_drafts(list(DraftState))}
    elena = views["elena.park@northbank.example"]
    assert elena.draft.state is DraftState.FAILED and "5.1.1" in (elena.draft.last_error or "")
    assert elena.enrollment.state is EnrollmentState.BOUNCED


def test_a_connection_lost_after_the_data_needs_attention_and_is_never_resent(
    cli, tmp_path, smtp_sink, uow_factory
):
    campaign(cli, tmp_path, smtp_sink)
    smtp_sink.handler.drop_after_data = 1
    d = deps(uow_factory)
    report = run_pass(d, MON).sending
    assert report is not None and report.attention == 1
    replay(d, MON + timedelta(minutes=5), MON + timedelta(hours=2), timedelta(minutes=5))
    with uow_factory() as uow:
        (attention,) = uow.repo.list_drafts([DraftState.NEEDS_ATTENTION])
    ids = smtp_sink.handler.message_ids()
    assert ids.count(attention.draft.message_id) == 1  # the server got it once; never resent
    queue = cli.json("queue", "--attention")
    assert [q["id"] for q in queue] == [attention.draft.id]


def test_the_sweeper_releases_or_parks_stuck_sends(cli, tmp_path, smtp_sink, uow_factory):
    """Stale means stale on the database's clock: a sweeper whose clock is a day ahead (or
    `tick --now <future>`) leaves fresh claims alone; claims the database has seen age past
    ``stale_after`` are released (DATA never started) or parked (it may have been delivered)."""
    campaign(cli, tmp_path, smtp_sink)
    d = deps(uow_factory)
    run_pass(d, MON, stages=["draft"])
    with uow_factory() as uow:
        a, b = uow.repo.list_drafts([DraftState.APPROVED])[:2]
        uow.repo.claim_drafts([(a.draft.id, a.draft.revision)], "box", MON)
        (cb,) = uow.repo.claim_drafts([(b.draft.id, b.draft.revision)], "box", MON)
        uow.repo.update_draft(cb.id, cb.revision, MON, data_started_at=MON)
        uow.commit()
    ahead = sweep(uow_factory, d.send_cfg, MON + timedelta(days=1))  # the caller's clock is ahead
    assert (ahead.released, ahead.attention) == (0, 0)  # the claims are seconds old for the DB
    with uow_factory() as uow:  # the database's clock moves on 11 minutes
        uow.session.execute(
            update(Draft)
            .where(Draft.id.in_([a.draft.id, b.draft.id]))
            .values(claim_db_at=datetime.now(UTC) - timedelta(minutes=11))
        )
        uow.commit()
    report = sweep(uow_factory, d.send_cfg, MON)  # even with the caller's clock behind
    assert (report.released, report.attention) == (1, 1)
    with uow_factory() as uow:
        assert uow.repo.get_draft(a.draft.id).draft.state is DraftState.APPROVED
        assert uow.repo.get_draft(b.draft.id).draft.state is DraftState.NEEDS_ATTENTION


def test_two_senders_racing_never_send_twice(cli, tmp_path, smtp_sink, uow_factory):
    yaml = init_example(cli, tmp_path / "many")
    rows = "".join(f"p{i}@bulk.example,P{i},X,,,America/New_York,\n" for i in range(40))
    refs = "".join(f"james-hervin,p{i}@bulk.example,5,your former colleague\n" for i in range(40))
    (yaml.parent / "prospects.csv").write_text((yaml.parent / "prospects.csv").read_text() + rows)
    (yaml.parent / "referrals.csv").write_text((yaml.parent / "referrals.csv").read_text() + refs)
    text = (
        yaml.read_text()
        .replace("port: 2525", f"port: {smtp_sink.port}")
        .replace("min_gap: 90s", "min_gap: 0s")
    )
    yaml.write_text(text.replace("approval: required", "approval: auto"))
    cli("launch", str(yaml), "--now", MON.isoformat())
    run_pass(deps(uow_factory), MON, stages=["draft"])
    errors: list[BaseException] = []

    def sender() -> None:
        mailer = SmtpMailer(retry_attempts=1)
        try:
            send_due(uow_factory, mailer, SendConfig(env={}), MON, random.Random())
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)
        finally:
            mailer.close()

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = smtp_sink.handler.message_ids()
    assert len(ids) == len(set(ids)), "a draft was sent twice"
    with uow_factory() as uow:
        sent = uow.repo.list_drafts([DraftState.SENT])
    assert len(sent) == len(ids) == 44
    assert not [e for e in errors if "database is locked" not in str(e)]


def test_messages_are_dkim_signed_when_the_campaign_names_a_key(
    cli, tmp_path, smtp_sink, uow_factory
):
    import base64
    import subprocess

    import dkim

    key = tmp_path / "camp-dkim.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    yaml = init_example(cli, tmp_path / "camp")
    text = (
        yaml.read_text()
        .replace("port: 2525", f"port: {smtp_sink.port}")
        .replace("min_gap: 90s", "min_gap: 0s")
    )
    text = text.replace(
        "  daily_cap: 150",
        f"  dkim: {{selector: s2026, domain: acme.example, key_file: {key}}}\n  daily_cap: 150",
    )
    yaml.write_text(text.replace("approval: required", "approval: auto"))
    cli("launch", str(yaml), "--now", MON.isoformat())
    run_pass(deps(uow_factory), MON)
    (first, *_) = smtp_sink.handler.received
    assert b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=acme.example" in first.data
    dns = {b"s2026._domainkey.acme.example.": record}
    assert dkim.verify(first.data, dnsfunc=lambda name, timeout=5: dns.get(name))
    assert not dkim.verify(
        first.data.replace(b"Hi ", b"Yo ", 1), dnsfunc=lambda name, timeout=5: dns.get(name)
    )
