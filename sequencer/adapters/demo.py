"""`refseq demo`: the whole product, end to end, on a compressed clock, with nothing to set up.

Real pieces only: SQLite in a folder, the real services, a real SMTP server on loopback
(aiosmtpd) that keeps every message in an mbox, and a Maildir the real poller reads. Prospects
answer as people do: one is interested, one is out of the office, one address bounces, one asks
to be removed, two stay silent.
"""

from __future__ import annotations

import mailbox
import random
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from sequencer.adapters.maildir import MaildirReader
from sequencer.adapters.smtp import SmtpMailer
from sequencer.adapters.webhook import UrllibPoster
from sequencer.core.drafts import DraftConfig
from sequencer.secretkey import load_or_create
from sequencer.services.inbox import InboxConfig
from sequencer.services.runner import Deps, PassReport, replay
from sequencer.services.sending import SendConfig

REP = "dana@acme.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def next_monday(now: datetime) -> datetime:
    """13:00 UTC on the coming Monday (08:00 in New York): before the reps' day starts."""
    day = (now + timedelta(days=(7 - now.weekday()) % 7 or 7)).date()
    return datetime(day.year, day.month, day.day, 13, 0, tzinfo=UTC)


@dataclass
class Outbox:
    """What the local SMTP server received: kept in ``sent.mbox`` and in memory."""

    path: Path
    received: list[tuple[str, EmailMessage]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.content)
        msg = message_from_bytes(raw, policy=policy.default)
        with self.lock:
            box = mailbox.mbox(str(self.path))
            box.add(mailbox.mboxMessage(raw))
            box.close()
            for rcpt in envelope.rcpt_tos:
                self.received.append((rcpt, msg))
        return "250 2.0.0 Ok: queued"

    def to(self, prefix: str) -> list[EmailMessage]:
        with self.lock:
            return [m for rcpt, m in self.received if rcpt.startswith(prefix)]


def _reply(
    to_msg: EmailMessage,
    sender: str,
    body: str,
    at: datetime,
    subject: str | None = None,
    **headers: str,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = REP
    msg["Subject"] = subject or f"Re: {to_msg['Subject']}"
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].rstrip(">"))
    msg["In-Reply-To"] = str(to_msg["Message-ID"])
    msg["References"] = str(to_msg["Message-ID"])
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def _bounce(to_msg: EmailMessage, recipient: str, at: datetime) -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes one."""
    diagnostic = (
        f"550 5.1.1 <{recipient}>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    text = f"""From: MAILER-DAEMON@mx.fintrust.example (Mail Delivery System)
To: {REP}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(at)}
Message-ID: {make_msgid(domain="mx.fintrust.example")}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-boundary"

--dsn-boundary
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.fintrust.example said: {diagnostic}

--dsn-boundary
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.fintrust.example

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; {diagnostic}

--dsn-boundary
Content-Type: text/rfc822-headers

From: {to_msg["From"]}
To: {recipient}
Subject: {to_msg["Subject"]}
Message-ID: {to_msg["Message-ID"]}

