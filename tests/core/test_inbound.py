"""The inbound classifier on hand-written fixtures modelled on real MTAs and mail clients.

tests/fixtures/mail/<class>/*.eml: the folder name is the expected class.
"""

import email.message
import random
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from sequencer.core import autoreply, optout_text, replytext
from sequencer.core.inbound import (
    InboundClass,
    Intent,
    ParsedInbound,
    Verdict,
    classify,
    header_safe,
    html_to_text,
    parse_inbound,
)

MAIL = Path(__file__).resolve().parents[1] / "fixtures" / "mail"
FIXTURES = sorted(MAIL.glob("*/*.eml"))
CONTROL = {chr(c) for c in range(32)} | {"\x7f", "\u2028", "\u2029", "\u202e"}


def load(name: str) -> tuple[ParsedInbound, Verdict]:
    raw = (MAIL / name).read_bytes()
    parsed = parse_inbound(raw)
    return parsed, classify(parsed, raw)


def test_there_are_enough_fixtures_of_every_class():
    counts = {k: len(list((MAIL / k.value).glob("*.eml"))) for k in InboundClass}
    assert len(FIXTURES) >= 35
    assert all(n >= 3 for n in counts.values()), counts


@pytest.mark.parametrize("with_raw", [True, False], ids=["with-raw", "parsed-only"])
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_fixture_gets_the_class_of_its_folder(path, with_raw):
    raw = path.read_bytes()
    verdict = classify(parse_inbound(raw), raw if with_raw else None)
    assert verdict.klass == InboundClass(path.parent.name), verdict.evidence
    assert verdict.evidence
    assert 0.0 <= verdict.confidence <= 1.0


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_parsed_header_values_are_header_safe(path):
    p = parse_inbound(path.read_bytes())
    values = [p.from_addr, p.from_name, p.subject, p.message_id or "", *p.in_reply_to]
    values += [*p.references, *p.returned_message_ids, *p.headers_of_interest.values()]
    for value in values:
        assert not CONTROL & set(value), value
    if p.message_id:
        assert p.message_id.startswith("<") and p.message_id.endswith(">")


# -- bounces --------------------------------------------------------------------------------------

HARD = [
    ("postfix_user_unknown", "ghost@initech.example", "5.1.1", "<abc123@acme.example>"),
    ("exim_user_unknown", "h.jansen@vandelay.example", "5.1.1", "<def456@acme.example>"),
    ("office365_recipient_not_found", "olivia.brandt@globex.example", "5.1.10",
     "<ghi789@acme.example>"),
    ("gmail_address_not_found", "priya.raman@hooli.example", "5.1.1", "<jkl012@acme.example>"),
    ("qmail_no_mailbox", "cosmo@kramerica.example", "5.1.1", "<mno345@acme.example>"),
    ("sendmail_user_unknown", "charlie.bucket@wonka.example", "5.1.1", "<pqr678@acme.example>"),
    ("exchange_legacy_ndr", "miles.dyson@cyberdyne.example", "5.1.1", "<stu901@acme.example>"),
    ("postfix_domain_not_found", "art@vandelay-industries.example", "5.4.4",
     "<vwx234@acme.example>"),
]  # fmt: skip
SOFT = [
    ("postfix_delayed_4_4_1", "n.petrova@stark.example", "4.4.1", "<yza567@acme.example>"),
    ("gmail_mailbox_full_5_2_2", "tom.hagen@corleone.example", "5.2.2", "<bcd890@acme.example>"),
    ("postfix_spamhaus_5_7_1", "elaine@pendant.example", "5.7.1", "<efg123@acme.example>"),
    ("exim_over_quota", "george@costanza.example", "5.2.2", "<hij456@acme.example>"),
    ("gmail_delay", "lisa.cuddy@ppth.example", "4.7.0", "<klm789@acme.example>"),
    ("office365_blocked_5_7_708", "k.oneil@umbrella.example", "5.7.708", "<nop012@acme.example>"),
]


