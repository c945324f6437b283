"""inbound: raw messages → parsed, matched, classified, stored (and acted on).

refseq's side is one poll, ``services.inbox.poll`` (what ``refseq poll`` and the beat's
``refseq.poll`` task run) with an in-memory mailbox reader in place of IMAP: store each raw
message (parse, dedupe key), then process every stored message: parse, classify (human reply
and its intent, auto-reply and return date, DSN bounce hard/soft, unsubscribe), match it to its
enrollment (In-Reply-To/References, the bounced message's Message-ID, the sender), act (stop,
pause, suppress, hand off to the rep, draft the thank-you) and record the outcome.

The messages (untimed) are the real-world samples of ``tests/fixtures/mail`` (Gmail, Outlook,
Exchange, Apple Mail and Yahoo replies with quoted text, out-of-office replies in six
languages, Postfix/Exim/Exchange/Gmail DSNs, unsubscribe replies), each rewritten to answer a
draft sent to one enrollment: our Message-IDs in them are replaced by that draft's, the
replier's (or bounced) address by the prospect's, their own Message-ID by a unique one. Mix:
40 % human replies, 20 % auto-replies, 10 % hard and 10 % soft bounces, 10 % unsubscribes,
10 % from strangers (nothing to match). Every repetition starts from a copy of the same
database: N enrollments launched and their first step drafted and sent.

The raw baseline, same messages, same run: the stdlib parser on each,
``email.message_from_bytes(raw, policy=email.policy.default)``, reading the headers refseq
reads (From, Subject, Message-ID, In-Reply-To, References, Date) and the text of the preferred
body (``get_body(("plain", "html")).get_content()``). Nothing else.

Target: ratio ≥ 0.5.
"""

from __future__ import annotations

import email
import email.policy
import random
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.data import NOW, ROOT, copy_of, draft_config, fresh_database, launch
from benchmarks.harness import Context, Result, alternate, peak_rss_mb

STAGE = "inbound"
FIXTURES = ROOT / "tests" / "fixtures" / "mail"
MIX = (
    ("human_reply", 40),
    ("auto_reply", 20),
    ("hard_bounce", 10),
    ("soft_bounce", 10),
    ("unsubscribe", 10),
    ("stranger", 10),
)
SENT_AT = NOW + timedelta(days=1)
RECEIVED_AT = NOW + timedelta(days=2)
PROCESS_AT = NOW + timedelta(days=2, hours=1)
OUR_ID = re.compile(rb"<([A-Za-z0-9._-]+)@acme\.example>")
NOT_IDS = {b"dana", b"postmaster", b"unsubscribe"}
TOP_MESSAGE_ID = re.compile(rb"^(Message-I[Dd]:[ \t]*)(<[^>\r\n]+>)", re.MULTILINE)
FROM_ADDR = re.compile(rb"^From:[^\r\n]*?<?([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+)>?", re.MULTILINE)
FINAL_RECIPIENT = re.compile(rb"Final-Recipient:\s*rfc822;\s*([^\s>]+)", re.IGNORECASE)


def _note(msg: str) -> None:
    print(f"inbound: {msg}", file=sys.stderr, flush=True)


def _samples() -> dict[str, list[bytes]]:
    out = {}
    for kind, _ in MIX:
        folder = FIXTURES / ("human_reply" if kind == "stranger" else kind)
        out[kind] = [p.read_bytes() for p in sorted(folder.glob("*.eml"))]
    return out


def _header_block(raw: bytes) -> bytes:
    end = re.search(rb"\r?\n\r?\n", raw)
    return raw if end is None else raw[: end.start()]


def rewrite(sample: bytes, kind: str, i: int, message_id: str, prospect: str) -> bytes:
    """``sample`` made to answer the draft ``message_id`` sent to ``prospect``."""
    raw = sample
    head = _header_block(raw)
    own = TOP_MESSAGE_ID.search(head)
    if own is not None:
        raw = raw.replace(own.group(2), f"<bench-{i}-{kind}@mail.example>".encode(), 1)
    else:
        raw = f"Message-ID: <bench-{i}-{kind}@mail.example>\r\n".encode() + raw
    ours = message_id.encode() if kind != "stranger" else f"<unknown{i}@acme.example>".encode()
    raw = OUR_ID.sub(lambda m: m.group(0) if m.group(1) in NOT_IDS else ours, raw)
    if kind in ("hard_bounce", "soft_bounce"):
        found = FINAL_RECIPIENT.search(raw)
        old = found.group(1) if found else None
    else:
        found = FROM_ADDR.search(head)
        old = found.group(1) if found else None
    if old:
        new = f"stranger{i}@elsewhere.example" if kind == "stranger" else prospect
        raw = raw.replace(old, new.encode())
    return raw


