"""Structured headers on the wire: folded at whitespace, never RFC 2047-encoded.

Checked on the raw bytes ``as_bytes()`` gives (what SMTP sends), not through
``policy.default``, which decodes encoded-words and would hide the defect.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from sequencer.core.wirepolicy import MAX_LINE, HeaderFoldError, fold_structured
from tests.core.test_compose import compose

LONG_URL = "https://unsubscribe.refseq.acme.example/u/" + "Zm9vYmFy" * 12 + ".c2lnbmF0dXJl"
LONG_ID = "<" + "CAH" + "x7Qk" * 20 + "@mail.gmail.com>"


def head(**overrides: Any) -> bytes:
    return compose(**overrides).as_bytes().split(b"\r\n\r\n", 1)[0]


def field(raw_head: bytes, name: bytes) -> bytes:
    """The raw value of header ``name`` with its folds (CRLF + WSP) taken out (RFC 5322 unfold)."""
    match = re.search(
        rb"^" + name + rb":[ \t]?([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", raw_head, re.M | re.I
    )
    assert match is not None, name
    return re.sub(rb"\r\n(?=[ \t])", b"", match.group(1))


def test_a_long_list_unsubscribe_is_folded_between_its_uris_not_encoded() -> None:
    raw = head(unsubscribe_url=LONG_URL)
    assert b"=?" not in raw
    lines = raw.split(b"\r\n")
    assert all(len(line) <= MAX_LINE for line in lines)
    value = field(raw, b"List-Unsubscribe")
    assert re.fullmatch(rb"<(https://[^>\s]+)>,\s*<(mailto:[^>\s]+)>", value), (
        value
    )  # RFC 2369: URIs in angle brackets, comma separated
    assert value.startswith(b"<" + LONG_URL.encode() + b">,")
    # the fold is at the whitespace after the comma, each URI whole on its own line
    (first,) = [line for line in lines if line.startswith(b"List-Unsubscribe:")]
    assert first == b"List-Unsubscribe: <" + LONG_URL.encode() + b">,"
    assert field(raw, b"List-Unsubscribe-Post") == b"List-Unsubscribe=One-Click"


def test_long_message_ids_stay_message_ids_in_in_reply_to_and_references() -> None:
    raw = head(message_id=LONG_ID, in_reply_to=LONG_ID, references=["<a@acme.io>", LONG_ID])
    assert b"=?" not in raw
    assert field(raw, b"Message-ID") == LONG_ID.encode()
    assert field(raw, b"In-Reply-To") == LONG_ID.encode()
    assert field(raw, b"References") == b"<a@acme.io> " + LONG_ID.encode()


def test_a_non_ascii_unsubscribe_url_is_percent_encoded_in_the_header() -> None:
    raw = head(unsubscribe_url="https://acme.example/u/élan tok")
    assert field(raw, b"List-Unsubscribe").startswith(b"<https://acme.example/u/%C3%A9lan%20tok>,")


def test_fold_structured_folds_at_whitespace_and_refuses_what_it_cannot_fold() -> None:
    folded = fold_structured("References", " ".join(f"<{i:040d}@acme.io>" for i in range(3)))
    assert folded.count("\r\n") == 3 and all(len(x) <= 78 for x in folded.split("\r\n"))
    with pytest.raises(HeaderFoldError, match="ASCII"):
        fold_structured("List-Unsubscribe", "<https://acme.example/ü>")
    with pytest.raises(HeaderFoldError, match="998"):
        fold_structured("List-Unsubscribe", "<https://acme.example/" + "x" * 1000 + ">")


def test_a_non_ascii_subject_keeps_its_spaces_for_decode_header_readers() -> None:
    import email.header

    import mailparser

    from sequencer.core.render import RenderedEmail

    subject = "Re: Łukasz Wróblewski-Ñúñez de la Cruz y Fernández-Álvarez suggested we talk"
    raw = compose(rendered=RenderedEmail("warm_intro", subject, "Hi\n", None)).as_bytes()
    value = field(raw.split(b"\r\n\r\n", 1)[0], b"Subject").decode()
    joined = "".join(
        part.decode(charset or "ascii") if isinstance(part, bytes) else part
        for part, charset in email.header.decode_header(value)
    )
    assert joined == subject  # the standard library's own (whitespace-dropping) decoder
    assert mailparser.parse_from_bytes(raw).subject == subject
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