@pytest.mark.parametrize(("name", "address", "status", "original"), HARD, ids=lambda v: str(v))
def test_hard_bounces_name_the_address_status_and_our_original(name, address, status, original):
    parsed, verdict = load(f"hard_bounce/{name}.eml")
    assert verdict.klass is InboundClass.HARD_BOUNCE
    assert verdict.bounced == [(address, status)]
    assert original in parsed.returned_message_ids
    assert any(f"Status: {status}" in e and address in e for e in verdict.evidence)


@pytest.mark.parametrize(("name", "address", "status", "original"), SOFT, ids=lambda v: str(v))
def test_soft_bounces_are_not_the_address_fault(name, address, status, original):
    parsed, verdict = load(f"soft_bounce/{name}.eml")
    assert verdict.klass is InboundClass.SOFT_BOUNCE
    assert verdict.bounced == [(address, status)]
    assert original in parsed.returned_message_ids


def test_the_dsn_reader_keeps_per_recipient_fields():
    parsed, verdict = load("hard_bounce/postfix_user_unknown.eml")
    (report,) = parsed.delivery_reports
    assert (report.recipient, report.action, report.status) == (
        "ghost@initech.example",
        "failed",
        "5.1.1",
    )
    assert report.diagnostic.startswith("smtp; 550 5.1.1 <ghost@initech.example>: Recipient")
    assert verdict.evidence[0] == "Content-Type multipart/report; report-type=delivery-status"
    assert verdict.confidence == 0.99


def test_a_delayed_dsn_is_soft_and_says_why():
    _, verdict = load("soft_bounce/postfix_delayed_4_4_1.eml")
    assert "Status: 4.4.1 for n.petrova@stark.example (delayed: temporary failure)" in (
        verdict.evidence
    )


def test_a_spam_block_is_soft_because_it_is_not_the_address_fault():
    _, verdict = load("soft_bounce/postfix_spamhaus_5_7_1.eml")
    assert any("policy/spam block (5.7.x)" in e for e in verdict.evidence)


@pytest.mark.parametrize(
    "name",
    ["hard_bounce/postfix_user_unknown.eml", "hard_bounce/office365_recipient_not_found.eml",
     "hard_bounce/exim_user_unknown.eml", "soft_bounce/gmail_delay.eml"],
)  # fmt: skip
def test_a_bounce_with_auto_submitted_is_still_a_bounce(name):
    parsed, verdict = load(name)
    assert parsed.headers_of_interest["auto-submitted"].startswith("auto-")
    assert verdict.klass in (InboundClass.HARD_BOUNCE, InboundClass.SOFT_BOUNCE)


def test_a_built_bounce_with_every_auto_reply_header_is_still_a_bounce():
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n"
        b"To: dana@acme.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Auto-Submitted: auto-replied\r\nX-Autoreply: yes\r\nPrecedence: auto_reply\r\n\r\n"
        b"This is the mail system at host mx.example.\r\n\r\n"
        b"<nobody@x.example>: host mx.x.example said: 550 5.1.1 User unknown\r\n"
    )
    verdict = classify(parse_inbound(raw), raw)
    assert verdict.klass is InboundClass.HARD_BOUNCE
    assert verdict.bounced == [("nobody@x.example", "5.1.1")]


# -- auto-replies ---------------------------------------------------------------------------------

RETURNS = [
    ("exchange_oof_en", date(2026, 12, 7)),
    ("gmail_vacation", date(2026, 12, 3)),
    ("german_abwesenheitsnotiz", date(2026, 12, 3)),
    ("french_reponse_automatique", date(2026, 12, 7)),
    ("spanish_respuesta_automatica", date(2026, 12, 9)),
    ("dutch_afwezig", date(2026, 12, 7)),
    ("italian_risposta_automatica", date(2026, 12, 10)),
    ("portuguese_resposta_automatica", date(2026, 12, 14)),
    ("weekday_only_out_of_office", date(2026, 12, 7)),
    ("body_cue_only", date(2026, 12, 10)),
    ("helpdesk_autorespond", None),
]


