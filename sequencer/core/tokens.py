"""Signed unsubscribe tokens: verifiable without a database lookup, and they never expire.

A token is ``<payload>.<mac>``, both base64url without padding. The payload is
``1 NUL email NUL campaign`` (UTF-8); the MAC is HMAC-SHA256 over a purpose label plus the
payload, keyed with the app secret. Opt-out links must keep working forever (laws and inbox
providers require it), so there is no expiry; rotating the secret invalidates old links.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

__all__ = ["make_unsubscribe_token", "verify_unsubscribe_token"]

_VERSION = "1"
_PURPOSE = b"refseq/unsubscribe\x00"
_SEP = "\x00"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_TOKEN = 2048


def _key(secret: str) -> bytes:
    if not secret:
        raise ValueError("the unsubscribe secret is empty")
    return secret.encode("utf-8")


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(_key(secret), _PURPOSE + payload, hashlib.sha256).digest()


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes | None:
    """Strict base64url without padding; None unless ``text`` is the canonical encoding."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if _encode(data) == text else None


def make_unsubscribe_token(secret: str, email: str, campaign: str) -> str:
    """A URL-safe token naming ``email`` and ``campaign``, signed with ``secret``."""
    for label, value in (("email", email), ("campaign", campaign)):
        if _SEP in value:
            raise ValueError(f"the {label} contains a NUL character")
    payload = _SEP.join((_VERSION, email, campaign)).encode("utf-8")
    return f"{_encode(payload)}.{_encode(_mac(secret, payload))}"


def verify_unsubscribe_token(secret: str, token: str) -> tuple[str, str] | None:
    """``(email, campaign)`` if ``token`` was made with ``secret``, else None (never raises
    for a bad token; an empty secret is a configuration error and raises ValueError)."""
    _key(secret)  # a bad secret raises even when the token is garbage
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 1:
        return None
    payload_text, mac_text = token.split(".")
    payload, mac = _decode(payload_text), _decode(mac_text)
    if payload is None or mac is None:
        return None
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    try:
        version, email, campaign = payload.decode("utf-8").split(_SEP)
    except (UnicodeDecodeError, ValueError):
        return None
    if version != _VERSION:
        return None
    return email, campaign
