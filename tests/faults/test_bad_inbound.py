"""Hostile and broken inbound mail, through the real store → parse → classify → match → act
path (`refseq tick` runs the inbox stage on what is stored) and the real SMTP sink.

The example campaign is launched and its six first steps are sent to the sink; the inbound
messages below then answer (or pretend to answer) those messages. Each case checks what
happened to the enrollments and suppressions, and the exact bytes of everything sent after.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sequencer.adapters.db.session import SqlUnitOfWorkFactory
from sequencer.core.inbound import parse_inbound
from sequencer.services.inbox import dedupe_key
from tests.faults.badinput import Sandbox
from tests.reliability import Recorder
from tests.smtp_sink import Sink

LATER = "2026-11-23T21:00:00+00:00"  # an hour after the first steps went out
ELENA = "elena.park@northbank.example"
JOHN = "john.reyes@ledgerline.example"
REP = "dana@acme.example"
INTERESTED = b"Yes, I'd love to chat. How about Thursday at 2pm?\r\n"


class World:
    """The launched sandbox, with what was sent to each prospect and a way to deliver mail."""

    def __init__(self, sandbox: Sandbox, uow_factory: SqlUnitOfWorkFactory) -> None:
        self.sb = sandbox
        self.uow_factory = uow_factory
        sandbox.launched()
        sandbox.tick()
        sent = sandbox.sink.handler.received
        assert len(sent) == 6
        self.first = {m.rcpt_tos[0]: m.message for m in sent}
        self.baseline = len(sent)
        self.uid = 0

    def msgid(self, prospect: str) -> str:
        return str(self.first[prospect]["Message-ID"])

    def deliver(self, raw: bytes) -> int | None:
        """Store ``raw`` as the poller does (the product's parser and dedupe key)."""
        self.uid += 1
        now = datetime.fromisoformat(LATER)
        try:
            parsed = parse_inbound(raw)
        except Exception:  # the poller stores what it cannot parse too
            parsed = None
        with self.uow_factory() as uow:
            stored = uow.repo.add_inbound(
                dedupe_key(parsed, raw),
                "imap:test",
                self.uid,
                raw,
                now,
                now,
                from_addr=parsed.from_addr if parsed else None,
            )
            uow.commit()
        return stored

    def process(self, now: str = LATER) -> Any:
        return self.sb.tick(now)

    def after(self) -> list[Any]:
        """Everything the sink received after the six first steps."""
        return self.sb.sink.handler.received[self.baseline :]

    def enrollment(self, prospect: str) -> Any:
        with self.uow_factory() as uow:
            (e,) = uow.repo.live_enrollments_for(prospect) or [
                x
                for c in uow.repo.list_campaigns()
                for x in uow.repo.list_enrollments(c.campaign.id)
                if x.prospect_key == prospect
            ]
            return e

    def inbound(self) -> list[Any]:
        with self.uow_factory() as uow:
            return list(uow.repo.list_inbound())

    def suppressed(self) -> set[str]:
        with self.uow_factory() as uow:
            return set(uow.repo.suppressed_values())

    def handoffs(self) -> list[Any]:
        with self.uow_factory() as uow:
            return list(uow.repo.list_handoffs())


@pytest.fixture
def world(db_url: str, tmp_path: Path, smtp_sink: Sink, uow_factory: SqlUnitOfWorkFactory) -> World:
    return World(Sandbox(db_url, tmp_path / "camp", smtp_sink), uow_factory)


def reply(
    sender: str,
    in_reply_to: str | None,
    body: bytes = INTERESTED,
    *,
    subject: bytes = b"Re: hello",
    message_id: str | None = "<reply-1@mail.example>",
    from_header: bytes | None = None,
    extra: bytes = b"",
) -> bytes:
    head = [
        b"From: " + (from_header or sender.encode()),
        b"To: " + REP.encode(),
        b"Subject: " + subject,
        b"Date: Mon, 23 Nov 2026 15:40:00 -0500",
    ]
    if message_id:
        head.append(b"Message-ID: " + message_id.encode())
    if in_reply_to:
        head += [b"In-Reply-To: " + in_reply_to.encode(), b"References: " + in_reply_to.encode()]
    head += [b"MIME-Version: 1.0"]
    if not extra:
        head.append(b"Content-Type: text/plain; charset=utf-8")
    return b"\r\n".join(head) + b"\r\n" + extra + b"\r\n" + body


def header_lines(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
    return head.split(b"\n")


# --------------------------------------------------------------------------- Message-ID


@pytest.mark.reliability
def test_a_reply_without_message_id_is_stored_and_acted_on_once(
    world: World, reliability: Recorder
) -> None:
    raw = reply(ELENA, world.msgid(ELENA), message_id=None)
    first, again = world.deliver(raw), world.deliver(raw)  # fetched twice (a UIDVALIDITY reset)
    world.process()
    world.process("2026-11-23T21:05:00+00:00")
    rows = world.inbound()
    notices = [m for m in world.after() if m.rcpt_tos == [REP]]
    reliability.record(
        "inbound",
        "reply without Message-ID fetched twice",
        trials=2,
        duplicates=len(rows) - 1 + len(world.handoffs()) - 1 + len(notices) - 1,
        outcome=f"stored {len(rows)}x (dedupe {rows[0].dedupe_key[:7]}), "
        f"{len(world.handoffs())} handoff, {len(notices)} notice",
    )
    assert first is not None and again is None
    assert [(r.status, r.matched_by, r.message_id) for r in rows] == [
        ("handled", "in-reply-to", None)
    ]
    assert rows[0].dedupe_key.startswith("sha256:")
    assert world.enrollment(ELENA).state.value == "replied"
    assert len(world.handoffs()) == 1 and len(notices) == 1


# --------------------------------------------------------------------------- forged thread


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("body", "intent"),
    [(b"Please unsubscribe me from this list.\r\n", "unsubscribe"), (INTERESTED, "interested")],
    ids=["unsubscribe", "interested"],
)
def test_a_thread_reply_from_another_domain_holds_the_prospect_for_a_person(
    world: World, reliability: Recorder, body: bytes, intent: str
) -> None:
    """Our Message-ID in In-Reply-To, from another domain: Elena writing from her personal
    address, or a stranger who copied the header. Acting on it could stop (or unsubscribe) her
    because of a stranger; ignoring it could keep emailing someone who already replied. So her
    sequence is held for a person, and nothing else happens until they release it."""
    forged = reply("mallory@attacker.example", world.msgid(ELENA), body)
    world.deliver(forged)
    world.process()
    elena = world.enrollment(ELENA)
    (row,) = world.inbound()
    wrong = int(ELENA in world.suppressed()) + len(world.handoffs())

    week = "2026-11-30T15:00:00+00:00"  # every warm follow-up is due by now
    world.process(week)
    others = {r for m in world.after() for r in m.rcpt_tos} - {REP}
    to_elena_while_held = sum(ELENA in m.rcpt_tos for m in world.after())
    (held,) = [h for h in world.sb.cli.json("held") if h["prospect"] == ELENA]

    world.sb.cli("release", str(elena.id), "--now", week)
    world.process("2026-11-30T15:05:00+00:00")
    to_elena_after_release = sum(ELENA in m.rcpt_tos for m in world.after())
    reliability.record(
        "inbound",
        f"reply ({intent}) on a prospect's thread from another domain (forged In-Reply-To, or "
        "the prospect writing from another address)",
        trials=1,
        wrong_sends=to_elena_while_held,
        lost=0,
        duplicates=0,
        outcome=f"{row.status} ({row.matched_by}); prospect {elena.state.value} until released, "
        f"{to_elena_while_held} sent to her meanwhile, {to_elena_after_release} after release; "
        f"{wrong} stop/suppress/handoff actions",
    )
    assert (row.status, row.matched_by, row.enrollment_id) == (
        "unhandled",
        "thread-other-sender",
        elena.id,
    )
    assert elena.state.value == "held" and "mallory@attacker.example" in held["reason"]
    assert wrong == 0  # neither stopped, suppressed nor handed off on a stranger's word
    assert others, "the other prospects' follow-ups went out: the week passed"
    assert to_elena_while_held == 0
    assert to_elena_after_release == 1  # released: her follow-up goes, once
    assert world.enrollment(ELENA).state.value == "completed"  # her two-step sequence ran out


@pytest.mark.reliability
def test_a_colleague_on_the_prospects_domain_still_matches_the_thread(
    world: World, reliability: Recorder
) -> None:
    """The other side of the rule above: a reply-all from Elena's colleague is hers."""
    world.deliver(reply("cfo@northbank.example", world.msgid(ELENA)))
    world.process()
    (row,) = world.inbound()
    reliability.record(
        "inbound",
        "thread reply from a colleague on the prospect's domain",
        trials=1,
        outcome=f"{row.status} ({row.matched_by}); prospect {world.enrollment(ELENA).state.value}",
    )
    assert (row.status, row.matched_by) == ("handled", "in-reply-to")
    assert world.enrollment(ELENA).state.value == "replied"


# --------------------------------------------------------------------------- header injection

HOSTILE = [
    ("Q-encoded CRLF in Subject", {"subject": b"=?utf-8?q?Re:_hello=0D=0ABcc:_evil@x.example?="}),
    (
        "B-encoded CRLF in Subject",
        {"subject": b"=?utf-8?b?UmU6IGhpDQpCY2M6IGV2aWxAeC5leGFtcGxl?="},
    ),
    (
        "encoded LF + header in the From name",
        {"from_header": b'"=?utf-8?q?Elena=0ABcc:_evil@x.example?=" <' + ELENA.encode() + b">"},
    ),
    ("U+2028 line separator in Subject", {"subject": "Re: hi\u2028Bcc: evil@x.example".encode()}),
    ("raw bare CR in Subject", {"subject": b"Re: hi\rBcc: evil@x.example"}),
]


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("fault", "kwargs", "db_url"),
    [pytest.param(f, k, "sqlite", id=f"sqlite-{f}") for f, k in HOSTILE]
    + [
        pytest.param(
            *HOSTILE[0], "postgresql", id=f"postgresql-{HOSTILE[0][0]}", marks=pytest.mark.pg
        )
    ],
    indirect=["db_url"],
)
def test_an_encoded_line_break_never_becomes_a_header_in_what_we_send(
    world: World, reliability: Recorder, fault: str, kwargs: dict[str, bytes]
) -> None:
    world.deliver(reply(ELENA, world.msgid(ELENA), **kwargs))  # type: ignore[arg-type]
    world.process()
    # the thank-the-referrer draft: approve it and send it too, so its bytes are checked
    world.sb.cli("approve", "--all", "--campaign", "q4-fintech-intros")
    world.process("2026-11-23T21:05:00+00:00")
    sent = world.after()
    bad_headers = [
        line
        for m in sent
        for line in header_lines(m.data)
        if line.lower().startswith((b"bcc", b"x-evil")) or b"evil@x.example" in line.split(b":")[0]
    ]
    stray = [r for m in sent for r in m.rcpt_tos if "evil" in r]
    reliability.record(
        "inbound",
        fault,
        trials=1,
        wrong_sends=len(stray) + len(bad_headers),
        outcome=f"{len(sent)} messages sent after it (notice, thank-you), "
        f"{len(bad_headers)} injected headers",
    )
    (row,) = world.inbound()
    assert row.status == "handled" and world.enrollment(ELENA).state.value == "replied"
    recipients = sorted(r for m in sent for r in m.rcpt_tos)
    assert recipients == sorted([REP, "james@pixel.example"])  # the notice and the thank-you
    assert not bad_headers and not stray, (bad_headers, stray)
    for m in sent:  # every header line is a real header or a folded continuation of one
        for line in header_lines(m.data):
            assert line[:1] in (b" ", b"\t") or re.match(rb"^[A-Za-z0-9-]+:", line), line
        assert b"\r" not in str(m.message["Subject"]).encode()


