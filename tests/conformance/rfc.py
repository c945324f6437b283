"""Checks of raw message bytes written from the RFCs, sharing no code with refseq.

Everything here works on the octets an SMTP peer received: header fields are split and
unfolded by the rules of RFC 5322 §2.2 (a CRLF followed by WSP is a fold), never by the
``email`` package that refseq writes with. Each check returns the problems it found (empty when
the message conforms), so a test can show them all at once.

* RFC 5322 §2.1.1 / §2.3: CRLF line ends only, no line over 998 octets; §2.2 header field
  syntax; §3.6 field counts; §3.3 ``Date`` (date-time); §3.6.4 ``Message-ID``,
  ``In-Reply-To``, ``References`` (msg-id).
* RFC 2047 §5: an encoded-word may stand only in unstructured text (``Subject``) and in a
  phrase (display name): never in a structured field.
* RFC 2369 §2-3: ``List-Unsubscribe`` is a comma-separated list of URIs in angle brackets.
* RFC 8058 §3-4: one of them is an HTTPS URI, ``List-Unsubscribe-Post`` is exactly
  ``List-Unsubscribe=One-Click``, and a valid DKIM signature covers both fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MAX_LINE = 998

# RFC 5322 §3.2.3 atext, dot-atom-text; §3.6.4 msg-id (no-fold-literal for the right side)
_ATEXT = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rb"%s+(?:\.%s+)*" % (_ATEXT, _ATEXT)
MSG_ID = rb"<%s@(?:%s|\[[\x21-\x5a\x5e-\x7e]*\])>" % (_DOT_ATOM, _DOT_ATOM)
_WSP = rb"[ \t]"
_MSG_IDS = re.compile(rb"%s*%s(?:%s*%s)*%s*" % (_WSP, MSG_ID, _WSP, MSG_ID, _WSP))
_ONE_MSG_ID = re.compile(rb"%s*(%s)%s*" % (_WSP, MSG_ID, _WSP))
# §3.3 date-time (FWS as WSP runs, no comments): [day-of-week ","] day month year time zone
_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
           b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")  # fmt: skip
_DATE = re.compile(
    rb"[ \t]*(?:(%s),[ \t]*)?(\d{1,2})[ \t]+(%s)[ \t]+(\d{4})[ \t]+(\d\d):(\d\d)(?::(\d\d))?"
    rb"[ \t]+([+-])(\d\d)(\d\d)[ \t]*" % (b"|".join(_DAYS), b"|".join(_MONTHS))
)
# §2.2 field-name: printable US-ASCII except ":"
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):(.*)", re.S)
_ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=")
# RFC 2369: <URI> items separated by commas (whitespace between them is ignored)
_URI_LIST = re.compile(rb"[ \t]*<([^<>\s]+)>[ \t]*(?:,[ \t]*<([^<>\s]+)>[ \t]*)*")
_URI_ITEM = re.compile(rb"<([^<>\s]+)>")
_HTTPS_URI = re.compile(rb"https://[A-Za-z0-9.-]+(?::\d+)?/[\x21-\x7e]*")
# Structured fields refseq writes: an encoded-word in any of them is a defect.
STRUCTURED = (
    b"date", b"message-id", b"in-reply-to", b"references", b"list-unsubscribe",
    b"list-unsubscribe-post", b"mime-version", b"content-type", b"content-transfer-encoding",
    b"dkim-signature", b"auto-submitted", b"return-path", b"received",
)  # fmt: skip
_ONCE = (b"from", b"date", b"to", b"subject", b"message-id", b"in-reply-to", b"references",
         b"list-unsubscribe", b"list-unsubscribe-post")  # fmt: skip


@dataclass(frozen=True)
class Field:
    name: bytes  # as written
    raw: bytes  # the value as on the wire, folds included
    value: bytes  # unfolded (RFC 5322 §2.2.3)

    @property
    def key(self) -> bytes:
        return self.name.lower()


def split(raw: bytes) -> tuple[list[Field], bytes, list[str]]:
    """The header fields, the body and the problems found while splitting them."""
    problems: list[str] = []
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        problems.append("no empty line (CRLF CRLF) between the header and the body")
    fields: list[Field] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            last = fields[-1]
            fields[-1] = Field(last.name, last.raw + b"\r\n" + line, last.value + line)
            continue
        match = _FIELD.fullmatch(line)
        if match is None:
            problems.append(f"not a header field (RFC 5322 §2.2): {line[:80]!r}")
            continue
        fields.append(Field(match.group(1), match.group(2), match.group(2)))
    return fields, body, problems


def fields_named(fields: list[Field], name: bytes) -> list[Field]:
    return [f for f in fields if f.key == name.lower()]


def check_lines(raw: bytes) -> list[str]:
    """CRLF only (no bare CR or LF) and no line longer than 998 octets (RFC 5322 §2.1.1, §2.3)."""
    problems = []
    if re.search(rb"\r(?!\n)|(?<!\r)\n", raw):
        problems.append("a bare CR or LF (lines must end with CRLF)")
    for number, line in enumerate(raw.split(b"\r\n"), 1):
        if len(line) > MAX_LINE:
            problems.append(f"line {number} is {len(line)} octets (at most {MAX_LINE})")
    return problems


def check_header(fields: list[Field]) -> list[str]:
    """Field counts (§3.6), 7-bit header, no encoded-word in a structured field (RFC 2047 §5),
    and the syntax of Date, Message-ID, In-Reply-To and References."""
    problems = []
    for name in _ONCE:
        if len(fields_named(fields, name)) > 1:
            problems.append(f"{name.decode()} appears more than once")
    for name in (b"from", b"date"):
        if not fields_named(fields, name):
            problems.append(f"{name.decode().capitalize()} is missing (RFC 5322 §3.6: required)")
    if not fields_named(fields, b"message-id"):
        problems.append("Message-ID is missing (RFC 5322 §3.6.4: SHOULD be present)")
    for f in fields:
        if not f.raw.isascii():
            problems.append(f"{f.name.decode()}: 8-bit octets in the header")
        if f.key in STRUCTURED and _ENCODED_WORD.search(f.value):
            problems.append(f"{f.name.decode()}: an encoded-word in a structured field: {f.raw!r}")
        if f.key in (b"from", b"to", b"cc", b"reply-to"):  # only the phrase may be encoded
            for addr in re.findall(rb"<([^<>]*)>", f.value):
                if b"=?" in addr:
                    problems.append(f"{f.name.decode()}: an encoded-word in an address")
    for f in fields_named(fields, b"date"):
        if parse_date(f.value) is None:
            problems.append(f"Date is not an RFC 5322 date-time: {f.value!r}")
    for f in fields_named(fields, b"message-id"):
        if not _ONE_MSG_ID.fullmatch(f.value):
            problems.append(f"Message-ID is not one msg-id: {f.value!r}")
    for name in (b"in-reply-to", b"references"):
        for f in fields_named(fields, name):
            if not _MSG_IDS.fullmatch(f.value):
                problems.append(f"{name.decode()} is not a list of msg-id: {f.value!r}")
    return problems


def parse_date(value: bytes) -> datetime | None:
    """An RFC 5322 date-time (without comments), or None; a day name must match the date."""
    match = _DATE.fullmatch(value)
    if match is None:
        return None
    day_name, day, month, year, hh, mm, ss, sign, zh, zm = match.groups()
    offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == b"-" else 1)
    try:
        when = datetime(
            int(year), _MONTHS.index(month) + 1, int(day), int(hh), int(mm), int(ss or 0),
            tzinfo=timezone(offset),
        )  # fmt: skip
    except ValueError:
        return None
    if day_name is not None and _DAYS.index(day_name) != when.weekday():
        return None
    return when


def msg_ids(value: bytes) -> list[bytes]:
    return re.findall(MSG_ID, value)


def unsubscribe_uris(fields: list[Field]) -> list[bytes]:
    """The URIs of ``List-Unsubscribe``, as an RFC 2369 reader sees them (empty if none)."""
    found = fields_named(fields, b"list-unsubscribe")
    if len(found) != 1 or not _URI_LIST.fullmatch(found[0].value):
        return []
    return _URI_ITEM.findall(found[0].value)


def check_one_click(fields: list[Field]) -> list[str]:
    """RFC 2369 + RFC 8058 (the DKIM part is :func:`dkim_signed_fields`' job)."""
    problems = []
    found = fields_named(fields, b"list-unsubscribe")
    if len(found) != 1:
        return [f"List-Unsubscribe appears {len(found)} times (want 1)"]
    value = found[0].value
    if not _URI_LIST.fullmatch(value):
        problems.append(f"List-Unsubscribe is not a list of <URI> (RFC 2369): {found[0].raw!r}")
    https = [u for u in unsubscribe_uris(fields) if _HTTPS_URI.fullmatch(u)]
    if len(https) != 1:
        problems.append(f"List-Unsubscribe has {len(https)} https URIs (RFC 8058: one)")
    posts = fields_named(fields, b"list-unsubscribe-post")
    if len(posts) != 1 or posts[0].value.strip(b" \t") != b"List-Unsubscribe=One-Click":
        problems.append(
            "List-Unsubscribe-Post is not exactly 'List-Unsubscribe=One-Click' (RFC 8058 §3): "
            f"{[p.raw for p in posts]!r}"
        )
    return problems


def dkim_tags(fields: list[Field]) -> dict[bytes, bytes]:
    """The tags of the (first) DKIM-Signature, whitespace removed (RFC 6376 §3.2)."""
    found = fields_named(fields, b"dkim-signature")
    if not found:
        return {}
    tags = {}
    for item in found[0].value.split(b";"):
        name, eq, val = item.partition(b"=")
        if eq:
            tags[re.sub(rb"\s", b"", name)] = re.sub(rb"\s", b"", val)
    return tags


def dkim_signed_fields(fields: list[Field]) -> set[bytes]:
    """Lower-cased names in the signature's ``h=`` tag."""
    signed = dkim_tags(fields).get(b"h", b"")
    return {name.lower() for name in signed.split(b":") if name}