@pytest.mark.parametrize(("name", "back"), RETURNS, ids=lambda v: str(v))
def test_auto_replies_carry_the_return_date(name, back):
    _, verdict = load(f"auto_reply/{name}.eml")
    assert verdict.klass is InboundClass.AUTO_REPLY
    assert verdict.return_date == back
    assert verdict.intent is Intent.NEUTRAL


def test_auto_reply_evidence_names_the_headers_and_the_subject():
    _, verdict = load("auto_reply/exchange_oof_en.eml")
    assert "Auto-Submitted: auto-generated" in verdict.evidence
    assert "subject matches 'Automatic reply'" in verdict.evidence
    assert "X-Auto-Response-Suppress: All" in verdict.evidence
    assert "return date 2026-12-07 from 'back on Monday 7 December." in " ".join(verdict.evidence)


def test_a_left_the_company_auto_reply_points_to_the_successor():
    _, verdict = load("auto_reply/left_company_redirect.eml")
    assert verdict.klass is InboundClass.AUTO_REPLY
    assert verdict.intent is Intent.REDIRECT
    assert verdict.redirect_to == "Angela Martin <angela.martin@schrute-farms.example>"


MONDAY = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("text", "ref", "back"),
    [
        ("I will be back on Monday 3 December.", date(2018, 11, 28), date(2018, 12, 3)),
        ("I'm out, returning 12/03/2026.", MONDAY, date(2026, 12, 3)),
        ("Ich bin zurück am 03.12.2026.", MONDAY, date(2026, 12, 3)),
        ("Je serai de retour le 3 décembre.", MONDAY, date(2026, 12, 3)),
        ("Sono di ritorno il 03/12/2026.", MONDAY, date(2026, 12, 3)),
        ("Back on Monday.", MONDAY, date(2026, 12, 7)),
        ("Back on Wednesday.", MONDAY, date(2026, 12, 2)),
        ("I am out of the office until December 4.", MONDAY, date(2026, 12, 5)),
        ("Ich bin bis 04.12. nicht im Büro.", MONDAY, date(2026, 12, 5)),
        ("Out until Friday 4 December, back on Monday 7 December.", MONDAY, date(2026, 12, 7)),
        ("Back on 4 January.", date(2026, 12, 28), date(2027, 1, 4)),
        ("Back in the office on 2026-12-09.", MONDAY, date(2026, 12, 9)),
        ("Returning tomorrow.", MONDAY, date(2026, 12, 1)),
        ("I will get back to you soon.", MONDAY, None),
        ("Back on 31/02/2026.", MONDAY, None),
    ],
)
def test_return_dates_are_read_relative_to_the_message_date(text, ref, back):
    found = autoreply.return_date(text, ref)
    assert (found[0] if found else None) == back


def test_a_weekday_needs_a_message_date():
    assert autoreply.return_date("back on Monday", None) is None
    assert autoreply.return_date("back on 2026-12-07", None) is not None


# -- human replies --------------------------------------------------------------------------------

HUMAN = [
    ("gmail_interested", Intent.INTERESTED, "Sounds good, Tuesday?", "Mark", None),
    ("outlook_redirect_colleague", Intent.REDIRECT, "Hi Dana,", "+1 555 0100 | www.globex.example",
     "Jane Doe <jane.doe@globex.example>"),
    ("gmail_redirect_cc", Intent.REDIRECT, "Hi Dana,", "Sam",
     "Maria Garcia <maria.garcia@sgc-aero.example>"),
    ("reach_out_to_at", Intent.REDIRECT, "Dana,", "-Hank",
     "Marie Lopez <marie.lopez@dea-consulting.example>"),
    ("apple_unknown_referrer", Intent.UNKNOWN_REFERRER, "I don\u2019t know Jon Smith.",
     "How did you get my address?", None),
    ("yahoo_unknown_referrer", Intent.UNKNOWN_REFERRER, "Sorry, who is Jon Smith?", "Walt", None),
    ("thunderbird_question", Intent.QUESTION, "Hi Dana,", "Karl", None),
    ("spanish_question", Intent.QUESTION, "Hola Dana,", "Diego", None),
    ("german_interested", Intent.INTERESTED, "Hallo Frau Whitfield,", "Katrin Wagner", None),
    ("html_only_interested", Intent.INTERESTED, "Hi Dana,", "Olga", None),
    ("french_not_interested", Intent.NOT_INTERESTED, "Bonjour Dana,", "Sophie Martin", None),
    ("outlook_original_message_not_interested", Intent.NOT_INTERESTED, "No thanks, we're all set",
     "VP Operations, Initrode", None),
    ("outlook_mac_neutral", Intent.NEUTRAL, "Thanks Dana, I'll take a look", "Nina", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "intent", "starts", "ends", "redirect"), HUMAN, ids=str)