# --------------------------------------------------------------------------- broken MIME


def _nested(depth: int) -> bytes:
    parts = b""
    for i in range(depth):
        parts = (
            f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode()
            + (parts or b"Content-Type: text/plain\r\n\r\nYes, interested!\r\n")
            + f"\r\n--b{i}--\r\n".encode()
        )
    return parts


def _many_parts(n: int) -> bytes:
    body = b"".join(b"--z\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(n))
    return b"Content-Type: multipart/mixed; boundary=z\r\n\r\n" + body + b"--z--\r\n"


MIME: list[tuple[str, Callable[[World], bytes]]] = [
    (
        "multipart nested 2,000 deep",
        lambda w: reply(ELENA, w.msgid(ELENA), b"", extra=_nested(2000)),
    ),
    ("10,000 MIME parts", lambda w: reply(ELENA, w.msgid(ELENA), b"", extra=_many_parts(10_000))),
    (
        "multipart without a boundary parameter",
        lambda w: reply(
            ELENA, w.msgid(ELENA), INTERESTED, extra=b"Content-Type: multipart/mixed\r\n"
        ),
    ),
    (
        "boundary never closed",
        lambda w: reply(
            ELENA,
            w.msgid(ELENA),
            b"--q\r\nContent-Type: text/plain\r\n\r\nYes please, interested.\r\n--q\r\n"
            + b"Content-Type: text/html\r\n\r\n<p>" * 2000,
            extra=b'Content-Type: multipart/alternative; boundary="q"\r\n',
        ),
    ),
    (
        "8 MB body",
        lambda w: reply(ELENA, w.msgid(ELENA), INTERESTED + b"x" * (8 << 20)),
    ),
    (
        "20,000 header fields",
        lambda w: reply(
            ELENA,
            w.msgid(ELENA),
            extra=b"".join(b"X-Junk-%d: y\r\n" % i for i in range(20_000))
            + b"Content-Type: text/plain\r\n",
        ),
    ),
    (
        "a 1 MB Subject",
        lambda w: reply(ELENA, w.msgid(ELENA), subject=b"Re: " + b"A" * (1 << 20)),
    ),
    (
        "garbage bytes, no headers",
        lambda w: bytes(range(256)) * 4000,
    ),
]


@pytest.mark.reliability
@pytest.mark.parametrize(("fault", "make"), MIME, ids=[m[0] for m in MIME])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_enormous_or_malformed_mime_is_bounded_and_handled(
    world: World, reliability: Recorder, fault: str, make: Callable[[World], bytes]
) -> None:
    raw = make(world)
    started = time.monotonic()
    world.deliver(raw)
    tick = world.process()
    seconds = time.monotonic() - started
    (row,) = world.inbound()
    to_prospects = [r for m in world.after() for r in m.rcpt_tos if r != REP]
    elena = world.enrollment(ELENA)
    reliability.record(
        "inbound",
        f"{fault} ({len(raw) // 1024} KiB)",
        trials=1,
        wrong_sends=len(to_prospects),
        outcome=f"{row.status} ({row.klass or row.error or ''})"[:60]
        + f"; prospect {elena.state.value}; {seconds:.2f}s",
    )
    assert tick["send"]["sent"] == 0  # (a thank-you draft waits for the rep's approval)
    assert row.status in ("handled", "unmatched", "unhandled")
    if "garbage" not in fault:
        # it is Elena's: either acted on (a reply) or held for a human (her next step waits)
        assert elena.state.value in ("replied", "held"), elena.state
    assert to_prospects == []
