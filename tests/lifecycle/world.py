"""The lifecycle machine's world: a small campaign on disk, a recording mailer, mail a prospect
writes back, and a reader for what refseq emitted that uses only the standard library.

Everything refseq sends goes through :class:`RecordingMailer`: an in-process stand-in for the
SMTP peer (an aiosmtpd round trip per message would cost most of the CI budget) that keeps the
exact bytes refseq hands to the wire, after refseq's own ``before_data`` hook, as the SMTP
adapter would send them. The checks parse those bytes with :mod:`email` (not refseq's code).
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from sequencer.core.ports import SendReceipt, SmtpAccount

REP = "dana@acme.example"
CAMPAIGN = "lifecycle"
SECRET = "lifecycle-secret-0123456789"
BASE_URL = "https://refseq.acme.example"

# Distinctive names, so "names a referrer" is a plain word search on the decoded message.
REFERRERS = {
    "r0": ("Zephyrine", "Quillfeather", 5),
    "r1": ("Oswaldo", "Barrowby", 5),
    "r2": ("Thaddea", "Nightcombe", 2),
    "r3": ("Casimir", "Vantaleone", 4),
}
# prospect index -> (referrer id, the referrer's strength with the prospect)
REFERRALS = {
    0: [("r0", 5)],
    1: [("r1", 5), ("r2", 3)],
    2: [("r2", 4)],
    3: [("r3", 5), ("r0", 2)],
    4: [("r1", 2)],
    5: [("r3", 4), ("r2", 5)],
    6: [("r0", 4)],
}
FIRST_WAVE = 4  # prospects 0..3 are in the first launch; 4..6 arrive with edited CSVs


def prospect(i: int) -> str:
    return f"pat{i}@prospect{i}.example"


@dataclass
class CampaignFiles:
    folder: Path
    consent: dict[str, bool]
    prospects: list[int] = field(default_factory=lambda: list(range(FIRST_WAVE)))

    @property
    def yaml(self) -> Path:
        return self.folder / "campaign.yaml"

    def write(self) -> Path:
        """(Re)write the YAML and the three CSVs from the current consent and prospects."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "referrers.csv").write_text(
            "id,name,email,title,company,is_customer,nps,our_strength,our_context,consent\n"
            + "".join(
                f"{rid},{first} {last},{first.lower()}@referrers.example,Partner,"
                f"{last} Holdings,yes,9,{strength},worked with our founder,"
                f"{'yes' if self.consent[rid] else 'no'}\n"
                for rid, (first, last, strength) in REFERRERS.items()
            )
        )
        (self.folder / "prospects.csv").write_text(
            "email,first_name,last_name,title,company,timezone\n"
            + "".join(f"{prospect(i)},Pat,Lee{i},CTO,Prospect {i},UTC\n" for i in self.prospects)
        )
        (self.folder / "referrals.csv").write_text(
            "referrer_id,prospect_email,strength,context\n"
            + "".join(
                f"{rid},{prospect(i)},{n},a former colleague\n"
                for i in self.prospects
                for rid, n in REFERRALS[i]
            )
        )
        self.yaml.write_text(
            f"""campaign: {CAMPAIGN}
rep: {{name: Dana Whitfield, email: {REP}, timezone: UTC}}
mailbox:
  smtp: {{host: 127.0.0.1, port: 2525, security: none, username: dana}}
  imap: {{host: 127.0.0.1, port: 1143, security: none, username: dana, folder: INBOX}}
  daily_cap: 10000
  min_gap: 0s
data: {{prospects: prospects.csv, referrers: referrers.csv, referrals: referrals.csv}}
temperature:
  warm_when: {{min_our_strength: 4, min_their_strength: 4}}
  name_referrer: consented
schedule:
  timezone: UTC
  window: {{days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}}
sequences:
  warm:
    - {{template: warm_intro, approval: required}}
    - {{template: warm_follow_up, after: 1 days, thread: true, approval: auto}}
  cold:
    - {{template: cold_intro, approval: required}}
    - {{template: cold_follow_up, after: 1 days, thread: true, approval: auto}}
  unnamed:
    - {{template: unnamed_intro, approval: required}}
    - {{template: cold_follow_up, after: 1 days, thread: true, approval: auto}}
compliance: {{postal_address: "Acme Inc, 1 Main St, Springfield"}}
routing: {{notify_rep: false, thank_referrer: "off"}}
""",
            encoding="utf-8",
        )
        return self.yaml