def test_human_replies_keep_only_the_new_text_and_read_its_intent(
    name, intent, starts, ends, redirect
):
    _, verdict = load(f"human_reply/{name}.eml")
    assert verdict.klass is InboundClass.HUMAN_REPLY
    assert verdict.reply_text.startswith(starts)
    assert verdict.reply_text.endswith(ends)
    assert verdict.intent is intent, verdict.evidence
    assert verdict.redirect_to == redirect
    for quoted in ("Jon Smith suggested I reach out", "Unsubscribe", "Dana Whitfield"):
        assert quoted not in verdict.reply_text


def test_the_gmail_reply_is_exactly_the_top_post():
    parsed, verdict = load("human_reply/gmail_interested.eml")
    assert verdict.reply_text == "Sounds good, Tuesday?\n\nMark"
    assert parsed.in_reply_to == ["<abc123@acme.example>"]
    assert parsed.from_addr == "mark.brody@wayne-logistics.example"
    assert parsed.from_name == "Mark Brody"
    assert parsed.subject == "Re: Jon Smith suggested we talk"
    assert parsed.date == datetime(2026, 11, 30, 15, 2, 39, tzinfo=UTC)


def test_signatures_are_cut():
    _, thunderbird = load("human_reply/thunderbird_question.eml")
    assert "CTO, Tyrell" not in thunderbird.reply_text
    _, apple = load("human_reply/apple_unknown_referrer.eml")
    assert "Sent from my iPhone" not in apple.reply_text


def test_html_only_mail_is_converted_with_the_quote_marked():
    parsed, _ = load("human_reply/html_only_interested.eml")
    assert "alert(" not in parsed.text
    assert "font-family" not in parsed.text
    assert "> Hi Olga," in parsed.text


# -- unsubscribe ----------------------------------------------------------------------------------


def test_an_arf_abuse_report_unsubscribes_and_names_our_original():
    parsed, verdict = load("unsubscribe/arf_abuse_report.eml")
    assert verdict.klass is InboundClass.UNSUBSCRIBE
    assert "ARF Feedback-Type: abuse" in verdict.evidence
    assert parsed.returned_message_ids == ["<tuv678@acme.example>"]


def test_a_mailto_unsubscribe_needs_no_body():
    _, verdict = load("unsubscribe/mailto_unsubscribe.eml")
    assert verdict.evidence == ["subject is exactly 'unsubscribe' (mailto unsubscribe)"]


def test_unsubscribe_wins_over_a_human_reply_but_our_quoted_footer_does_not_count():
    _, remove = load("unsubscribe/reply_remove_me.eml")
    assert remove.reply_text == "Please remove me from your list."
    _, interested = load("human_reply/gmail_interested.eml")  # quotes our "Unsubscribe:" footer
    assert interested.klass is InboundClass.HUMAN_REPLY


