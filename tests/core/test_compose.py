"""Composing the RFC 5322 message: headers, unsubscribe, footer, threading, injection."""

from __future__ import annotations

import email
import email.policy
import html
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

import pytest

from sequencer.core.compose import (
    HeaderInjectionError,
    compose_message,
    footer_text,
    make_message_id,
    thread_subject,
)
from sequencer.core.render import RenderedEmail

URL = "https://acme.io/u/ZWxlbmE.c2ln?c=1&x=2"
MAILTO = "unsubscribe@acme.io"
ADDRESS = "Acme Inc\n1 Main St, Springfield, IL 62701"
WHEN = datetime(2024, 5, 7, 9, 30, tzinfo=UTC)
TEXT = RenderedEmail("warm_intro", "Jon Smith suggested we talk", "Hi Elena,\n\nHello.\n", None)
BOTH = RenderedEmail(
    "warm_intro",
    "Jon Smith suggested we talk",
    "Hi Elena,\n\nHello.\n",
    "<html><body><p>Hi Elena,</p></body></html>\n",
)


def compose(**overrides: Any) -> EmailMessage:
    args: dict[str, Any] = {
        "rendered": TEXT,
        "from_name": "Sam Rivera",
        "from_email": "sam@acme.io",
        "to_name": "Elena Petrova",
        "to_email": "elena@pixel.io",
        "message_id": "<abc.123@acme.io>",
        "in_reply_to": None,
        "references": (),
        "unsubscribe_url": URL,
        "unsubscribe_mailto": MAILTO,
        "postal_address": ADDRESS,
        "date": WHEN,
    }
    args.update(overrides)
    return compose_message(**args)


