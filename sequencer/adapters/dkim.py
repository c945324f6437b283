"""DKIM signing of outgoing messages (dkimpy), relaxed/relaxed.

The public key goes in DNS as a TXT record at ``<selector>._domainkey.<domain>``:
``v=DKIM1; k=rsa; p=<base64 DER>``. A 2048-bit RSA value is about 410 bytes, so it must be
split into strings of at most 255 bytes in the zone file.
"""

from __future__ import annotations

import dkim  # type: ignore[import-untyped]

# Signed header fields. Listing one that the message lacks "oversigns" it: nobody can add it
# later without breaking the signature (RFC 6376 §5.4).
SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


class DkimSigningError(ValueError):
    """The key or the message cannot be signed (bad PEM, no From header, …)."""


def sign_message(message: bytes, selector: str, domain: str, key_pem: bytes) -> bytes:
    """Return ``message`` with a ``DKIM-Signature`` header field prepended.

    ``message`` should use CRLF line endings (relaxed/relaxed survives LF↔CRLF conversion,
    but the added header uses CRLF). Raises ``DkimSigningError``.
    """
    try:
        signature: bytes = dkim.sign(
            message,
            selector.encode("ascii"),
            domain.encode("idna"),
            key_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
            linesep=b"\r\n",
        )
    except (dkim.DKIMException, UnicodeError) as error:
        where = f"{selector}._domainkey.{domain}"
        raise DkimSigningError(f"cannot DKIM-sign for {where}: {error}") from error
    return signature + message
