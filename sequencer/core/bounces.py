"""Bounces: RFC 3464 delivery-status reports and the common non-standard formats.

Which address bounced comes from, in order: the per-recipient blocks of a message/delivery-status
part (our own reader, with Action/Status/Diagnostic-Code), flufl.bounce's detectors (Exim, qmail,
Postfix, Exchange, Yahoo, … text formats), ``X-Failed-Recipients``, and a few context patterns
over the notification text (Postfix/qmail ``<addr>:``, Exchange ``'addr' on``, Gmail/Office 365
"delivered to addr").

HARD (the address itself is bad, suppress it) only for a permanent failure of the address:
enhanced status 5.1.x (bad mailbox or destination: 5.1.1, 5.1.2, 5.1.10, …), 5.4.4 (unroutable
domain), or a 5xx whose diagnostic says the user/domain does not exist ("user unknown",
"RecipientNotFound", "no mailbox here", "account disabled", …).

SOFT for everything else: ``Action: delayed``, any 4.x.x, a full mailbox (5.2.2 / 4.2.2, "quota
exceeded", "over quota"), and 5.7.x policy/spam/reputation blocks — a block says something about
*our* sending, not about the prospect's address, so it must not suppress them — and any other
permanent failure with no address-level cause.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

LibraryResult = tuple[frozenset[str], frozenset[str]]  # (temporary, permanent) addresses

MAX_REPORTS = 50
NOTIFICATION_CHARS = 16_384

ADDR = r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}"
_ADDR = re.compile(ADDR)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_BASIC = re.compile(r"(?<![\d.])([45]\d\d)(?=[ -])")
_RETURNED_COPY = re.compile(
    r"^.{0,12}(?:below this line is a copy of the message|this is a copy of the message"
    r"|original message headers|original message follows|-{3,} ?original message ?-{3,}"
    r"|the header of the original message)",
    re.I | re.M,
)
_SENDER_LOCALPARTS = frozenset(
    {"mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "maildaemon", "postmaster"}
)
_SUBJECT = re.compile(
    r"undeliver|delivery status notification|delivery (?:has )?fail|failure notice|returned mail"
    r"|mail delivery failed|delivery failure|could not be delivered|not delivered|delayed mail"
    r"|delivery delayed|warning: could not send|unzustellbar|nicht zustellbar|non remis"
    r"|non recapitabile|no se puede entregar|onbestelbaar|não entregue|mail system error",
    re.I,
)
_BODY = re.compile(
    r"this is the mail system at host|this is the qmail-send program|mail delivery software"
    r"|delivery has failed to these recipients|your message (?:did not reach|couldn't be delivered"
    r"|could not be delivered|wasn't delivered|to \S+ couldn't be delivered)"
    r"|the following (?:address(?:es|\(es\))?|recipient\(s\)) (?:had permanent fatal errors"
    r"|failed|cannot be reached)|address not found|message not delivered|delivery incomplete"
    r"|could not be delivered to one or more|temporary problem delivering|this is a warning only",
    re.I,
)
_TEXT_RECIPIENTS = [
    re.compile(rf"^[ \t]*<({ADDR})>", re.M),  # Postfix, qmail, Sendmail
    re.compile(rf"^[ \t]*'({ADDR})' on ", re.M),  # Exchange
    re.compile(rf"(?:delivered|delivering your message|delivery) to:?\s+<?({ADDR})", re.I),
    re.compile(rf"your message to:?\s+<?({ADDR})>?\s+(?:couldn't|could not|can't|wasn't)", re.I),
    re.compile(rf"(?:final-recipient|recipient address):\s*(?:rfc822;\s*)?<?({ADDR})", re.I),
    re.compile(rf"rcpt to:\s*<({ADDR})>", re.I),
]
_EXIM_LIST = re.compile(rf"^[ \t]{{2,}}({ADDR})[ \t]*$", re.M)
_UNKNOWN = re.compile(
    r"user unknown|unknown user|no such (?:user|recipient|mailbox|domain)|no mailbox here"
    r"|mailbox (?:not found|does not exist|unavailable)|recipient ?not ?found|recipnotfound"
    r"|address not found|does not exist|doesn't exist|invalid (?:recipient|mailbox|address)"
    r"|unknown recipient|user not found|address (?:couldn't|could not) be found"
    r"|account (?:is |has been )?disabled|unrouteable address|host or domain name not found"
    r"|domain not found",
    re.I,
)
_FULL = re.compile(
    r"mailbox (?:is )?full|quota exceeded|over ?quota|exceeded storage|out of storage"
    r"|insufficient storage|inbox is full|mailbox size limit",
    re.I,
)
_POLICY = re.compile(
    r"spam|block ?list|black ?list|blocked|reputation|\brbl\b|policy|not accepted from this ip"
    r"|unsolicited|dmarc|access denied",
    re.I,
)
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w.-]{1,40})", re.I)


@dataclass(frozen=True)
class DeliveryReport:
    """One per-recipient block of an RFC 3464 message/delivery-status part."""

    recipient: str
    action: str
    status: str
    diagnostic: str


@dataclass(frozen=True)
class BounceFinding:
    hard: bool
    bounced: list[tuple[str, str]]
    evidence: list[str]
    confidence: float


def _clean(value: str, cap: int = 500) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in value[:cap]).split())


def _address(value: str) -> str:
    found = _ADDR.search(value.split(";")[-1])
    return found.group(0).casefold() if found else ""


def _status(value: str) -> str:
    found = _ENHANCED.search(value)
    return ".".join(found.groups()) if found else ""


def read_delivery_status(part: Message) -> tuple[list[DeliveryReport], list[str]]:
    """Per-recipient reports, plus any X-Original-Message-ID of the per-message block.

    The email package parses message/delivery-status into a list of header blocks; their raw
    values are read directly (no header parser, no re-serialisation).
    """
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        return [], []
    reports: list[DeliveryReport] = []
    ids: list[str] = []
    for block in blocks[: MAX_REPORTS + 1]:
        if not isinstance(block, Message):
            continue
        fields: dict[str, str] = {}
        for name, value in block.raw_items():
            fields.setdefault(name.lower(), " ".join(str(value)[:2000].split()))
        ids.extend(re.findall(r"<[^<>\s]{1,500}>", fields.get("x-original-message-id", ""))[:1])
        recipient = _address(fields.get("final-recipient") or fields.get("original-recipient", ""))
        if recipient:
            reports.append(
                DeliveryReport(
                    recipient=recipient,
                    action=_clean(fields.get("action", ""), 40).casefold(),
                    status=_status(fields.get("status", "")),
                    diagnostic=_clean(fields.get("diagnostic-code", "")),
                )
            )
    return reports, ids


def report_type(content_type: str) -> str:
    if not content_type.casefold().startswith("multipart/report"):
        return ""
    found = _REPORT_TYPE.search(content_type)
    return found.group(1).casefold() if found else ""


def _notification(text: str) -> str:
    """The human-readable notice: the text before the returned copy of our message."""
    head = text[:NOTIFICATION_CHARS]
    cut = _RETURNED_COPY.search(head)
    return head[: cut.start()] if cut else head


def _sender_cue(from_addr: str, from_name: str) -> str:
    local = from_addr.split("@")[0]
    if local in _SENDER_LOCALPARTS or local.startswith("microsoftexchange"):
        return f"sender {from_addr}"
    if "mail delivery" in from_name.casefold():
        return f"sender name '{from_name}'"
    return ""


def looks_like_bounce(
    subject: str, from_addr: str, from_name: str, headers: Mapping[str, str], text: str
) -> bool:
    """Cheap pre-check (no address extraction) deciding whether a bounce library may run."""
    return bool(
        report_type(headers.get("content-type", "")) == "delivery-status"
        or "x-failed-recipients" in headers
        or "x-ms-exchange-message-is-ndr" in headers
        or _sender_cue(from_addr, from_name)
        or _SUBJECT.search(subject)
        or _BODY.search(_notification(text)[:8192])
    )


def scan_with_library(msg: Message) -> LibraryResult | None:
    """flufl.bounce's detectors; ``None`` when they fail (its scan re-raises detector errors)."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:
        return None

    def decode(found: frozenset[bytes]) -> frozenset[str]:
        return frozenset(_address(a.decode("ascii", "replace")) for a in found) - {""}

    return decode(temporary), decode(permanent)