# -- rules in isolation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Not interested. And who is Jon Smith?", Intent.UNKNOWN_REFERRER),
        ("I never heard of him, sorry.", Intent.UNKNOWN_REFERRER),
        ("Not interested, talk to Jane Roe (jane@x.example).", Intent.REDIRECT),
        ("Jane Roe handles this: jane@x.example", Intent.REDIRECT),
        ("Our ERP team handles this already, no thanks.", Intent.NOT_INTERESTED),
        ("We're all set, thanks.", Intent.NOT_INTERESTED),
        ("Sounds great, but how much is it?", Intent.INTERESTED),
        ("Tuesday works.", Intent.INTERESTED),
        ("What does it cost", Intent.QUESTION),
        ("I don't know if we need this.", Intent.NEUTRAL),
        ("Thanks, noted.", Intent.NEUTRAL),
    ],
)
def test_intent_rules_and_their_precedence(text, intent):
    assert replytext.detect_intent(text, "me@x.example", []).intent is intent


@pytest.mark.parametrize(
    "text",
    ["please remove me", "Take me off your list", "stop emailing me", "Do not contact me again",
     "Please stop.", "Bitte abmelden", "Merci de me désinscrire", "No me escriba más",
     "unsubscribe"],
)  # fmt: skip
def test_unsubscribe_phrases(text):
    assert optout_text.unsubscribe_request(text, "Re: hi") is not None


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("Please stop by our booth on Tuesday!", "Re: hi"),
        ("Sounds good - Tuesday?", "Re: Stop sending paper invoices"),
        ("Sounds good. We could stop sending paper invoices next quarter.", "Re: hi"),
        ("Before we talk: how do your customers' clients unsubscribe from payment reminders, "
         "and can they opt out of SMS too? We need both for compliance reasons.", "Re: hi"),
    ],
)  # fmt: skip
def test_near_misses_are_not_unsubscribes(text, subject):
    assert optout_text.unsubscribe_request(text, subject) is None


def test_a_reply_to_a_subject_that_says_stop_is_still_a_reply():
    raw = (
        b"From: Pat <pat@x.example>\nSubject: Re: Stop sending paper invoices\n"
        b"In-Reply-To: <abc123@acme.example>\n\nSounds good - Tuesday?\n"
    )
    verdict = classify(parse_inbound(raw), raw)
    assert (verdict.klass, verdict.intent) == (InboundClass.HUMAN_REPLY, Intent.INTERESTED)
    fresh = raw.replace(b"Re: Stop sending paper invoices", b"Re: unsubscribe")
    assert classify(parse_inbound(fresh)).klass is InboundClass.UNSUBSCRIBE


def test_the_splitter_handles_german_outlook_blocks_and_interleaved_quotes():
    german = "Passt.\n\nVon: Dana <dana@acme.example>\nGesendet: Montag\nAn: Karl\nBetreff: x\n\nHi"
    assert replytext.extract_reply(german).text == "Passt."
    interleaved = "> Would Tuesday work?\nYes, 10am.\n> Budget?\nAround 20k.\n"
    assert replytext.extract_reply(interleaved).text == "Yes, 10am.\nAround 20k."


def test_html_to_text_survives_unclosed_tags_quickly():
    started = time.perf_counter()
    assert html_to_text("<a" * 100_000).startswith("<a<a")
    assert time.perf_counter() - started < 5


# -- hostile input --------------------------------------------------------------------------------


def test_header_safe_strips_line_breaks_controls_and_bidi_overrides():
    assert header_safe("Hello\r\nBcc: evil@x.example") == "Hello Bcc: evil@x.example"
    assert header_safe("a\tb\x00c\x1b[31md\u2028e\u202egnp.exe\udcff") == "a b c [31md e gnp.exe"
    assert header_safe("  spaced\n\n out  ") == "spaced out"
    assert header_safe("Jürgen Müller") == "Jürgen Müller"


