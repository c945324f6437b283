"""Replies end to end: real SMTP out (aiosmtpd), real IMAP in (Dovecot), on both databases."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sequencer.adapters.imap import ImapMailboxReader
from sequencer.adapters.smtp import SmtpMailer
from sequencer.adapters.webhook import UrllibPoster
from sequencer.core.drafts import DraftConfig
from sequencer.core.states import DraftState, EnrollmentState
from sequencer.services.inbox import InboxConfig
from sequencer.services.runner import Deps, replay, run_pass
from sequencer.services.sending import SendConfig
from tests.cli_helpers import Cli, imap_at, init_example
from tests.smtp_sink import Sink

MON = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 New York
SECRET = "test-secret-key-0123456789"
HOOK_SECRET = "crm-endpoint-secret-5f4e3d2c"  # routing.webhook_secret_env: the CRM's own
REP = "dana@acme.example"


class Hooks:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []


@pytest.fixture
def webhook() -> Iterator[tuple[str, Hooks]]:
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hooks.calls.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", hooks
    server.shutdown()
    server.server_close()


@pytest.fixture
def world(db_url, tmp_path: Path, smtp_sink: Sink, dovecot, imap_user, webhook, uow_factory):
    login, password = dovecot.user(imap_user)
    url, hooks = webhook
    cli = Cli(db_url, tmp_path)
    cli.env["REFSEQ_SECRET_KEY"] = SECRET
    yaml = init_example(cli, tmp_path / "camp")
    text = (
        yaml.read_text()
        .replace("port: 2525", f"port: {smtp_sink.port}")
        .replace("min_gap: 90s", "min_gap: 0s")
    )
    text = imap_at(text, dovecot.port).replace(
        "username: dana, password_env: REFSEQ_IMAP_PASSWORD",
        f"username: {login}, password_env: TEST_IMAP_PW",
    )
    text = text.replace("folder: INBOX}", "folder: INBOX, sent_folder: Sent}")
    yaml.write_text(text.replace("approval: required", "approval: auto"))
    cli("launch", str(yaml), "--now", MON.isoformat())
    env = {"TEST_IMAP_PW": password, "CRM_WEBHOOK_URL": url, "CRM_WEBHOOK_SECRET": HOOK_SECRET}
    drafts = DraftConfig(SECRET, "https://refseq.acme.example", Path("templates/email"))
    deps = Deps(
        uow_factory=uow_factory,
        draft_cfg=drafts,
        send_cfg=SendConfig(env=env),
        mailer_factory=lambda: SmtpMailer(retry_attempts=1, sleep=lambda s: None),
        rng=random.Random(3),
        reader_factory=ImapMailboxReader,
        poster=UrllibPoster(timeout=5),
        inbox_cfg=InboxConfig(env=env, draft_cfg=drafts),
    )
    yield {
        "cli": cli,
        "deps": deps,
        "sink": smtp_sink,
        "dovecot": dovecot,
        "user": imap_user,
        "hooks": hooks,
    }
    deps.close()


def sent_to(sink: Sink, prefix: str) -> list[EmailMessage]:
    return [r.message for r in sink.handler.received if r.rcpt_tos[0].startswith(prefix)]


def reply(
    to_msg: EmailMessage,
    body: str,
    at: datetime,
    sender: str,
    subject: str | None = None,
    **headers: str,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = REP
    msg["Subject"] = subject or "Re: " + str(to_msg["Subject"])
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = f"<reply-{hashlib.sha1(body.encode()).hexdigest()[:10]}@northbank.example>"
    msg["In-Reply-To"] = to_msg["Message-ID"]
    msg["References"] = to_msg["Message-ID"]
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    return msg.as_bytes()


def enrollment(uow_factory, email: str):
    with uow_factory() as uow:
        campaign_id = uow.repo.list_campaigns()[0].campaign.id
        (e,) = [x for x in uow.repo.list_enrollments(campaign_id) if x.prospect_email == email]
        return e


def test_a_reply_stops_the_follow_up_and_lands_with_the_rep(world, uow_factory):
    deps, sink, dovecot = world["deps"], world["sink"], world["dovecot"]
    run_pass(deps, MON)
    (intro,) = sent_to(sink, "elena")
    # Thursday 13:59Z, a minute before the follow-up is due, Elena answers.
    thu = datetime(2026, 11, 26, 13, 59, tzinfo=UTC)
    body = "Sounds good, Tuesday?\n\nElena\n\nOn Mon, Nov 23, 2026, Dana Whitfield wrote:\n> Hi Elena,\n> James suggested we talk.\n"
    dovecot.append(
        world["user"],
        "INBOX",
        reply(intro, body, thu, "Elena Park <elena.park@northbank.example>"),
        date=thu,
    )
    replay(
        deps, MON + timedelta(hours=1), datetime(2026, 11, 28, 0, 0, tzinfo=UTC), timedelta(hours=1)
    )

    assert len(sent_to(sink, "elena")) == 1  # the follow-up due Thursday 14:00Z never went out
    assert len(sent_to(sink, "sam")) == 2  # Sam, who did not reply, got his follow-up
    e = enrollment(uow_factory, "elena.park@northbank.example")
    assert e.state is EnrollmentState.REPLIED
    (notice,) = sent_to(sink, REP)
    assert notice["Subject"] == "Reply from Elena Park (Northbank)"
    text = notice.get_body(("plain",)).get_content()
    assert (
        "> Sounds good, Tuesday?" in text
        and "James Hervin" in text
        and "your former colleague at Chase" in text
    )
    assert notice["Auto-Submitted"] == "auto-generated"
    assert f"- Mon 23 Nov 2026 14:00 UTC: {intro['Subject']}" in text  # the thread so far

    handoffs = world["cli"].json("handoffs")
    assert [(h["prospect"], h["intent"], h["notified"]) for h in handoffs] == [
        ("elena.park@northbank.example", "interested", True)
    ]
    assert handoffs[0]["reply_text"].startswith("Sounds good, Tuesday?")
    (call,) = world["hooks"].calls  # the webhook fired exactly once
    headers, payload = call
    # Signed with the endpoint's own secret over "t.body", never with REFSEQ_SECRET_KEY.
    fields = dict(p.split("=", 1) for p in headers["X-Refseq-Signature"].split(","))
    signed = fields["t"].encode() + b"." + payload
    expected = hmac.new(HOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert fields["v1"] == expected
    assert json.loads(payload)["prospect"]["email"] == "elena.park@northbank.example"
    with uow_factory() as uow:
        thanks = [
            v
            for v in uow.repo.list_drafts([DraftState.PENDING_APPROVAL])
            if v.draft.to_email == "james@pixel.example"
        ]
    assert len(thanks) == 1 and thanks[0].draft.subject == "Thank you, James"


def test_an_out_of_office_pauses_until_the_return_date(world, uow_factory):
    deps, sink, dovecot = world["deps"], world["sink"], world["dovecot"]
    run_pass(deps, MON)
    (intro,) = sent_to(sink, "sam")
    tue = MON + timedelta(days=1)
    raw = reply(
        intro,
        "I am out of the office with limited access to email. I will be back on 7 December 2026.",
        tue,
        "Sam Ortiz <sam.ortiz@cleardesk.example>",
        subject="Automatic reply: " + str(intro["Subject"]),
        Auto_Submitted="auto-replied",
    )
    dovecot.append(world["user"], "INBOX", raw, date=tue)
    run_pass(deps, tue + timedelta(hours=1))
    e = enrollment(uow_factory, "sam.ortiz@cleardesk.example")
    assert e.state is EnrollmentState.PAUSED
    assert e.paused_until == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    replay(
        deps, tue + timedelta(hours=2), datetime(2026, 12, 6, 23, tzinfo=UTC), timedelta(hours=6)
    )
    assert len(sent_to(sink, "sam")) == 1  # nothing while away
    replay(
        deps,
        datetime(2026, 12, 7, 14, tzinfo=UTC),
        datetime(2026, 12, 7, 15, tzinfo=UTC),
        timedelta(hours=1),
    )
    assert len(sent_to(sink, "sam")) == 2  # back on the 7th: the follow-up goes
    assert (
        enrollment(uow_factory, "sam.ortiz@cleardesk.example").state is not EnrollmentState.PAUSED
    )


def test_a_hard_bounce_and_an_unsubscribe_stop_and_suppress(world, uow_factory):
    deps, sink, dovecot = world["deps"], world["sink"], world["dovecot"]
    run_pass(deps, MON)
    (elena,) = sent_to(sink, "elena")
    (sam,) = sent_to(sink, "sam")
    dsn = (
        Path("tests/fixtures/mail/hard_bounce/postfix_user_unknown.eml")
        .read_bytes()
        .replace(b"<abc123@acme.example>", str(elena["Message-ID"]).encode())
    )
    dovecot.append(world["user"], "INBOX", dsn, date=MON + timedelta(hours=2))
    dovecot.append(
        world["user"],
        "INBOX",
        reply(
            sam,
            "Please remove me from your list.",
            MON + timedelta(hours=3),
            "sam.ortiz@cleardesk.example",
        ),
        date=MON + timedelta(hours=3),
    )
    run_pass(deps, MON + timedelta(hours=4))
    with uow_factory() as uow:
        suppressed = uow.repo.suppressed_values()
    assert "sam.ortiz@cleardesk.example" in suppressed
    assert (
        enrollment(uow_factory, "sam.ortiz@cleardesk.example").state is EnrollmentState.UNSUBSCRIBED
    )
    inbound = {r["class"] for r in world["cli"].json("inbox")}
    assert {"hard_bounce", "unsubscribe"} <= inbound
    assert enrollment(uow_factory, "elena.park@northbank.example").state is EnrollmentState.BOUNCED


def test_a_uidvalidity_reset_loses_nothing_and_duplicates_nothing(world, uow_factory):
    deps, sink, dovecot = world["deps"], world["sink"], world["dovecot"]
    run_pass(deps, MON)
    for i, prefix in enumerate(("elena", "sam")):
        (m,) = sent_to(sink, prefix)
        dovecot.append(
            world["user"],
            "INBOX",
            reply(
                m, f"Thanks, noted #{i}?", MON + timedelta(hours=1), f"{prefix}@elsewhere.example"
            ),
            date=MON + timedelta(hours=1),
        )
    run_pass(deps, MON + timedelta(hours=2), ["poll"])
    dovecot.reset_uidvalidity(world["user"])
    (m,) = sent_to(sink, "priya")
    dovecot.append(
        world["user"],
        "INBOX",
        reply(m, "Who is this?", MON + timedelta(hours=3), "priya@elsewhere.example"),
        date=MON + timedelta(hours=3),
    )
    run_pass(deps, MON + timedelta(hours=4), ["poll"])
    rows = world["cli"].json("inbox")
    assert len(rows) == 3  # all three, each once
    assert len({r["id"] for r in rows}) == 3


def test_a_message_that_cannot_be_classified_is_kept_and_holds_the_next_step(world, uow_factory):
    deps, sink, dovecot = world["deps"], world["sink"], world["dovecot"]
    run_pass(deps, MON)
    # From the prospect, but no subject and no text: nothing to go on.
    garbage = (
        b"From: elena.park@northbank.example\r\nContent-Type: multipart/mixed; boundary=x\r\n"
        b"\r\n--x\r\nContent-Type: application/octet-stream\r\n\r\n\x00\xff\xfe\r\n--x--\r\n"
    )
    dovecot.append(world["user"], "INBOX", garbage, date=MON + timedelta(hours=1))
    run_pass(deps, MON + timedelta(hours=2))
    (held,) = world["cli"].json("inbox", "--unhandled")
    assert held["from"] == "elena.park@northbank.example"
    assert enrollment(uow_factory, "elena.park@northbank.example").state is EnrollmentState.HELD
    (held,) = world["cli"].json("held")
    assert held["prospect"] == "elena.park@northbank.example"
    assert "needs a person" in held["reason"]
    replay(deps, MON + timedelta(hours=3), datetime(2026, 11, 28, tzinfo=UTC), timedelta(hours=6))
    assert len(sent_to(sink, "elena")) == 1  # her follow-up waits for a human

    release_at = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York
    world["cli"]("release", str(held["id"]), "--now", release_at.isoformat())
    run_pass(deps, release_at)
    assert len(sent_to(sink, "elena")) == 2  # released: the follow-up goes, once


def test_two_workers_notifying_at_once_email_the_rep_one_notice(world, uow_factory):
    """Overlapping polls (two workers, a slow SMTP server) both find the handoff unnotified:
    the claim lets one of them send it."""
    from sequencer.services.inbox import poll
    from sequencer.services.routing import notify_handoffs

    deps, sink, dovecot = world["deps"], world["sink"], world["dovecot"]
    run_pass(deps, MON)
    (intro,) = sent_to(sink, "elena")
    at = MON + timedelta(hours=1)
    body = "Yes, let's talk. Tuesday at 10?"
    dovecot.append(world["user"], "INBOX", reply(intro, body, at, "elena.park@northbank.example"))
    assert deps.inbox_cfg is not None and deps.reader is not None
    poll(uow_factory, deps.reader, deps.inbox_cfg, at)

    sink.handler.delay = 0.5  # both workers are inside notify_handoffs at once
    reports: list = []

    def worker() -> None:
        with SmtpMailer(retry_attempts=1, sleep=lambda s: None) as mailer:
            reports.append(
                notify_handoffs(uow_factory, mailer, deps.draft_cfg, deps.inbox_cfg.env, at)
            )

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(sent_to(sink, REP)) == 1
    assert sorted(r.notified for r in reports) == [0, 0, 1]
    assert not any(r.errors for r in reports)


def test_a_redirect_hands_off_and_captures_the_colleague_as_a_held_lead(world, uow_factory):
    deps, sink, dovecot, cli = world["deps"], world["sink"], world["dovecot"], world["cli"]
    run_pass(deps, MON)
    (intro,) = sent_to(sink, "elena")
    body = (
        "Thanks for reaching out. Please talk to my colleague Jane Doe (jane.doe@northbank.example), "
        "she handles this.\n\nElena\n"
    )
    dovecot.append(
        world["user"],
        "INBOX",
        reply(intro, body, MON + timedelta(hours=2), "elena.park@northbank.example"),
        date=MON + timedelta(hours=2),
    )
    run_pass(deps, MON + timedelta(hours=3))
    (handoff,) = cli.json("handoffs")
    assert (
        handoff["intent"] == "redirect" and "jane.doe@northbank.example" in handoff["redirect_to"]
    )
    (lead,) = cli.json("held")
    assert lead["prospect"] == "jane.doe@northbank.example" and lead["referrer"] == "James Hervin"
    assert "asked us to talk to them instead" in lead["reason"]
    out = cli("release", str(lead["id"]), "--now", (MON + timedelta(hours=4)).isoformat()).stdout
    assert "active; first step due 2026-11-23 18:00 UTC" in out
    assert cli.json("held") == []