def _severity(action: str, status: str, diagnostic: str) -> tuple[bool, str]:
    """(hard?, reason) for one failed recipient."""
    if action.startswith("delayed") or status.startswith("4"):
        return False, "temporary failure" if status else "delayed"
    if status in ("5.2.2", "4.2.2") or _FULL.search(diagnostic):
        return False, "mailbox full"
    if status.startswith("5.7"):
        return False, "policy/spam block (5.7.x), not the address's fault"
    if status.startswith("5.1.") or status == "5.4.4":
        return True, "bad mailbox or destination address"
    if _POLICY.search(diagnostic) and not _UNKNOWN.search(diagnostic):
        return False, "policy/spam block, not the address's fault"
    if status.startswith("5") and _UNKNOWN.search(diagnostic):
        return True, "recipient does not exist"
    return False, "failure not attributable to the address"


def _text_status(window: str, permanent: bool | None) -> tuple[str, str]:
    """(status, how) from a piece of notification text: enhanced code, else inferred."""
    if status := _status(window):
        return status, ""
    basic = _BASIC.search(window)
    klass = basic.group(1)[0] if basic else {True: "5", False: "4", None: ""}[permanent]
    if not klass:
        klass = "5" if re.search(r"permanent|fatal", window, re.I) else ""
    if not klass:
        return "", ""
    detail = "2.2" if _FULL.search(window) else "1.1" if _UNKNOWN.search(window) else "0.0"
    if detail == "0.0" and klass == "5" and _POLICY.search(window):
        detail = "7.1"
    return f"{klass}.{detail}", " (inferred from text)"