def test_a_crlf_injection_in_subject_and_from_is_stripped():
    raw = (
        b"From: =?utf-8?q?Eve=0D=0ABcc=3A_victim=40x=2Eexample?= <eve@x.example>\r\n"
        b"Subject: =?utf-8?q?Re=3A_hi=0D=0ABcc=3A_victim=40x=2Eexample=0A=0A?=\r\n"
        b"Message-ID: <id\r\n  @x.example>\r\n"
        b"To: dana@acme.example\r\n\r\nSounds good!\r\n"
    )
    parsed = parse_inbound(raw)
    assert parsed.subject == "Re: hi Bcc: victim@x.example"
    assert parsed.from_name == "Eve Bcc: victim@x.example"
    assert parsed.from_addr == "eve@x.example"
    for value in (parsed.subject, parsed.from_name, parsed.from_addr):
        assert "\r" not in value and "\n" not in value
    assert classify(parsed, raw).klass is InboundClass.HUMAN_REPLY


def test_raw_8bit_headers_are_read_as_utf8():
    raw = "From: Jürgen Müller <j@x.example>\nSubject: Grüße\n\nKlingt gut".encode()
    parsed = parse_inbound(raw)
    assert (parsed.from_name, parsed.subject) == ("Jürgen Müller", "Grüße")


def test_inbound_messages_are_never_reserialised(monkeypatch):
    calls = []
    for method in ("as_bytes", "as_string", "__bytes__", "__str__"):
        monkeypatch.setattr(
            email.message.Message, method, lambda self, *a, m=method, **k: calls.append(m) or ""
        )
    for path in FIXTURES:
        raw = path.read_bytes()
        classify(parse_inbound(raw), raw)
    assert calls == []


def _fuzz_inputs():
    rng = random.Random(20261130)
    for _ in range(150):
        yield bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
    for path in FIXTURES:
        raw = path.read_bytes()
        for cut in sorted({1, 10, len(raw) // 3, len(raw) // 2, len(raw) - 7}):
            yield raw[: max(cut, 0)]
        mutated = bytearray(raw)
        for _ in range(30):
            if mutated:
                mutated[rng.randrange(len(mutated))] = rng.choice(b":<>\r\n\x00-=?;\"'\\\xff")
        yield bytes(mutated)


def test_garbage_truncations_and_mutations_never_raise():
    for raw in _fuzz_inputs():
        parsed = parse_inbound(raw)
        verdict = classify(parsed, raw)
        assert isinstance(verdict.klass, InboundClass)
        assert isinstance(verdict.intent, Intent)
        assert not CONTROL & set(parsed.subject + parsed.from_name + parsed.from_addr)


def test_garbage_is_unknown():
    for raw in (b"", b"\x00\xff" * 100, b"not an email at all", b"Subject"):
        assert classify(parse_inbound(raw)).klass is InboundClass.UNKNOWN


HOSTILE = {
    "quadratic From header": b"From: " + b"\\" * 200_000 + b"\n\nhi",
    "quadratic Content-Type": b"From: a@x.example\nContent-Type: " + b"a. " * 60_000 + b"\n\nhi",
    "unclosed HTML tags": b"From: a@x.example\nContent-Type: text/html\n\n" + b"<a" * 130_000,
    "a hundred thousand parts": b"From: a@x.example\nContent-Type: multipart/mixed; boundary=B\n\n"
    + b"--B\nContent-Type: text/plain\n\nx\n" * 40_000,
    "deep nesting": b"From: a@x.example\n"
    + b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(3000)),
    "deep message/rfc822": b"From: a@x.example\n" + b"Content-Type: message/rfc822\n\n" * 20_000,
    "bounce with a huge line": b"From: MAILER-DAEMON@x.example\nSubject: failure notice\n\n"
    b"Hi. This is the qmail-send program\n\n<a@b.example>:\n" + b"a@" + b"b" * 600_000,
    "Exchange bounce lines": b"From: postmaster@x.example\nSubject: Undeliverable: x\n\n"
    b"did not reach the following recipient\n" + (b"x@" + b"y" * 990 + b"\n") * 120,
    "attribution bait": b"From: a@x.example\n\n" + b"On " + b"a " * 200_000,
}  # fmt: skip


@pytest.mark.parametrize("raw", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_input_is_bounded_in_time(raw):
    started = time.perf_counter()
    classify(parse_inbound(raw), raw)
    assert time.perf_counter() - started < 5
