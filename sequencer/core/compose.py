"""Turn a rendered step into an RFC 5322 message ready for SMTP.

Uses the modern ``email`` API (``EmailMessage``, ``Address``) with ``policy.SMTP`` whose
structured headers are folded at whitespace and never RFC 2047-encoded
(:mod:`sequencer.core.wirepolicy`), and refuses any header value containing a line break
before the email package even sees it, so neither a template nor a CSV cell can inject a
header. Every message gets ``List-Unsubscribe`` (URL and mailto),
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058) and a visible footer with
the opt-out link and the sender's postal address.
"""

from __future__ import annotations

import email.utils
import html
import re
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage

from sequencer.core.render import RenderedEmail
from sequencer.core.wirepolicy import WIRE_POLICY

__all__ = [
    "HeaderInjectionError",
    "compose_message",
    "footer_html",
    "footer_text",
    "make_message_id",
    "thread_subject",
]


class HeaderInjectionError(ValueError):
    """A header value (or display name) contains a line break."""


# Everything str.splitlines() breaks on, plus NUL: none of it belongs in a header.
_BREAKS = re.compile(r"[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029\x00]")
_MSG_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_RESERVED = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to",
        "references", "list-unsubscribe", "list-unsubscribe-post", "mime-version",
        "content-type", "content-transfer-encoding", "sender", "return-path",
    }
)  # fmt: skip
_RE_PREFIX = re.compile(r"re\s*:", re.IGNORECASE)