def messages(url: str, count: int, seed: int = 9) -> list[bytes]:
    """``count`` raw messages, each answering a different sent draft."""
    from sqlalchemy import text

    from sequencer.adapters.db.session import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            sent = conn.execute(
                text("SELECT message_id, to_email FROM drafts WHERE state = 'sent' ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    assert len(sent) >= count, (len(sent), count)
    rng = random.Random(seed)
    samples = _samples()
    kinds = [k for k, weight in MIX for _ in range(weight)]
    out = []
    for i, (message_id, to_email) in enumerate(sent[:count]):
        kind = kinds[i % len(kinds)]
        out.append(rewrite(rng.choice(samples[kind]), kind, i, message_id, to_email))
    rng.shuffle(out)
    return out


def prepare(url: str, workdir: Path, n: int) -> None:
    """N enrollments launched; their first step drafted, approved and sent (SQL, untimed)."""
    from sqlalchemy import literal, update

    from sequencer.adapters.db.repository import DRAFTS, ENROLLMENTS
    from sequencer.adapters.db.session import make_engine, make_uow_factory
    from sequencer.adapters.db.types import UTCDateTime
    from sequencer.services.drafting import draft_due

    launch(url, workdir, n)
    uow_factory = make_uow_factory(url)
    try:
        draft_due(uow_factory, draft_config(), NOW + timedelta(days=1))
    finally:
        uow_factory.dispose()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            at = literal(SENT_AT, UTCDateTime)
            conn.execute(
                update(DRAFTS).values(
                    state="sent", sent_at=at, attempts=1, mailbox_key="dana@127.0.0.1:2525"
                )
            )
            conn.execute(
                update(ENROLLMENTS)
                .where(ENROLLMENTS.c.state == "active")
                .values(steps_done=1, next_due_at=literal(NOW + timedelta(days=5), UTCDateTime))
            )
    finally:
        engine.dispose()


class ListReader:
    """A ``MailboxReader`` that hands over the given messages once, like a fresh IMAP folder."""

    def __init__(self, raws: list[bytes]) -> None:
        from sequencer.core.ports import FetchedMail

        self.mails = [FetchedMail(i + 1, raw, RECEIVED_AT) for i, raw in enumerate(raws)]

    def fetch_new(self, account: Any, checkpoint: Any, rescan_since: Any, limit: int = 500) -> Any:
        from sequencer.core.ports import FetchBatch

        after = checkpoint.last_uid if checkpoint is not None else 0
        batch = [m for m in self.mails if m.uid > after][:limit]
        return FetchBatch(uidvalidity=1, messages=batch, rescanned=checkpoint is None)

    def find_message_id(self, account: Any, folder: str | None, message_id: str) -> bool:
        return False

    def close(self) -> None:
        pass


def baseline(raws: list[bytes]) -> int:
    """The stdlib parse of every message; returns the characters of body text read."""
    chars = 0
    for raw in raws:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        for name in ("From", "Subject", "Message-ID", "In-Reply-To", "References", "Date"):
            msg.get(name)
        body = msg.get_body(("plain", "html"))  # type: ignore[attr-defined]
        if body is not None:
            with suppress(LookupError, ValueError):
                chars += len(body.get_content())
    return chars


@contextmanager
def _prepared(kind: str, ctx: Context, n: int) -> Iterator[str]:
    with fresh_database(kind, ctx.workdir, ctx.pg_admin_url) as url:
        prepare(url, Path(ctx.workdir) / f"campaign-{kind}", n)
        yield url


def run(ctx: Context) -> list[Result]:
    from sequencer.adapters.db.session import make_uow_factory
    from sequencer.services.inbox import InboxConfig, poll

    n = ctx.pick(100, 2_000, 5_000)
    cfg = InboxConfig(env={"REFSEQ_IMAP_PASSWORD": "bench"}, draft_cfg=draft_config())
    results = []
    for kind in ctx.dbs:
        with _prepared(kind, ctx, n) as base:
            _note(f"{kind}: {n:,} enrollments drafted and sent (untimed)")
            raws = messages(base, n)
            outcomes: list[dict[str, Any]] = []

            def ours(
                kind: str = kind, base: str = base, raws: list[bytes] = raws, out: Any = outcomes
            ) -> float:
                _note(f"{kind}: refseq poll of {len(raws):,} messages")
                with copy_of(base, ctx.workdir, ctx.pg_admin_url) as url:
                    uow_factory = make_uow_factory(url)
                    try:
                        started = time.perf_counter()
                        report = poll(uow_factory, ListReader(raws), cfg, PROCESS_AT)
                        seconds = time.perf_counter() - started
                    finally:
                        uow_factory.dispose()
                assert report.stored == len(raws), (report.stored, len(raws), report.errors)
                out.append(
                    {
                        "handled": dict(sorted(report.handled.items())),
                        "unmatched": report.unmatched,
                        "unhandled": report.unhandled,
                        "handoffs": report.handoffs,
                    }
                )
                return seconds

            def raw(kind: str = kind, raws: list[bytes] = raws) -> float:
                _note(f"{kind}: stdlib parse of {len(raws):,} messages")
                started = time.perf_counter()
                baseline(raws)
                return time.perf_counter() - started

            seconds, base_seconds = alternate(ours, raw, ctx.reps)
            ratio = base_seconds / seconds
            outcome = outcomes[0]
            results.append(
                Result(
                    stage=STAGE,
                    db=kind,
                    items=len(raws),
                    unit="messages",
                    seconds=seconds,
                    baseline_seconds=base_seconds,
                    baseline="email.message_from_bytes(policy=default) + body text",
                    target=">= 0.5",
                    met=ratio >= 0.5,
                    peak_rss_mb=peak_rss_mb(),
                    extra=outcome,
                    notes="handled "
                    + ", ".join(f"{v} {k}" for k, v in outcome["handled"].items())
                    + f"; {outcome['unmatched']} unmatched, {outcome['unhandled']} for a human, "
                    f"{outcome['handoffs']} handed off",
                )
            )
    return results
