"""The real path, once per database: everything refseq sends, as the SMTP peer received it.

The example campaign (warm, cold and unnamed sequences; every shipped template) is launched
with the real CLI, DKIM-signed with a test key, auto-approved and sent to aiosmtpd on a free
port; a prospect then answers (stored as the poller stores it), which sends the rep's handoff
notice and drafts the thank-you to the referrer, which is approved and sent; later ticks send
every follow-up. Each received message is matched to the draft it came from (by Message-ID)
so a test knows which template and which stored subject and text it carries.
"""

from __future__ import annotations

import base64
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from sequencer.adapters.db.session import make_uow_factory
from sequencer.core.inbound import parse_inbound
from sequencer.core.states import DraftState
from sequencer.services.inbox import dedupe_key
from tests.conformance import rfc
from tests.faults.badinput import TICK, Sandbox
from tests.smtp_sink import Sink

BASE_URL = "https://refseq.acme.example"
SELECTOR, DOMAIN = "s2026", "acme.example"
REP = "dana@acme.example"
ELENA = "elena.park@northbank.example"
REPLIED = "2026-11-23T21:00:00+00:00"
LATER = ("2026-11-27T20:00:00+00:00", "2026-12-02T20:00:00+00:00", "2026-12-10T20:00:00+00:00",
         "2026-12-21T20:00:00+00:00")  # fmt: skip
# A prospect and a referrer whose names are not ASCII (encoded-words in To and Subject, which
# RFC 2047 allows there) and long enough that the warm subject must be folded.
ZOE = "zoe.muller@lumen.example"
INTERNATIONAL = {
    "prospects": f"{ZOE},Zoë,Müller-Lüdenscheidt,CFO,Lumen Zahlungsverkehr,Europe/Berlin,payments",
    "referrers": "lukasz,Łukasz Wróblewski-Ñúñez de la Cruz y Fernández-Álvarez,lukasz@wro.example,"
    "CEO,Wró,yes,10,5,co-founded our Kraków office,yes",
    "referrals": f"lukasz,{ZOE},5,your co-founder at Zahlungsverkehr Łódź",
}
TEMPLATES = sorted(p.name for p in (Path(__file__).parents[2] / "templates" / "email").iterdir())


@dataclass(frozen=True)
class Sent:
    template: str
    raw: bytes  # exactly what aiosmtpd received
    rcpt: str
    subject: str | None  # what the draft stored (None for the handoff notice)
    text: str | None
    has_html: bool
    sequence: str | None  # warm / cold / unnamed (None for the notice)
    temperature: str | None  # warm / cold (None for the notice)


@dataclass(frozen=True)
class OneClick:
    """An RFC 8058 POST to the https URI of a received List-Unsubscribe, as Gmail makes it."""

    rcpt: str
    uri: str
    status: int
    suppressed_before: set[str]
    suppressed_after: set[str]


@dataclass(frozen=True)
class Run:
    sent: list[Sent]
    dns: dict[bytes, bytes]  # the DKIM key record, as a DNS TXT answer
    one_click: OneClick

    def of(self, template: str) -> list[Sent]:
        return [s for s in self.sent if s.template == template]

    def dnsfunc(self, name: bytes, timeout: int = 5) -> bytes | None:
        return self.dns.get(name)


def dkim_key(folder: Path) -> tuple[Path, bytes]:
    """A fresh 2048-bit RSA key file and its ``v=DKIM1`` TXT record."""
    key = folder / "dkim.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def _reply(in_reply_to: str) -> bytes:
    return (
        f"From: Elena Park <{ELENA}>\r\nTo: {REP}\r\nSubject: Re: hello\r\n"
        "Date: Mon, 23 Nov 2026 15:40:00 -0500\r\nMessage-ID: <reply-1@mail.example>\r\n"
        f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Yes, I'd love to chat. How about Thursday at 2pm?\r\n"
    ).encode()