--dsn-boundary--
"""
    return text.replace("\n", "\r\n").encode()


@dataclass
class DemoResult:
    folder: Path
    db_url: str
    mbox: Path
    maildir: Path
    passes: int


def prepare(folder: Path, example: Path, smtp_port: int) -> Path:
    """Scaffold the example campaign into ``folder/campaign``, pointed at the local servers."""
    target = folder / "campaign"
    shutil.copytree(example, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    yaml = target / "campaign.yaml"
    text = yaml.read_text(encoding="utf-8").replace("port: 2525", f"port: {smtp_port}")
    yaml.write_text(text, encoding="utf-8")
    return yaml


def run_demo(
    folder: Path,
    example: Path,
    shipped_templates: Path,
    start: datetime,
    on_step: Callable[[str], None],
    on_pass: Callable[[PassReport], None],
    days: int = 14,
) -> DemoResult:
    from aiosmtpd.controller import Controller

    from sequencer import bootstrap
    from sequencer.config import Settings
    from sequencer.services import approval
    from sequencer.services.checking import check_campaign
    from sequencer.services.launch import launch_campaign

    folder.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{folder / 'refseq.db'}"
    outbox = Outbox(folder / "sent.mbox")
    port = free_port()
    controller = Controller(outbox, hostname="127.0.0.1", port=port)
    controller.start()
    rep_box = MaildirReader(folder / "rep-mailbox")
    env = {"REFSEQ_IMAP_PASSWORD": "demo"}
    # The demo's own random key, kept in its folder (0600) like any data directory's.
    secret_key, _ = load_or_create(folder)
    settings = Settings(
        database_url=db_url,
        broker_url=None,
        secret_key=secret_key,
        base_url="http://127.0.0.1:8000",  # loopback links: allowed in the demo only
    )
    uow_factory = bootstrap.uow_factory(settings)
    drafts = DraftConfig(secret_key, settings.base_url, shipped_templates)
    deps = Deps(
        uow_factory=uow_factory,
        draft_cfg=drafts,
        send_cfg=SendConfig(env=env),
        mailer_factory=lambda: SmtpMailer(timeout=10, local_hostname="refseq-demo"),
        rng=random.Random(2026),
        reader_factory=lambda: rep_box,
        poster=UrllibPoster(),
        inbox_cfg=InboxConfig(env=env, draft_cfg=drafts),
    )
    passes = 0

    def approve_all(now: datetime) -> None:
        for view in approval.queue(uow_factory):
            approval.approve(uow_factory, [view.draft.id], REP, now)

    def advance(since: datetime, until: datetime, step: timedelta) -> None:
        def after_pass(report: PassReport) -> None:
            nonlocal passes
            passes += 1
            on_pass(report)
            approve_all(report.now)  # the rep goes through the queue as drafts appear

        replay(deps, since, until, step, after_pass)

    try:
        on_step("scaffolding the example campaign")
        yaml = prepare(folder, example, port)
        on_step("validating (YAML, CSVs, every template for every prospect)")
        check = check_campaign(yaml, drafts)
        if not check.clean:
            raise RuntimeError(
                "the example campaign does not validate: "
                + "; ".join(p.render() for p in check.problems)
            )
        on_step("launching")
        launch_campaign(uow_factory, check, start)
        on_step("day 1: drafting, approving and sending the intros")
        advance(start, start + timedelta(hours=20), timedelta(minutes=30))
        on_step("prospects answer: interested, out of office, a bounce, an unsubscribe, silence")
        _simulate_answers(outbox, rep_box, start + timedelta(hours=22))
        on_step(f"days 2-{days}: polling, pausing, stopping, routing, following up")
        advance(start + timedelta(hours=23), start + timedelta(days=days), timedelta(hours=2))
    finally:
        deps.close()
        controller.stop()
        bootstrap.dispose_all()
    return DemoResult(folder, db_url, outbox.path, rep_box.root, passes)


def _simulate_answers(outbox: Outbox, rep_box: MaildirReader, at: datetime) -> None:
    def first(prefix: str) -> EmailMessage | None:
        found = outbox.to(prefix)
        return found[0] if found else None

    elena = first("elena.park")
    if elena is not None:
        rep_box.deliver(
            _reply(
                elena,
                "Elena Park <elena.park@northbank.example>",
                "Sounds good, Tuesday at 10 works for me. Can you send an invite?\n\n"
                "Elena\n\nOn Monday, Dana Whitfield wrote:\n> Hi Elena,\n",
                at,
            ),
            at,
        )
    john = first("john.reyes")
    if john is not None:
        back = (at + timedelta(days=6)).strftime("%A %d %B %Y")
        rep_box.deliver(
            _reply(
                john,
                "John Reyes <john.reyes@ledgerline.example>",
                f"I am out of the office with limited access to email. I will be back on {back}.\n",
                at,
                subject=f"Automatic reply: {john['Subject']}",
                Auto_Submitted="auto-replied",
                X_Autoreply="yes",
            ),
            at,
        )
    priya = first("priya.nair")
    if priya is not None:
        rep_box.deliver(_bounce(priya, "priya.nair@fintrust.example", at), at)
    marc = first("marc.dubois")
    if marc is not None:
        rep_box.deliver(
            _reply(
                marc,
                "Marc Dubois <marc.dubois@paysage.example>",
                "Please remove me from your list. Thanks.\n",
                at,
            ),
            at,
        )
