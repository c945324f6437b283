"""Conformance of what refseq emits, checked from the outside on SQLite and PostgreSQL.

The bytes are those aiosmtpd received (tests/conformance/mailrun.py runs the real path once
per database); they are checked with code that is not refseq's:

* raw-byte checks written from RFC 5322, 2047, 2369 and 8058 (tests/conformance/rfc.py);
* dkimpy's ``dkim.verify`` over the exact bytes, the key's DNS answer given via ``dnsfunc``;
* a mail client's view from two parsers: the standard library's ``compat32`` policy (which
  never decodes header values, so an encoded URI stays visible) and mail-parser
  (SpamScope's; maintained, pure Python, used in mail-forensics tools: the subject, addresses,
  bodies and defects a reader of the message gets).
"""

from __future__ import annotations

import email
import email.policy
import html
from datetime import datetime

import dkim
import mailparser
import pytest

from tests.conformance import rfc
from tests.conformance.mailrun import (
    DOMAIN,
    LATER,
    REP,
    REPLIED,
    TEMPLATES,
    Run,
    Sent,
    run_everything,
)
from tests.faults.badinput import TICK

MOMENTS = {datetime.fromisoformat(m) for m in (TICK, REPLIED, *LATER)}  # the ticks' clocks
POSTAL = "Acme Analytics Inc, 100 Main St, Springfield, MA 01101"
FOLLOW_UPS = ("warm_follow_up", "cold_follow_up", "cold_breakup")

_RUNS: dict[str, Run | Exception] = {}