def parse(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")  # base64/QP parts carry the SMTP line endings


def test_it_sets_the_headers_exactly() -> None:
    raw = compose().as_bytes()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = parse(compose())
    assert msg["From"] == "Sam Rivera <sam@acme.io>"
    assert msg["To"] == "Elena Petrova <elena@pixel.io>"
    assert msg["Subject"] == "Jon Smith suggested we talk"
    assert msg["Date"] == "Tue, 07 May 2024 09:30:00 +0000"
    assert msg["Message-ID"] == "<abc.123@acme.io>"
    assert msg["List-Unsubscribe"] == (f"<{URL}>, <mailto:unsubscribe@acme.io?subject=unsubscribe>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["In-Reply-To"] is None
    assert msg["References"] is None
    assert msg.get_content_type() == "text/plain"


def test_it_accepts_a_full_mailto_url_or_none() -> None:
    msg = compose(unsubscribe_mailto="mailto:u@acme.io?subject=stop")
    assert msg["List-Unsubscribe"] == f"<{URL}>, <mailto:u@acme.io?subject=stop>"
    assert compose(unsubscribe_mailto="")["List-Unsubscribe"] == f"<{URL}>"


def test_it_threads_follow_ups() -> None:
    msg = parse(
        compose(
            message_id="<c@acme.io>",
            in_reply_to="<b@acme.io>",
            references=["<a@acme.io>", "<b@acme.io>"],
            rendered=RenderedEmail("f", thread_subject(TEXT.subject), "Again\n", None),
        )
    )
    assert msg["In-Reply-To"] == "<b@acme.io>"
    assert msg["References"] == "<a@acme.io> <b@acme.io>"
    assert msg["Subject"] == "Re: Jon Smith suggested we talk"


def test_it_appends_the_footer_to_the_text_part() -> None:
    text = body(parse(compose()), "plain")
    assert text == "Hi Elena,\n\nHello.\n\n" + footer_text(URL, ADDRESS)
    assert URL in text
    assert "Acme Inc\n1 Main St, Springfield, IL 62701\n" in text
    assert "unsubscribe" in text.lower()


def test_it_builds_multipart_alternative_with_the_footer_in_both_parts() -> None:
    msg = parse(compose(rendered=BOTH))
    assert msg.get_content_type() == "multipart/alternative"
    text, markup = body(msg, "plain"), body(msg, "html")
    assert URL in text
    assert "1 Main St, Springfield, IL 62701" in text
    assert f'href="{html.escape(URL)}"' in markup
    assert "Acme Inc<br>1 Main St, Springfield, IL 62701" in markup
    assert markup.index("unsubscribe here") < markup.index("</body>")  # inside the body


def test_it_escapes_the_html_footer() -> None:
    msg = parse(compose(rendered=BOTH, postal_address="<b>Evil</b> & Sons"))
    markup = body(msg, "html")
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Sons" in markup
    assert "<b>Evil" not in markup
    assert "<b>Evil</b> & Sons" in body(msg, "plain")


@pytest.mark.parametrize(
    "overrides",
    [
        {"rendered": RenderedEmail("t", "Hi\r\nBcc: x@y.z", "body\n", None)},
        {"rendered": RenderedEmail("t", "Hi\nBcc: x@y.z", "body\n", None)},
        {"to_name": "Elena\r\nBcc: x@y.z"},
        {"from_name": "Sam\nBcc: x@y.z"},
        {"to_email": "elena@pixel.io\r\nBcc: x@y.z"},
        {"from_email": "sam@acme.io\nBcc: x@y.z"},
        {"message_id": "<a@b>\r\nBcc: x@y.z"},
        {"in_reply_to": "<a@b>\r\nBcc: x@y.z"},
        {"references": ["<a@b>\r\nBcc: x@y.z"]},
        {"unsubscribe_url": "https://x.io/u\r\nBcc: x@y.z"},
        {"unsubscribe_mailto": "u@x.io\r\nBcc: x@y.z"},
        {"extra_headers": {"X-Draft": "1\r\nBcc: x@y.z"}},
        {"extra_headers": {"X-Draft\r\nBcc": "x@y.z"}},
        {"to_name": "Elena\u2028Bcc: x@y.z"},
    ],
)
def test_it_refuses_header_injection(overrides: dict[str, Any]) -> None:
    with pytest.raises(HeaderInjectionError, match="line break"):
        compose(**overrides)


def test_header_injection_error_is_a_value_error() -> None:
    assert issubclass(HeaderInjectionError, ValueError)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"to_email": "not an address"}, "not an email address"),
        ({"message_id": "abc"}, "message id"),
        ({"unsubscribe_url": "javascript:alert(1)"}, "http"),
        ({"date": datetime(2024, 5, 7, 9, 30)}, "timezone"),
        ({"extra_headers": {"Bcc": "x@y.z"}}, "set by compose_message"),
        ({"extra_headers": {"Bad Name": "x"}}, "invalid header name"),
        ({"rendered": RenderedEmail("t", "  ", "body\n", None)}, "subject is empty"),
    ],
)
def test_it_refuses_malformed_input(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compose(**overrides)


def test_it_adds_extra_headers() -> None:
    msg = parse(compose(extra_headers={"X-Refseq-Draft": "42", "Reply-To": "team@acme.io"}))
    assert msg["X-Refseq-Draft"] == "42"
    assert msg["Reply-To"] == "team@acme.io"


def test_it_encodes_non_ascii_names_and_subjects() -> None:
    rendered = RenderedEmail("t", "Zoë, über Ihr Team — kurz", "Grüße aus Köln\n", "<p>Grüße</p>")
    msg = compose(
        rendered=rendered,
        from_name="Jörg Müller",
        to_name="Zoë Ångström, PhD",
        to_email="zoe@bücher.de",
        date=datetime(2024, 5, 7, 11, 30, tzinfo=timezone(timedelta(hours=2))),
    )
    raw = msg.as_bytes()
    raw.decode("ascii")  # everything on the wire is 7-bit
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = parse(msg)
    (sender,) = parsed["From"].addresses
    (recipient,) = parsed["To"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Jörg Müller", "sam@acme.io")
    assert (recipient.display_name, recipient.addr_spec) == (
        "Zoë Ångström, PhD",
        "zoe@xn--bcher-kva.de",
    )
    assert parsed["Subject"] == "Zoë, über Ihr Team — kurz"
    assert parsed["Date"] == "Tue, 07 May 2024 11:30:00 +0200"
    assert body(parsed, "plain").startswith("Grüße aus Köln\n")
    assert body(parsed, "html").startswith("<p>Grüße</p>")


def test_it_makes_unique_message_ids_on_the_sender_domain() -> None:
    ids = {make_message_id("acme.io") for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        assert re.fullmatch(r"<[^<>@\s]+@acme\.io>", value)
    assert make_message_id("sam@Acme.IO").endswith("@acme.io>")
    with pytest.raises(HeaderInjectionError):
        make_message_id("acme.io\r\nBcc: x@y.z")
    with pytest.raises(ValueError, match="domain"):
        make_message_id("not a domain")


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Jon suggested we talk", "Re: Jon suggested we talk"),
        ("Re: Jon suggested we talk", "Re: Jon suggested we talk"),
        ("RE: shouting", "RE: shouting"),
        ("re:lower", "re:lower"),
        ("Regarding Q3", "Re: Regarding Q3"),
        ("  spaced   out ", "Re: spaced out"),
    ],
)
def test_it_threads_subjects(subject: str, expected: str) -> None:
    assert thread_subject(subject) == expected


def test_it_writes_the_footer_text() -> None:
    assert footer_text(URL, ADDRESS) == (
        "--\n"
        f"If you'd rather not hear from me again, unsubscribe here: {URL}\n"
        "Acme Inc\n"
        "1 Main St, Springfield, IL 62701\n"
    )