def _text_recipients(notice: str) -> list[str]:
    found: list[str] = []
    for pattern in _TEXT_RECIPIENTS:
        found.extend(m.casefold() for m in pattern.findall(notice))
    marker = re.search(r"following address(?:es|\(es\))? failed", notice, re.I)
    if marker:
        found.extend(m.casefold() for m in _EXIM_LIST.findall(notice[marker.end() :]))
    return list(dict.fromkeys(found))


def detect_bounce(
    *,
    text: str,
    subject: str,
    from_addr: str,
    from_name: str,
    headers: Mapping[str, str],
    reports: Sequence[DeliveryReport],
    library: LibraryResult | None,
) -> BounceFinding | None:
    notice = _notification(text)
    evidence: list[str] = []
    is_dsn = report_type(headers.get("content-type", "")) == "delivery-status"
    failed = [r for r in reports if r.action.startswith(("failed", "delayed", "error"))]
    if is_dsn:
        if reports and not failed:
            return None  # a success/relay report (Action: delivered/relayed/expanded)
        evidence.append("Content-Type multipart/report; report-type=delivery-status")
    if xfr := headers.get("x-failed-recipients"):
        evidence.append(f"X-Failed-Recipients: {xfr}")
    if "x-ms-exchange-message-is-ndr" in headers:
        evidence.append("X-MS-Exchange-Message-Is-Ndr header")
    sender = _sender_cue(from_addr, from_name)
    subject_hit = _SUBJECT.search(subject)
    body_hit = _BODY.search(notice[:8192])
    lib_hits = bool(library and (library[0] or library[1]))
    strong = bool(evidence)
    cues = sum(map(bool, (sender, subject_hit, body_hit)))
    if not strong and cues < 2 and not (lib_hits and cues):
        return None
    if sender:
        evidence.append(sender)
    if subject_hit:
        evidence.append(f"subject matches '{subject_hit.group(0)}'")
    if body_hit:
        evidence.append(f"text matches '{body_hit.group(0)}'")

    bounced: dict[str, tuple[str, bool]] = {}
    for r in failed:
        hard, why = _severity(r.action, r.status, r.diagnostic)
        status = r.status or ("4.0.0" if r.action.startswith("delayed") else "5.0.0")
        evidence.append(f"Status: {status} for {r.recipient} ({r.action}: {why})")
        bounced.setdefault(r.recipient, (status, hard))
    temporary, permanent = library or (frozenset(), frozenset())
    if library and lib_hits:
        evidence.append("flufl.bounce: " + ", ".join(sorted(temporary | permanent)))
    others = [*sorted(permanent | temporary), *_addrs(headers.get("x-failed-recipients", ""))]
    if not bounced and not others:
        others = _text_recipients(notice)
    for addr in dict.fromkeys(others):
        if addr in bounced or addr == from_addr:
            continue
        pos = notice.casefold().find(addr)
        window = notice[pos : pos + 600] if pos >= 0 else notice
        verdict = True if addr in permanent else False if addr in temporary else None
        status, how = _text_status(window, verdict)
        hard, why = _severity("", status, window)
        evidence.append(f"Status: {status or 'unknown'}{how} for {addr} ({why})")
        bounced[addr] = (status, hard)
    if not bounced:
        status, how = _text_status(notice, None)
        hard, why = _severity("", status, notice)
        evidence.append(f"no recipient found; Status: {status or 'unknown'}{how} ({why})")
    else:
        hard = any(h for _, h in bounced.values())
    confidence = 0.99 if failed else 0.95 if strong else 0.85
    pairs = [(addr, status) for addr, (status, _) in bounced.items()]
    return BounceFinding(hard=hard, bounced=pairs, evidence=evidence, confidence=confidence)


def _addrs(value: str) -> list[str]:
    return [a.casefold() for a in _ADDR.findall(value[:2000])]
