"""The raw-byte checkers of tests/conformance/rfc.py catch what they are there to catch."""

from __future__ import annotations

import pytest

from tests.conformance import rfc

GOOD = (
    b"From: Dana <dana@acme.example>\r\n"
    b"To: elena@northbank.example\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9?=\r\n"
    b"Date: Mon, 23 Nov 2026 15:00:00 -0500\r\n"
    b"Message-ID: <a1.b2@acme.example>\r\n"
    b"In-Reply-To: <x@acme.example>\r\n"
    b"References: <w@acme.example>\r\n <x@acme.example>\r\n"
    b"List-Unsubscribe: <https://refseq.acme.example/u/tok>,\r\n"
    b" <mailto:dana@acme.example?subject=unsubscribe>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
    b"Hello\r\n"
)


def problems(raw: bytes) -> list[str]:
    fields, _, found = rfc.split(raw)
    return found + rfc.check_lines(raw) + rfc.check_header(fields) + rfc.check_one_click(fields)


def test_a_conforming_message_has_no_problem() -> None:
    assert problems(GOOD) == []
    fields, body, _ = rfc.split(GOOD)
    assert body == b"Hello\r\n"
    assert rfc.unsubscribe_uris(fields) == [
        b"https://refseq.acme.example/u/tok",
        b"mailto:dana@acme.example?subject=unsubscribe",
    ]
    assert rfc.msg_ids(rfc.fields_named(fields, b"references")[0].value) == [
        b"<w@acme.example>",
        b"<x@acme.example>",
    ]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (  # the defect of issue 13: a long List-Unsubscribe encoded by the email package
            b"List-Unsubscribe: <https://refseq.acme.example/u/tok>,",
            b"List-Unsubscribe: =?utf-8?q?=3Chttps=3A//refseq=2Eacme=2Eexample/u/tok=3E=2C?=",
            "encoded-word in a structured field",
        ),
        (b"<https://refseq.acme.example/u/tok>", b"<http://refseq.acme.example/u/tok>", "0 https"),
        (b"<https://refseq.acme.example/u/tok>,", b"https://refseq.acme.example/u/tok,", "<URI>"),
        (b"List-Unsubscribe=One-Click", b"List-Unsubscribe=OneClick", "exactly"),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"", "exactly"),
        (b"Mon, 23 Nov", b"Tue, 23 Nov", "date-time"),
        (b"15:00:00 -0500", b"15:00:00 EST", "date-time"),
        (b"<a1.b2@acme.example>", b"<a1 b2@acme.example>", "not one msg-id"),
        (b"<a1.b2@acme.example>", b"a1.b2@acme.example", "not one msg-id"),
        (b"In-Reply-To: <x@acme.example>", b"In-Reply-To: =?utf-8?q?=3Cx=40a=3E?=", "encoded"),
        (b"References: <w@acme.example>", b"References: <w@acme.example>,", "msg-id"),
        (b"Message-ID: <a1.b2@acme.example>\r\n", b"", "Message-ID is missing"),
        (b"Date: Mon, 23 Nov 2026 15:00:00 -0500\r\n", b"", "Date is missing"),
        (b"Hello\r\n", b"Hello\n", "bare CR or LF"),
        (b"Hello\r\n", b"H" * 999 + b"\r\n", "999 octets"),
        (b"To: elena", b"To: \xc3\xa9lena", "8-bit"),
        (b"From: Dana", b"From : Dana", "not a header field"),
    ],
)
def test_each_defect_is_reported(old: bytes, new: bytes, problem: str) -> None:
    assert old in GOOD
    found = problems(GOOD.replace(old, new, 1))
    assert any(problem in p for p in found), found
