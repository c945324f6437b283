"""IMAP faults against a real Dovecot: nothing lost, nothing handled twice.

The reader (``ImapMailboxReader``) talks to Dovecot through a cutting TCP proxy, so a test can
drop the connection at an exact byte of the server's answer. After every poll the rep notices
are sent (to a real aiosmtpd) so a reply handled twice would show as a second notice, a second
handoff or a second stored row. Each reply comes from a different prospect and says they are
interested, so each one, handled once, gives exactly one handoff and one notice.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest

from sequencer.adapters.db.session import SqlUnitOfWorkFactory
from sequencer.adapters.imap import ImapMailboxReader
from sequencer.adapters.smtp import SmtpMailer
from sequencer.core.states import EnrollmentState
from sequencer.services.inbox import InboxConfig, InboxReport, poll
from sequencer.services.routing import notify_handoffs
from tests.cli_helpers import Cli
from tests.dovecot import Dovecot
from tests.faults.faulty_smtp import FaultyServer, faulty_server
from tests.faults.mailworld import DRAFT_CFG, MON, REP, SECRET, prospect, write_campaign
from tests.faults.tcp_proxy import Cut, CuttingProxy, cutting_proxy
from tests.reliability import Recorder

PROSPECTS = 40
INTERESTED = "Yes, happy to talk. Could we do Tuesday at 10? Thanks, {name}"


@dataclass
class Inbox:
    uow_factory: SqlUnitOfWorkFactory
    dovecot: Dovecot
    user: str
    proxy: CuttingProxy
    smtp: FaultyServer
    reader: ImapMailboxReader
    cfg: InboxConfig
    next_prospect: int = 0
    moment: datetime = MON + timedelta(days=1)
    reports: list[InboxReport] = field(default_factory=list)
    db: str = ""

    def fresh(self) -> int:
        self.next_prospect += 1
        return self.next_prospect - 1

    def append(self, raw: bytes, hours: float = 1) -> int:
        return self.dovecot.append(self.user, "INBOX", raw, date=MON + timedelta(hours=hours))

    def poll(self) -> InboxReport:
        """One poll (fetch, store, handle), then the rep notices go out."""
        self.moment += timedelta(minutes=10)
        report = poll(self.uow_factory, self.reader, self.cfg, self.moment)
        with SmtpMailer(timeout=10, retry_attempts=1, sleep=lambda s: None) as mailer:
            notify_handoffs(self.uow_factory, mailer, DRAFT_CFG, self.cfg.env, self.moment)
        self.reports.append(report)
        return report


@pytest.fixture
def inbox(
    db_url: str,
    tmp_path: Path,
    dovecot: Dovecot,
    imap_user: str,
    uow_factory: SqlUnitOfWorkFactory,
) -> Iterator[Inbox]:
    login, password = dovecot.user(imap_user)
    with cutting_proxy(dovecot.host, dovecot.port) as proxy, faulty_server() as smtp:
        cli = Cli(db_url, tmp_path)
        cli.env["REFSEQ_SECRET_KEY"] = SECRET
        yaml = write_campaign(
            cli, tmp_path / "camp", smtp.port, PROSPECTS, imap=(proxy.port, login, "TEST_IMAP_PW")
        )
        cli("launch", str(yaml), "--now", MON.isoformat())
        env = {"TEST_IMAP_PW": password}
        reader = ImapMailboxReader(timeout=10)
        try:
            yield Inbox(
                uow_factory,
                dovecot,
                imap_user,
                proxy,
                smtp,
                reader,
                InboxConfig(env=env, draft_cfg=DRAFT_CFG),
                db=db_url.partition(":")[0].partition("+")[0],
            )
        finally:
            reader.close()


def reply(i: int, body: str | None = None, *, message_id: bool = True, tag: str = "") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"P{i} Bulk <{prospect(i)}>"
    msg["To"] = REP
    msg["Subject"] = "Re: James suggested we talk"
    msg["Date"] = format_datetime(MON + timedelta(hours=1))
    if message_id:
        msg["Message-ID"] = f"<reply-{i}{tag}@bulk{i:03d}.example>"
    msg.set_content(body or INTERESTED.format(name=f"P{i}"))
    return msg.as_bytes()


@dataclass
class Books:
    """What the database and the SMTP server say, per reply."""

    rows: int
    statuses: Counter[str]
    per_key: Counter[str]
    handoffs_per_enrollment: Counter[int]
    notices_per_handoff: Counter[str]
    replied: int
    held: int

    @property
    def duplicates(self) -> int:
        return (
            sum(n - 1 for n in self.per_key.values() if n > 1)
            + sum(n - 1 for n in self.handoffs_per_enrollment.values() if n > 1)
            + sum(n - 1 for n in self.notices_per_handoff.values() if n > 1)
        )


def books(box: Inbox) -> Books:
    with box.uow_factory() as uow:
        rows = uow.repo.list_inbound()
        handoffs = uow.repo.list_handoffs(states=("open", "handled"))
        campaign_id = uow.repo.list_campaigns()[0].campaign.id
        states = Counter(e.state for e in uow.repo.list_enrollments(campaign_id))
    notices = Counter(
        str(a.message["X-Refseq-Handoff"]) for a in box.smtp.handler.arrivals if a.delivered
    )
    return Books(
        rows=len(rows),
        statuses=Counter(r.status for r in rows),
        per_key=Counter(r.dedupe_key for r in rows),
        handoffs_per_enrollment=Counter(h.enrollment_id for h in handoffs),
        notices_per_handoff=notices,
        replied=states[EnrollmentState.REPLIED],
        held=states[EnrollmentState.HELD],
    )


CUTS = [
    Cut(60),  # inside the greeting/capabilities, before LOGIN completes
    Cut(0, marker=b"* SEARCH"),  # right as the server starts answering the SEARCH
    Cut(0, marker=b"BODY[] {"),  # right at the start of the first message literal
    Cut(700, marker=b"BODY[] {"),  # inside the first message
    Cut(120_000, marker=b"BODY[] {"),  # inside the large second message
    Cut(1, marker=b")\r\n"),  # just after the first full FETCH item of the chunk
]


@pytest.mark.reliability
def test_a_connection_dropped_mid_fetch_loses_nothing_and_handles_nothing_twice(
    inbox: Inbox, reliability: Recorder
) -> None:
    appended = 0
    problems: list[str] = []
    for n, cut in enumerate(CUTS):
        ids = [inbox.fresh() for _ in range(3)]
        big = INTERESTED.format(name="x") + "\n\n" + ("> quoted history line\n" * 12_000)
        for i in ids:
            inbox.append(reply(i, big if i == ids[1] else None))
        appended += 3
        before = books(inbox).rows
        inbox.reader.close()  # the cut applies to the next connection
        inbox.proxy.cut_next(cut)
        cuts = inbox.proxy.cuts
        failed = inbox.poll()
        conn = inbox.proxy.connections[-1]
        if inbox.proxy.cuts != cuts + 1 or not failed.errors:
            problems.append(f"cut #{n} {cut}: no cut seen ({failed.errors})")
        if cut.marker is not None and cut.marker not in bytes(conn.head) + conn.tail:
            problems.append(f"cut #{n}: the server never sent {cut.marker!r} before the cut")
        if books(inbox).rows != before:
            problems.append(f"cut #{n}: {books(inbox).rows - before} stored by the failed poll")
        again = inbox.poll()
        if again.errors or books(inbox).rows != appended:
            problems.append(f"cut #{n}: after the retry {books(inbox).rows}/{appended} stored")
    # Nothing new: a further poll fetches nothing and changes nothing.
    quiet = inbox.poll()
    final = books(inbox)
    lost = appended - final.rows
    reliability.record(
        "imap",
        "connection cut at 6 points of a poll (login, SEARCH, start/middle of a literal, "
        f"a 280 KB message, between items) [{inbox.db}]",
        trials=len(CUTS),
        duplicates=final.duplicates,
        lost=lost,
        outcome=f"failed poll stores nothing and keeps the checkpoint; the next poll stores all "
        f"{appended} once: {final.statuses['handled']} handled, "
        f"{sum(final.handoffs_per_enrollment.values())} handoffs, "
        f"{sum(final.notices_per_handoff.values())} notices",
    )
    assert problems == []
    assert quiet.fetched == 0 and not quiet.errors
    assert final.duplicates == 0 and lost == 0
    assert final.statuses == Counter(handled=appended)
    assert final.replied == appended and len(final.handoffs_per_enrollment) == appended
    assert sum(final.notices_per_handoff.values()) == appended


@pytest.mark.reliability
def test_a_uidvalidity_reset_rescans_without_handling_anything_twice(
    inbox: Inbox, reliability: Recorder
) -> None:
    first = [inbox.fresh() for _ in range(3)]
    inbox.append(reply(first[0]))
    inbox.append(reply(first[1], message_id=False))  # deduped by its hash
    inbox.append(reply(first[2]))
    inbox.poll()
    assert books(inbox).statuses == Counter(handled=3)
    seen_again = 0
    validities = [inbox.dovecot.uidvalidity(inbox.user)]
    for round_ in range(2):
        validities.append(inbox.dovecot.reset_uidvalidity(inbox.user))
        seen_again += books(inbox).rows  # everything already stored is in the rescan
        if round_ == 0:
            inbox.append(reply(inbox.fresh()), hours=2)
        report = inbox.poll()
        assert not report.errors, report.errors
    final = books(inbox)
    reliability.record(
        "imap",
        "UIDVALIDITY reset twice (Dovecot's UID list dropped), new mail in between"
        + f" [{inbox.db}]",
        trials=seen_again,
        duplicates=final.duplicates,
        lost=4 - final.rows,
        outcome=f"rescan by date re-read {seen_again} known messages, stored none again "
        f"(Message-ID / hash), handled the 1 new one; {sum(final.notices_per_handoff.values())}"
        " notices for 4 replies",
    )
    assert len(set(validities)) == 3
    assert final.duplicates == 0 and final.rows == 4
    assert final.statuses == Counter(handled=4) and final.replied == 4
    assert sum(final.notices_per_handoff.values()) == 4
    assert sum(r.fetched for r in inbox.reports[1:]) >= seen_again  # it did re-read them


@pytest.mark.reliability
def test_the_same_message_seen_twice_is_stored_and_handled_once(
    inbox: Inbox, reliability: Recorder
) -> None:
    a, b, c, d = (inbox.fresh() for _ in range(4))
    inbox.append(reply(a))
    inbox.append(reply(a))  # the same bytes twice (two UIDs)
    inbox.append(reply(b))
    inbox.append(
        b"Received: from relay2.example by mx; Mon, 23 Nov 2026 15:01:00 +0000\r\n" + reply(b)
    )
    inbox.append(reply(c, message_id=False))
    inbox.append(reply(c, message_id=False))  # no Message-ID: the same hash
    inbox.poll()
    inbox.append(reply(d))
    inbox.poll()
    inbox.append(reply(a), hours=3)  # a copy arriving after it was handled
    inbox.append(reply(d), hours=3)
    inbox.poll()
    final = books(inbox)
    copies = 9
    reliability.record(
        "imap",
        "the same reply seen twice: same bytes, same Message-ID with other headers, no "
        f"Message-ID, a copy after handling [{inbox.db}]",
        trials=copies - 4,
        duplicates=final.duplicates,
        lost=4 - final.rows,
        outcome=f"{copies} copies of 4 replies → {final.rows} rows, "
        f"{sum(final.handoffs_per_enrollment.values())} handoffs, "
        f"{sum(final.notices_per_handoff.values())} notices",
    )
    assert sum(r.fetched for r in inbox.reports) == copies
    assert final.rows == 4 and final.duplicates == 0
    assert final.statuses == Counter(handled=4)
    assert sum(final.notices_per_handoff.values()) == 4


@pytest.mark.reliability
def test_a_20_mb_reply_is_stored_and_handled_once(inbox: Inbox, reliability: Recorder) -> None:
    i = inbox.fresh()
    msg = EmailMessage()
    msg["From"] = prospect(i)
    msg["To"] = REP
    msg["Subject"] = "Re: James suggested we talk"
    msg["Message-ID"] = f"<big-{i}@bulk.example>"
    msg.set_content(INTERESTED.format(name="P") + "\nOur deck is attached.")
    msg.add_attachment(
        os.urandom(15 * 1024 * 1024), maintype="application", subtype="pdf", filename="deck.pdf"
    )
    raw = msg.as_bytes()
    assert len(raw) > 20 * 1000 * 1000
    inbox.append(raw)
    started = time.perf_counter()
    report = inbox.poll()
    took = time.perf_counter() - started
    again = inbox.poll()
    final = books(inbox)
    with inbox.uow_factory() as uow:
        (row,) = uow.repo.list_inbound()
        stored = uow.repo.get_inbound(row.id)
    assert stored is not None
    reliability.record(
        "imap",
        f"a {len(raw) / 1e6:.1f} MB reply (15 MB attachment) [{inbox.db}]",
        trials=1,
        duplicates=final.duplicates,
        lost=1 - final.rows,
        outcome=f"fetched, stored whole ({len(stored[1]) / 1e6:.1f} MB), classified from its first "
        f"MB as {row.klass}/{row.intent}, handed off once; poll+notice {took:.1f} s",
    )
    assert not report.errors and report.fetched == 1 and again.fetched == 0
    assert stored[1] == raw.replace(b"\n", b"\r\n")  # as the server keeps it: CRLF
    assert (row.status, row.klass) == ("handled", "human_reply")
    assert final.replied == 1 and sum(final.notices_per_handoff.values()) == 1


def _broken(
    i: int, ctype: str, body: bytes, cte: str = "8bit", subject: bytes | None = None
) -> bytes:
    return (
        f"From: P{i} <{prospect(i)}>\r\nTo: {REP}\r\n".encode()
        + b"Subject: "
        + (subject or b"Re: James suggested we talk")
        + f"\r\nMessage-ID: <broken-{i}@bulk.example>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode()
        + body
        + b"\r\n"
    )


BROKEN = {
    "charset=x-unknown": ("text/plain; charset=x-unknown", b"Yes, happy to talk \xe9\xe8 Tuesday?"),
    "invalid UTF-8 in a utf-8 part": (
        "text/plain; charset=utf-8",
        b"Yes, happy to talk \xff\xfe\xc3 on Tuesday? \xe2\x82",
    ),
    "latin-1 bytes labelled utf-8": (
        "text/plain; charset=utf-8",
        "Oui, très intéressé, mardi à 10h ?".encode("latin-1"),
    ),
    "utf-8 bytes labelled us-ascii": (
        "text/plain; charset=us-ascii",
        "Yes — happy to talk, Tuesday? Grüße".encode(),
    ),
    "utf-16 label on 8-bit text": ("text/plain; charset=utf-16", b"Yes, happy to talk\xff"),
    "broken base64": ("text/plain; charset=utf-8", b"WWVzLCBoYXBweSB0byB0YWxr!!!*=\r\n=Zm9v"),
    "broken quoted-printable": ("text/plain; charset=utf-8", b"Yes, happy =ZZ to talk =E9=\r\n=C3"),
    "bogus encoded-word subject, 8-bit header": (
        "text/html; charset=x-mac-bogus",
        b"<p>Yes, happy to talk \x8e\x8f</p>",
    ),
}
_CTE = {"broken base64": "base64", "broken quoted-printable": "quoted-printable"}
_SUBJECT = {
    "bogus encoded-word subject, 8-bit header": b"=?x-bogus?B?!!!?= Re: \xe9t\xe9 talk",
}


@pytest.mark.reliability
def test_broken_charsets_are_classified_or_kept_for_a_human_never_lost(
    inbox: Inbox, reliability: Recorder
) -> None:
    who: dict[str, int] = {}
    for name, (ctype, body) in BROKEN.items():
        who[name] = inbox.fresh()
        inbox.append(_broken(who[name], ctype, body, _CTE.get(name, "8bit"), _SUBJECT.get(name)))
    report = inbox.poll()
    again = inbox.poll()
    final = books(inbox)
    with inbox.uow_factory() as uow:
        rows = {r.from_addr: r for r in uow.repo.list_inbound()}
    outcome = Counter(r.status for r in rows.values())
    lost = len(BROKEN) - final.rows
    reliability.record(
        "imap",
        f"{len(BROKEN)} broken charsets/encodings (unknown charset, invalid UTF-8, "
        f"mislabelled, broken base64/QP, bogus encoded-word) [{inbox.db}]",
        trials=len(BROKEN),
        duplicates=final.duplicates,
        lost=lost,
        outcome=", ".join(f"{n} {s}" for s, n in sorted(outcome.items()))
        + "; no crash, none left unprocessed",
    )
    assert not report.errors and not again.errors and again.fetched == 0
    assert lost == 0 and final.duplicates == 0
    assert set(outcome) <= {"handled", "unhandled"}  # classified, or kept for a human
    for name, i in who.items():
        row = rows.get(prospect(i))
        assert row is not None, f"{name}: no row from {prospect(i)}"
        assert row.status == "unhandled" or row.klass == "human_reply", (name, row)
    # Every sender is either replied (stopped) or held until a human looks.
    assert final.replied + final.held == len(BROKEN)