@dataclass(frozen=True)
class Sent:
    recipient: str
    raw: bytes
    at: datetime

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


@dataclass
class RecordingMailer:
    """The Mailer port, in process: records the raw bytes and calls ``on_send`` with them."""

    clock: Callable[[], datetime]
    on_send: Callable[[Sent], None]
    sent: list[Sent] = field(default_factory=list)

    def send(
        self,
        account: SmtpAccount,
        envelope_from: str,
        recipient: str,
        message: bytes,
        before_data: Callable[[], None],
    ) -> SendReceipt:
        before_data()
        record = Sent(recipient, bytes(message), self.clock())
        self.sent.append(record)
        self.on_send(record)
        return SendReceipt(f"250 2.0.0 Ok: queued as L{len(self.sent)}")

    def close(self) -> None:
        pass


def readable_text(sent: Sent) -> str:
    """Everything a reader of the message could see: every header value and text part as
    decoded by the standard library, plus the raw bytes themselves."""
    msg = sent.message
    parts = [f"{name}: {value}" for name, value in msg.items()]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()))
    parts.append(sent.raw.decode("latin-1"))
    return "\n".join(parts)


def named_referrers(sent: Sent) -> set[str]:
    """Ids of the referrers whose first or last name appears anywhere in the message."""
    text = readable_text(sent)
    return {
        rid
        for rid, (first, last, _) in REFERRERS.items()
        if re.search(rf"\b(?:{first}|{last})\b", text)
    }


def list_unsubscribe(msg: EmailMessage) -> tuple[str, str]:
    """The (https URL, mailto URL) of the List-Unsubscribe header."""
    links = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"] or ""))
    url = next(u for u in links if u.startswith("https://"))
    mailto = next(u for u in links if u.startswith("mailto:"))
    return url, mailto


REPLIES = {
    "human": "Thanks for reaching out. Happy to talk: does Tuesday at 10 work for you?",
    "unsubscribe": "Please remove me from your list. Thanks.",
    "unknown_referrer": "Sorry, I have never heard of them. How do you know me?",
}


def reply_to(to_msg: EmailMessage, sender: str, kind: str, at: datetime) -> bytes:
    """What a prospect's mail client sends back: a reply of ``kind`` on refseq's thread."""
    msg = EmailMessage()
    msg["From"] = f"Pat <{sender}>"
    msg["To"] = REP
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg["In-Reply-To"] = str(to_msg["Message-ID"])
    msg["References"] = str(to_msg["Message-ID"])
    if kind == "ooo":
        msg["Subject"] = f"Automatic reply: {to_msg['Subject']}"
        msg["Auto-Submitted"] = "auto-replied"
        msg.set_content("I am out of the office with limited access to email until next week.\n")
    else:
        msg["Subject"] = f"Re: {to_msg['Subject']}"
        msg.set_content(REPLIES[kind] + "\n\nOn Monday, Dana Whitfield wrote:\n> Hi Pat,\n")
    return msg.as_bytes()


def mailto_unsubscribe(mailto: str, sender: str, at: datetime) -> bytes:
    """What a mail client sends for the mailto: form of List-Unsubscribe (RFC 2369)."""
    address, _, query = mailto.removeprefix("mailto:").partition("?")
    subject = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("subject", "")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = address
    msg["Subject"] = subject
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg.set_content("This message was automatically generated by the mail client.\n")
    return msg.as_bytes()


def hard_bounce(to_msg: EmailMessage, recipient: str, at: datetime) -> bytes:
    """An RFC 3464 delivery status notification for ``recipient``, as Postfix writes one."""
    domain = recipient.rpartition("@")[2]
    diagnostic = f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown"
    text = f"""From: MAILER-DAEMON@mx.{domain} (Mail Delivery System)
To: {REP}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(at)}
Message-ID: {make_msgid(domain="mx." + domain)}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-boundary"

--dsn-boundary
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered to one or more recipients.

<{recipient}>: host mx.{domain} said: {diagnostic}

--dsn-boundary
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.{domain}

Final-Recipient: rfc822; {recipient}
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