def _check(field: str, value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, not {type(value).__name__}")
    if _BREAKS.search(value):
        raise HeaderInjectionError(f"{field} contains a line break: {value!r}")
    return value


def _ascii_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise ValueError(f"invalid domain: {domain!r}") from None


def _address(field: str, display_name: str, addr: str) -> Address:
    _check(f"{field} name", display_name)
    _check(f"{field} address", addr)
    local, at, domain = addr.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{field} address is not an email address: {addr!r}")
    try:
        return Address(
            display_name=display_name.strip(), addr_spec=f"{local}@{_ascii_domain(domain)}"
        )
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise ValueError(f"{field} address is not valid: {addr!r} ({exc})") from None


def _message_id(field: str, value: str) -> str:
    _check(field, value)
    if not _MSG_ID.fullmatch(value.strip()):
        raise ValueError(f"{field} is not a message id like <id@domain>: {value!r}")
    return value.strip()


def make_message_id(domain: str) -> str:
    """A new unique ``<...@domain>``; ``domain`` may also be the sending address."""
    _check("message id domain", domain)
    host = _ascii_domain(domain.rpartition("@")[2].strip().lower())
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?", host):
        raise ValueError(f"invalid domain for a message id: {domain!r}")
    # 128 random bits keep it unique and short: make_msgid's time.pid.random form is ~70
    # characters, which makes In-Reply-To/References fold onto a second line.
    return f"<{uuid.uuid4().hex}@{host}>"


def thread_subject(first_subject: str) -> str:
    """The subject of a threaded follow-up: "Re: " + the first subject (only once)."""
    subject = " ".join(first_subject.split())
    return subject if _RE_PREFIX.match(subject) else f"Re: {subject}"


def _address_lines(postal_address: str) -> list[str]:
    return [line.strip() for line in postal_address.splitlines() if line.strip()]


# The opt-out sentence before the link: a prospect's, and (notes) a referrer's.
PROSPECT_OPT_OUT = "If you'd rather not hear from me again,"
REFERRER_OPT_OUT = (
    "You're getting this because you introduced me to someone you know. "
    "If you'd rather not get these notes,"
)


def footer_text(unsubscribe_url: str, postal_address: str, opt_out: str = PROSPECT_OPT_OUT) -> str:
    """The plain-text footer compose appends: opt-out line and postal address."""
    lines = [
        "--",
        f"{opt_out} unsubscribe here: {unsubscribe_url}",
        *_address_lines(postal_address),
    ]
    return "\n".join(lines) + "\n"


def footer_html(unsubscribe_url: str, postal_address: str, opt_out: str = PROSPECT_OPT_OUT) -> str:
    """The HTML footer (everything escaped)."""
    url = html.escape(unsubscribe_url, quote=True)
    address = "<br>".join(html.escape(line) for line in _address_lines(postal_address))
    return (
        '<p style="margin-top:24px;color:#777;font-size:12px;line-height:1.4">'
        f'{html.escape(opt_out, quote=False)} <a href="{url}">unsubscribe here</a>.'
        f"<br>{address}</p>\n"
    )


def _with_html_footer(body: str, footer: str) -> str:
    closing = list(re.finditer(r"</body\s*>", body, re.IGNORECASE))
    if not closing:
        return body.rstrip("\n") + "\n" + footer
    at = closing[-1].start()
    return body[:at] + footer + body[at:]


def _unsubscribe_mailto(value: str) -> str:
    value = value.strip()
    if not value or value.lower().startswith("mailto:"):
        return value
    return f"mailto:{value}?subject=unsubscribe"


def _header_uri(uri: str) -> str:
    """``uri`` as it may stand between angle brackets in a header: ASCII, no spaces or ``<>``
    (RFC 3986 percent-encoding; what is already ASCII and allowed is left as it is)."""
    return urllib.parse.quote(uri, safe="!#$%&'()*+,-./:;=?@[]_~")


def compose_message(
    *,
    rendered: RenderedEmail,
    from_name: str,
    from_email: str,
    to_name: str,
    to_email: str,
    message_id: str,
    in_reply_to: str | None,
    references: Sequence[str],
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    postal_address: str,
    date: datetime,
    extra_headers: Mapping[str, str] | None = None,
    opt_out: str = PROSPECT_OPT_OUT,
) -> EmailMessage:
    """The full message: headers, text part (+ HTML alternative), footers.

    ``unsubscribe_mailto`` may be a plain address ("unsubscribe@acme.com", made into
    ``mailto:...?subject=unsubscribe``) or a full mailto URL; empty leaves the mailto form out.
    Raises :class:`HeaderInjectionError` for a line break in any header value or display name,
    ValueError for other malformed input.
    """
    sender = _address("from", from_name, from_email)
    recipient = _address("to", to_name, to_email)
    subject = _check("subject", rendered.subject).strip()
    if not subject:
        raise ValueError("the subject is empty")
    msg_id = _message_id("message id", message_id)
    parent = _message_id("in-reply-to", in_reply_to) if in_reply_to else None
    refs = [_message_id("references", ref) for ref in references]
    url = _check("unsubscribe url", unsubscribe_url).strip()
    if not url.lower().startswith(("https://", "http://")):
        raise ValueError(f"the unsubscribe url must be http(s): {unsubscribe_url!r}")
    mailto = _unsubscribe_mailto(_check("unsubscribe mailto", unsubscribe_mailto))
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the date must be timezone-aware")
    extras = dict(extra_headers or {})
    for name, value in extras.items():
        _check("header name", name)
        _check(f"header {name}", value)
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name: {name!r}")
        if name.lower() in _RESERVED:
            raise ValueError(f"header {name} is set by compose_message, not by extra_headers")

    msg = EmailMessage(policy=WIRE_POLICY)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = msg_id
    if parent is not None:
        msg["In-Reply-To"] = parent
    if refs:
        msg["References"] = " ".join(refs)
    msg["List-Unsubscribe"] = ", ".join(f"<{_header_uri(u)}>" for u in (url, mailto) if u)
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in extras.items():
        msg[name] = value

    text = rendered.text.rstrip("\n") + "\n\n" + footer_text(url, postal_address, opt_out)
    msg.set_content(text)
    if rendered.html is not None:
        msg.add_alternative(
            _with_html_footer(rendered.html, footer_html(url, postal_address, opt_out)),
            subtype="html",
        )
    return msg
