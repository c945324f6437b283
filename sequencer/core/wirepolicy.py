"""The ``email`` policy refseq writes messages with: ``policy.SMTP``, but structured headers
are folded the way RFC 5322 §2.2.3 allows and never encoded.

``policy.SMTP`` treats any header it has no class for (``List-Unsubscribe``, ``In-Reply-To``,
``References`` ...) as unstructured text: a word longer than the fold width (a long
unsubscribe URL, a long message id) is then turned into RFC 2047 encoded-words
(``=?utf-8?q?=3Chttps=3A//...``). That is legal in a Subject, but in a structured header it
destroys the value: an RFC 2369/8058 parser finds no ``<https:...>`` URI, a mail client no
message id to thread on.

Here those headers are folded only at the whitespace between their items (after a comma in a
URI list, between the ids of ``References``), each item kept whole on one line, and only
ASCII is accepted (a URI must already be percent-encoded). An item too long to fit a line of
998 octets is refused with :class:`HeaderFoldError` rather than broken.
"""

from __future__ import annotations

import email.policy
import re
from email.header import Header
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from typing import Any, cast

__all__ = [
    "MAX_LINE",
    "STRUCTURED",
    "WIRE_POLICY",
    "HeaderFoldError",
    "fold_structured",
    "has_encoded_structured_header",
]

MAX_LINE = 998  # octets per line, CRLF excluded (RFC 5322 §2.1.1)

# Headers refseq writes whose values are lists of tokens (URIs, message ids, keywords): folded
# at whitespace, never encoded. (From/To/Date keep the email package's own structured classes.)
STRUCTURED: frozenset[str] = frozenset(
    {
        "message-id",
        "in-reply-to",
        "references",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "auto-submitted",
        "x-refseq-handoff",
    }
)


class HeaderFoldError(ValueError):
    """A structured header value is not ASCII or has an item no line can hold."""


def fold_structured(name: str, value: str, width: int = 78, linesep: str = "\r\n") -> str:
    """``Name: value`` folded at whitespace so that lines stay within ``width`` where the items
    allow it (an item is never split), ending with ``linesep``.

    Raises :class:`HeaderFoldError` for a non-ASCII value or a line that would exceed 998 octets.
    """
    if not value.isascii():
        raise HeaderFoldError(
            f"header {name} must be ASCII (percent-encode URIs, punycode domains): {value!r}"
        )
    items = value.split()
    lines = [f"{name}:"]
    for item in items:
        if len(lines[-1]) > 1 + len(name) and len(lines[-1]) + 1 + len(item) > width:
            lines.append(f" {item}")  # a fold: CRLF + the whitespace that was there
        else:
            lines[-1] += f" {item}"
    for line in lines:
        if len(line) > MAX_LINE:
            raise HeaderFoldError(
                f"header {name} has an item of {len(line)} characters: no line of "
                f"{MAX_LINE} octets can hold it; shorten it"
            )
    return linesep.join(lines) + linesep


class StructuredHeader(UnstructuredHeader):
    """A header kept verbatim (whitespace runs collapsed) and folded by :func:`fold_structured`."""

    max_count = 1  # each of them appears once in a message
    name: str  # (BaseHeader's, which the registry mixes in)

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        super().parse(" ".join(value.split()), kwds)
        kwds["decoded"] = " ".join(value.split())  # never RFC 2047-decoded: we wrote it

    def fold(self, *, policy: email.policy.Policy) -> str:
        width = policy.max_line_length or MAX_LINE
        return fold_structured(self.name, str(self), min(width, MAX_LINE), policy.linesep)


class SubjectHeader(UnstructuredHeader):
    """``Subject``: when it is not ASCII, every word of it is encoded (``email.header.Header``),
    so the spaces travel inside the encoded-words.

    ``policy.SMTP`` encodes only the non-ASCII words and leaves the plain ones between them
    (``=?utf-8?b?...?= de la Cruz y\r\n =?utf-8?q?Fern=C3=A1ndez?=``): correct by RFC 2047
    §6.2, but decoders that follow the standard library's ``decode_header`` (mail-parser,
    many CRM and helpdesk importers) then drop the space before an encoded-word and show
    "Cruz yFernández"."""

    max_count = 1
    name: str

    def fold(self, *, policy: email.policy.Policy) -> str:
        value = str(self)
        if value.isascii():
            return BaseHeader.fold(cast(BaseHeader, self), policy=policy)
        encoded = Header(value, "utf-8", header_name=self.name).encode(linesep=policy.linesep)
        return f"{self.name}: {encoded}{policy.linesep}"


def _registry() -> HeaderRegistry:
    registry = HeaderRegistry()
    for name in STRUCTURED:
        registry.map_to_type(name, cast(type[BaseHeader], StructuredHeader))
    registry.map_to_type("subject", cast(type[BaseHeader], SubjectHeader))
    return registry


WIRE_POLICY = email.policy.SMTP.clone(header_factory=_registry())


def has_encoded_structured_header(message: bytes) -> bool:
    """Whether ``message`` (bytes refseq built) has an RFC 2047 encoded-word in one of the
    :data:`STRUCTURED` headers: a message stored before they were folded as they are now, which
    must be built again rather than sent."""
    head = message.partition(b"\r\n\r\n")[0]
    for line in re.sub(rb"\r\n[ \t]", b" ", head).split(b"\r\n"):
        name, colon, value = line.partition(b":")
        key = name.strip().lower().decode("ascii", "replace")
        if colon and key in STRUCTURED and b"=?" in value:
            return True
    return False