@pytest.fixture
def run(
    db_url: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """The run on this test's database backend (made by the first test that needs it)."""
    backend = db_url.partition(":")[0].partition("+")[0]
    if backend not in _RUNS:
        sink = request.getfixturevalue("smtp_sink")
        try:
            _RUNS[backend] = run_everything(
                db_url, tmp_path_factory.mktemp(f"wire-{backend}"), sink
            )
        except Exception as exc:
            _RUNS[backend] = exc
            raise
    got = _RUNS[backend]
    if isinstance(got, Exception):
        pytest.fail(f"the run on {backend} failed in an earlier test: {got!r}", pytrace=False)
    return got


def test_every_shipped_template_goes_out_warm_and_cold(run: Run) -> None:
    assert sorted({s.template for s in run.sent}) == TEMPLATES
    assert {s.temperature for s in run.sent} >= {"warm", "cold"}
    assert {s.sequence for s in run.sent} >= {"warm", "cold", "unnamed"}
    assert len(run.sent) == len({s.raw for s in run.sent})


def wire_problems(s: Sent, run: Run) -> list[str]:
    """Everything wrong with one received message, by the RFCs and by DKIM."""
    fields, _, problems = rfc.split(s.raw)
    problems += rfc.check_lines(s.raw) + rfc.check_header(fields)
    if s.template != "handoff_notice":  # the rep's own notice carries no unsubscribe
        problems += rfc.check_one_click(fields)
        signed = rfc.dkim_signed_fields(fields)
        problems += [
            f"DKIM h= does not cover {name.decode()} (RFC 8058 §4)"
            for name in (b"list-unsubscribe", b"list-unsubscribe-post")
            if name not in signed
        ]
    dates = [rfc.parse_date(f.value) for f in rfc.fields_named(fields, b"date")]
    if not dates or dates[0] not in MOMENTS:
        problems.append(f"Date {dates!r} is not the moment of a tick that sent it")
    tags = rfc.dkim_tags(fields)
    if tags.get(b"d") != DOMAIN.encode():
        problems.append(f"DKIM d= is {tags.get(b'd')!r}, not the From domain")
    if not dkim.verify(s.raw, dnsfunc=run.dnsfunc):
        problems.append("dkim.verify fails on the bytes received")
    if not s.raw.isascii():
        problems.append("8-bit octets in a message sent without 8BITMIME/SMTPUTF8 needs")
    return problems


def client_problems(s: Sent) -> list[str]:
    """What a mail client shows, from compat32 and mail-parser, against what was drafted."""
    problems = []
    fields, _, _ = rfc.split(s.raw)
    plain = email.message_from_bytes(s.raw, policy=email.policy.compat32)
    for part in plain.walk():
        problems += [f"compat32 defect: {d!r}" for d in part.defects]
    parsed = mailparser.parse_from_bytes(s.raw)
    problems += [f"mail-parser defect: {d!r}" for d in parsed.defects]
    if [a.lower() for _, a in parsed.to] != [s.rcpt.lower()]:
        problems.append(f"To is {parsed.to!r}, the envelope {s.rcpt!r}")
    stdlib = email.message_from_bytes(s.raw, policy=email.policy.default)["To"].addresses
    if [n for n, _ in parsed.to] != [a.display_name for a in stdlib]:
        problems.append(f"the To name reads {parsed.to!r} but {stdlib!r} by policy.default")
    if [a.lower() for _, a in parsed.from_] != [REP]:
        problems.append(f"From is {parsed.from_!r}")
    if parsed.message_id != plain["Message-ID"]:
        problems.append(f"Message-ID read as {parsed.message_id!r} / {plain['Message-ID']!r}")
    text = "".join(parsed.text_plain).replace("\r\n", "\n")
    if s.template == "handoff_notice":
        if "=?" in parsed.subject or not parsed.subject.strip() or not text.strip():
            problems.append(f"the notice reads {parsed.subject!r} / {text[:80]!r}")
        return problems
    if parsed.subject != s.subject:
        problems.append(f"Subject reads {parsed.subject!r}, drafted {s.subject!r}")
    assert s.text is not None
    if s.text.strip() not in text:
        problems.append(f"the text part is not the drafted text: {text[:200]!r}")
    raw_header = str(plain["List-Unsubscribe"])  # compat32: the value as on the wire
    uris = [u.decode() for u in rfc.unsubscribe_uris(fields) if u.startswith(b"https:")]
    if not uris or f"<{uris[0]}>" not in raw_header.replace("\r\n", "").replace("\n", ""):
        problems.append(f"no <https:...> in List-Unsubscribe as compat32 reads it: {raw_header!r}")
    elif uris[0] not in text or POSTAL not in text:
        problems.append("the text footer lacks the header's unsubscribe URL or the postal address")
    if s.has_html:
        markup = "".join(parsed.text_html)
        if not uris or f'href="{html.escape(uris[0])}"' not in markup:
            problems.append("the HTML part lacks the unsubscribe link")
    return problems


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_conforms_on_the_wire(run: Run, template: str) -> None:
    sent = run.of(template)
    assert sent, f"{template} was never sent"
    problems = {
        f"{s.template} to {s.rcpt}": wire_problems(s, run) + client_problems(s) for s in sent
    }
    assert not {k: v for k, v in problems.items() if v}, problems


def test_follow_ups_thread_on_the_messages_before_them(run: Run) -> None:
    follow_ups = [s for s in run.sent if s.template in FOLLOW_UPS]
    assert {s.template for s in follow_ups} == set(FOLLOW_UPS)
    for s in follow_ups:
        fields, _, _ = rfc.split(s.raw)
        earlier = [
            e
            for e in run.sent[: run.sent.index(s)]
            if e.rcpt == s.rcpt and e.template != s.template
        ]
        ids = [rfc.msg_ids(rfc.fields_named(rfc.split(e.raw)[0], b"message-id")[0].value)[0]
               for e in earlier]  # fmt: skip
        (parent,) = rfc.msg_ids(rfc.fields_named(fields, b"in-reply-to")[0].value)
        references = rfc.msg_ids(rfc.fields_named(fields, b"references")[0].value)
        assert parent == ids[-1] and references[0] == ids[0] and references[-1] == parent
        first = mailparser.parse_from_bytes(earlier[0].raw).subject
        assert mailparser.parse_from_bytes(s.raw).subject == f"Re: {first}"


def test_the_one_click_uri_on_the_wire_unsubscribes_its_recipient(run: Run) -> None:
    click = run.one_click  # POSTed by mailrun.one_click to the URI parsed from the raw bytes
    assert click.uri.startswith("https://refseq.acme.example/u/")
    assert click.status == 200
    assert click.rcpt not in click.suppressed_before
    assert click.suppressed_after - click.suppressed_before == {click.rcpt}
