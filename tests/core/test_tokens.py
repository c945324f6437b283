"""Signed unsubscribe tokens."""

from __future__ import annotations

import re

import pytest

from sequencer.core.tokens import make_unsubscribe_token, verify_unsubscribe_token

SECRET = "s3cret-key-for-tests"


def test_it_round_trips_email_and_campaign() -> None:
    token = make_unsubscribe_token(SECRET, "Elena@Pixel.io", "Q3 fintech — EU")
    assert verify_unsubscribe_token(SECRET, token) == ("Elena@Pixel.io", "Q3 fintech — EU")


def test_it_makes_url_safe_tokens_without_padding() -> None:
    token = make_unsubscribe_token(SECRET, "a+b@example.com", "c/d?e=f&g")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert "=" not in token


def test_it_is_deterministic_and_never_expires() -> None:
    first = make_unsubscribe_token(SECRET, "a@b.co", "c")
    assert first == make_unsubscribe_token(SECRET, "a@b.co", "c")
    assert make_unsubscribe_token(SECRET, "a@b.co", "d") != first


def test_it_rejects_every_single_character_change() -> None:
    token = make_unsubscribe_token(SECRET, "elena@pixel.io", "q3")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, char in enumerate(token):
        if char == ".":
            continue
        for replacement in (
            alphabet[(alphabet.index(char) + 1) % 64],
            alphabet[(alphabet.index(char) + 32) % 64],
        ):
            tampered = token[:i] + replacement + token[i + 1 :]
            assert verify_unsubscribe_token(SECRET, tampered) is None, (i, replacement)


def test_it_rejects_a_swapped_payload() -> None:
    mine = make_unsubscribe_token(SECRET, "me@x.io", "c")
    theirs = make_unsubscribe_token(SECRET, "victim@x.io", "c")
    forged = theirs.split(".")[0] + "." + mine.split(".")[1]
    assert verify_unsubscribe_token(SECRET, forged) is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "..",
        "abc",
        "abc.def",
        "a.b.c",
        "!!!.???",
        "=" * 8,
        "é.é",
        "A" * 5000,
        "AAAA.",
        ".AAAA",
        "Zm9v.YmFy",
        "A.A",
    ],
)
def test_it_returns_none_for_garbage(garbage: str) -> None:
    assert verify_unsubscribe_token(SECRET, garbage) is None


def test_it_returns_none_for_truncated_tokens() -> None:
    token = make_unsubscribe_token(SECRET, "elena@pixel.io", "q3")
    for end in range(len(token)):
        assert verify_unsubscribe_token(SECRET, token[:end]) is None


def test_it_returns_none_for_a_non_string() -> None:
    assert verify_unsubscribe_token(SECRET, None) is None  # type: ignore[arg-type]
    assert verify_unsubscribe_token(SECRET, b"abc.def") is None  # type: ignore[arg-type]


def test_it_rejects_tokens_made_with_another_secret() -> None:
    token = make_unsubscribe_token("other-secret", "elena@pixel.io", "q3")
    assert verify_unsubscribe_token(SECRET, token) is None


def test_it_refuses_an_empty_secret_or_nul_characters() -> None:
    with pytest.raises(ValueError, match="secret"):
        make_unsubscribe_token("", "a@b.co", "c")
    with pytest.raises(ValueError, match="secret"):
        verify_unsubscribe_token("", "abc.def")
    with pytest.raises(ValueError, match="NUL"):
        make_unsubscribe_token(SECRET, "a@b.co\x00", "c")