def _deliver(db_url: str, raw: bytes, at: datetime) -> None:
    """Store an inbound message the way the poller does (its parser and dedupe key)."""
    factory = make_uow_factory(db_url)
    try:
        parsed = parse_inbound(raw)
        with factory() as uow:
            uow.repo.add_inbound(
                dedupe_key(parsed, raw), "imap:test", 1, raw, at, at, from_addr=parsed.from_addr
            )
            uow.commit()
    finally:
        factory.dispose()


def _message_id(raw: bytes) -> str | None:
    match = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", raw, re.M | re.I)
    return match.group(1).decode() if match else None


def run_everything(db_url: str, folder: Path, sink: Sink) -> Run:
    """Launch, send, reply, approve, send again; return everything the sink received."""
    sandbox = Sandbox(db_url, folder / "camp", sink)
    sandbox.cli.env.update({"REFSEQ_BASE_URL": BASE_URL, "REFSEQ_SECRET_KEY": "w" * 32})
    key, record = dkim_key(folder)
    sandbox.edit_yaml(
        "  daily_cap: 1000",
        f"  dkim: {{selector: {SELECTOR}, domain: {DOMAIN}, key_file: {key}}}\n  daily_cap: 1000",
    )
    for name, row in INTERNATIONAL.items():  # non-ASCII names, a long subject to fold
        sandbox.write_csv(name, sandbox.read_csv(name).rstrip("\n") + "\n" + row + "\n")
    sandbox.launched()
    sandbox.tick(TICK)
    first = next(m for m in sink.handler.received if m.rcpt_tos == [ELENA])
    parent = _message_id(first.data)
    assert parent is not None, first.data[:500]
    _deliver(db_url, _reply(parent), datetime.fromisoformat(REPLIED))
    sandbox.tick(REPLIED)  # the handoff notice goes out, the thank-you is drafted
    sandbox.cli("approve", "--all", "--campaign", "q4-fintech-intros")
    for moment in LATER:
        sandbox.tick(moment)

    factory = make_uow_factory(db_url)
    try:
        with factory() as uow:
            views = {v.draft.message_id: v for v in uow.repo.list_drafts([DraftState.SENT])}
    finally:
        factory.dispose()
    sent = []
    for received in sink.handler.received:
        (rcpt,) = received.rcpt_tos
        view = views.get(_message_id(received.data) or "")
        if view is None:  # not a draft: the rep's handoff notice
            assert b"\r\nX-Refseq-Handoff:" in received.data, received.data[:800]
            sent.append(Sent("handoff_notice", received.data, rcpt, None, None, False, None, None))
            continue
        d = view.draft
        sent.append(
            Sent(
                d.template,
                received.data,
                rcpt,
                d.subject,
                d.text,
                d.html is not None,
                view.enrollment.sequence,
                view.enrollment.temperature,
            )
        )
    dns = {f"{SELECTOR}._domainkey.{DOMAIN}.".encode(): record}
    return Run(sent, dns, one_click(db_url, next(s for s in sent if s.template == "cold_intro")))


def one_click(db_url: str, sent: Sent) -> OneClick:
    """POST ``List-Unsubscribe=One-Click`` to the https URI found in ``sent``'s raw header."""
    from fastapi.testclient import TestClient

    from sequencer.adapters.web.app import create_app
    from sequencer.config import Settings

    fields, _, _ = rfc.split(sent.raw)
    uri = next(u.decode() for u in rfc.unsubscribe_uris(fields) if u.startswith(b"https://"))
    parts = urlsplit(uri)
    settings = Settings(
        database_url=db_url, broker_url=None, secret_key="w" * 32, base_url=BASE_URL
    )
    factory = make_uow_factory(db_url)
    try:
        with factory() as uow:
            before = set(uow.repo.suppressed_values())
        app = create_app(settings, factory)
        with TestClient(app, base_url=f"https://{parts.netloc}") as client:
            response = client.post(
                f"{parts.path}?{parts.query}" if parts.query else parts.path,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        with factory() as uow:
            after = set(uow.repo.suppressed_values())
    finally:
        factory.dispose()
    return OneClick(sent.rcpt, uri, response.status_code, before, after)
