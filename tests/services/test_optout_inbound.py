"""Opt-outs, forged bounces and mail nobody acted on: real SMTP out (aiosmtpd), real IMAP in
(Dovecot), both databases. Each test fails on the code before issue 13/14 was fixed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from sequencer.core.states import DraftState, EnrollmentState
from sequencer.services.runner import replay, run_pass
from tests.services import test_replies as _replies
from tests.services.test_replies import MON, REP, enrollment, reply, sent_to

webhook = _replies.webhook  # the fixtures of the replies tests: the same world
world = _replies.world

ELENA = "elena.park@northbank.example"
SAM = "sam.ortiz@cleardesk.example"
STRANGER = "ceo@bigcorp.example"  # never a prospect


def suppressed(uow_factory) -> set[str]:
    with uow_factory() as uow:
        return set(uow.repo.suppressed_values())


def open_drafts(uow_factory, email: str) -> list:
    e = enrollment(uow_factory, email)
    with uow_factory() as uow:
        return [d for d in uow.repo.drafts_of(e.id) if d.state is not DraftState.CANCELLED]


def unsubscribed_in_report(cli) -> int:
    out = cli("report", "--format", "json").stdout
    return int(json.loads(out)["total"]["all"]["unsubscribed"])


def dsn(
    recipients: list[str], at: datetime, returned_id: str = "<forged-1@attacker.example>"
) -> bytes:
    """An RFC 3464 delivery-status report, as anyone can write one."""
    per_recipient = "".join(
        f"\nFinal-Recipient: rfc822; {r}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{r}>: User unknown\n"
        for r in recipients
    )
    return (
        f"From: MAILER-DAEMON@mx.attacker.example (Mail Delivery System)\n"
        f"To: {REP}\nSubject: Undelivered Mail Returned to Sender\n"
        f"Date: {format_datetime(at)}\nMessage-ID: <dsn-{at.timestamp():.0f}@mx.attacker.example>\n"
        "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.attacker.example\n"
        f"{per_recipient}\n"
        "--b\nContent-Type: text/rfc822-headers\n\n"
        f"From: {REP}\nTo: {recipients[0]}\nSubject: hello\nMessage-ID: {returned_id}\n\n"
        "--b--\n"
    ).encode()


def test_a_bare_stop_reply_unsubscribes_cancels_and_is_counted(world, uow_factory):
    deps, sink, dovecot, cli = world["deps"], world["sink"], world["dovecot"], world["cli"]
    run_pass(deps, MON)
    (intro,) = sent_to(sink, "elena")
    at = MON + timedelta(hours=2)
    dovecot.append(world["user"], "INBOX", reply(intro, "STOP\n", at, ELENA), date=at)
    run_pass(deps, at + timedelta(minutes=5))

    assert enrollment(uow_factory, ELENA).state is EnrollmentState.UNSUBSCRIBED
    assert ELENA in suppressed(uow_factory)
    assert [d.state for d in open_drafts(uow_factory, ELENA)] == [DraftState.SENT]
    assert unsubscribed_in_report(cli) == 1
    (row,) = [r for r in cli.json("inbox") if r["from"] == ELENA]
    assert (row["class"], row["status"]) == ("unsubscribe", "handled")
    assert not sent_to(sink, REP)  # an opt-out is not a handoff
    replay(
        deps, at + timedelta(hours=1), datetime(2026, 12, 5, tzinfo=MON.tzinfo), timedelta(hours=6)
    )
    assert len(sent_to(sink, "elena")) == 1  # the follow-up never went


def test_an_opt_out_in_german_under_a_quoted_original_unsubscribes(world, uow_factory):
    deps, sink, dovecot = world["deps"], world["sink"], world["dovecot"]
    run_pass(deps, MON)
    (intro,) = sent_to(sink, "sam")
    at = MON + timedelta(hours=3)
    body = (
        "Bitte entfernen Sie mich aus Ihrem Verteiler.\n\nSam\n\n"
        f"Am Mo., 23. Nov. 2026 um 09:00 schrieb Dana Whitfield <{REP}>:\n"
        "> Hi Sam,\n> Lena suggested we talk.\n"
    )
    dovecot.append(world["user"], "INBOX", reply(intro, body, at, f"Sam <{SAM}>"), date=at)
    run_pass(deps, at + timedelta(minutes=5))
    assert enrollment(uow_factory, SAM).state is EnrollmentState.UNSUBSCRIBED
    assert SAM in suppressed(uow_factory)


def test_a_mailto_unsubscribe_acts_only_after_our_send(world, uow_factory):
    """Outside any thread (no In-Reply-To): acted on only when the sender is our recipient and
    the Date is after our send; a forged one dated before goes to a person, nothing suppressed."""
    deps, sink, dovecot, cli = world["deps"], world["sink"], world["dovecot"], world["cli"]

    def mailto(sender: str, at: datetime) -> bytes:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, "unsubscribe@acme.example", "unsubscribe"
        msg["Date"], msg["Message-ID"] = format_datetime(at), f"<u-{at.timestamp():.0f}@x.example>"
        msg.set_content("This message was sent by the mailto unsubscribe link.")
        return msg.as_bytes()

    early = MON - timedelta(days=2)  # before anything was sent to Elena
    dovecot.append(world["user"], "INBOX", mailto(ELENA, early), date=MON)
    run_pass(deps, MON)
    assert ELENA not in suppressed(uow_factory)
    (waiting,) = cli.json("inbox", "--unhandled")
    assert waiting["from"] == ELENA and "nothing was done" in waiting["error"]
    # held for a person: a possible opt-out must not be emailed again before someone looks
    assert enrollment(uow_factory, ELENA).state is EnrollmentState.HELD

    assert len(sent_to(sink, "sam")) == 1  # our intro went out Monday 14:00Z
    at = MON + timedelta(hours=1)
    dovecot.append(world["user"], "INBOX", mailto(SAM, at), date=at)
    run_pass(deps, at + timedelta(minutes=5))
    assert SAM in suppressed(uow_factory)
    assert enrollment(uow_factory, SAM).state is EnrollmentState.UNSUBSCRIBED
    assert unsubscribed_in_report(cli) == 1


def test_a_forged_bounce_suppresses_no_one(world, uow_factory):
    deps, sink, dovecot, cli = world["deps"], world["sink"], world["dovecot"], world["cli"]
    # Before anything is sent: a "bounce" naming a live prospect and a stranger.
    dovecot.append(world["user"], "INBOX", dsn([ELENA, STRANGER], MON - timedelta(hours=1)))
    run_pass(deps, MON - timedelta(minutes=30), ["poll"])
    assert suppressed(uow_factory) == set()
    assert enrollment(uow_factory, ELENA).state is EnrollmentState.ACTIVE
    (waiting,) = cli.json("inbox", "--unhandled")
    assert waiting["class"] == "hard_bounce" and "nothing was suppressed" in waiting["error"]

    # After our send, a bounce naming our recipient (and a stranger) but not our Message-ID:
    # our recipient bounced, after our send: acted on for her only.
    run_pass(deps, MON)
    assert len(sent_to(sink, "elena")) == 1
    at = MON + timedelta(hours=1)
    dovecot.append(world["user"], "INBOX", dsn([ELENA, STRANGER], at), date=at)
    run_pass(deps, at + timedelta(minutes=5), ["poll"])
    assert suppressed(uow_factory) == {ELENA}
    assert enrollment(uow_factory, ELENA).state is EnrollmentState.BOUNCED
    assert enrollment(uow_factory, SAM).state is EnrollmentState.ACTIVE


def test_a_bounce_whose_recipient_cannot_be_read_is_shown_until_marked(world, uow_factory):
    deps, dovecot, cli = world["deps"], world["dovecot"], world["cli"]
    run_pass(deps, MON)
    at = MON + timedelta(hours=1)
    unreadable = (
        "From: MAILER-DAEMON@mail.acme.example (Mail Delivery System)\n"
        f"To: {REP}\nSubject: Undelivered Mail Returned to Sender\nDate: {format_datetime(at)}\n"
        "Message-ID: <nd-1@mail.acme.example>\n\n"
        "This is the mail system. Your message could not be delivered to one or more\n"
        "recipients. Delivery failed permanently.\n"
    ).encode()
    dovecot.append(world["user"], "INBOX", unreadable, date=at)
    run_pass(deps, at + timedelta(minutes=5), ["poll"])
    (waiting,) = cli.json("inbox", "--unhandled")
    assert waiting["class"] in ("hard_bounce", "soft_bounce")
    assert suppressed(uow_factory) == set()
    assert "1 inbound message(s) need a person" in cli("status").stdout + cli("status").stderr
    assert cli.json("status")["inbound_needs_person"] == 1

    out = cli("inbound", "done", str(waiting["id"])).stdout
    assert f"inbound {waiting['id']}: handled" in out
    assert cli.json("inbox", "--unhandled") == []
    (row,) = [r for r in cli.json("inbox") if r["id"] == waiting["id"]]
    assert row["reviewed_by"] == "cli" and row["reviewed_at"]
    assert "already handled" in cli("inbound", "done", str(waiting["id"])).stdout
    assert "no inbound message 999999" in cli("inbound", "done", "999999", code=1).stderr


def test_a_complaint_opts_out_our_recipient_not_the_feedback_loop(world, uow_factory):
    """An ARF abuse report comes from the mailbox provider, outside any thread: matched by the
    returned Message-ID of our message, it opts out our recipient (and not the provider)."""
    deps, sink, dovecot, cli = world["deps"], world["sink"], world["dovecot"], world["cli"]
    run_pass(deps, MON)
    (intro,) = sent_to(sink, "elena")
    arf = (
        Path("tests/fixtures/mail/unsubscribe/arf_abuse_report.eml")
        .read_bytes()
        .replace(b"<tuv678@acme.example>", str(intro["Message-ID"]).encode())
        .replace(b"morty@plumbus.example", ELENA.encode())
    )
    dovecot.append(world["user"], "INBOX", arf, date=MON + timedelta(hours=1))
    run_pass(deps, MON + timedelta(hours=2), ["poll"])
    assert suppressed(uow_factory) == {ELENA}
    assert enrollment(uow_factory, ELENA).state is EnrollmentState.UNSUBSCRIBED
    assert unsubscribed_in_report(cli) == 1


def test_an_auto_reply_outside_a_thread_pauses_only_after_our_send(world, uow_factory):
    deps, sink, dovecot, cli = world["deps"], world["sink"], world["dovecot"], world["cli"]

    def away(at: datetime) -> bytes:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = SAM, REP, "Out of office"
        msg["Date"], msg["Message-ID"] = (
            format_datetime(at),
            f"<ooo-{at.timestamp():.0f}@c.example>",
        )
        msg["Auto-Submitted"] = "auto-replied"
        msg.set_content("I am out of the office until 7 December 2026.")
        return msg.as_bytes()

    dovecot.append(world["user"], "INBOX", away(MON - timedelta(hours=1)), date=MON)
    run_pass(deps, MON - timedelta(minutes=30), ["poll"])
    assert enrollment(uow_factory, SAM).state is EnrollmentState.ACTIVE
    (waiting,) = cli.json("inbox", "--unhandled")
    assert waiting["class"] == "auto_reply"

    run_pass(deps, MON)
    assert len(sent_to(sink, "sam")) == 1
    at = MON + timedelta(hours=1)
    dovecot.append(world["user"], "INBOX", away(at), date=at)
    run_pass(deps, at + timedelta(minutes=5), ["poll"])
    assert enrollment(uow_factory, SAM).state is EnrollmentState.PAUSED
