"""Webhook signatures: ``X-Refseq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC is over ``f"{t}.".encode() + body`` with the endpoint's own secret (never the key that
signs sessions and unsubscribe links), as Stripe and Slack do: the receiver recomputes it,
compares in constant time, and rejects a timestamp outside its tolerance window (5 minutes), so
a captured delivery cannot be replayed later. docs/security.md shows a receiver (tested).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Refseq-Signature"
MIN_SECRET_LENGTH = 16


def mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode("ascii") + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    return f"t={timestamp},v1={mac(secret, timestamp, body)}"
