"""The new text of a reply (above the quoted history) and what it asks for.

``extract_reply`` cuts at the first quote boundary our own linear splitter knows (attribution
lines "On … wrote:", "Am … schrieb …:", "Le … a écrit :", "El … escribió:", "Op … schreef",
"Em … escreveu:", "Il … ha scritto:", also wrapped over up to three lines; Outlook
"-----Original Message-----" / underscore rules / "From: … Sent: …" blocks in seven languages;
"Begin forwarded message:"), drops ``>``-quoted lines, and cuts the signature ("-- ", "Sent from
my iPhone", …). mail-parser-reply then gets the remainder to find separators of the languages we
do not list (Danish, Swedish, Polish, Czech, Japanese, …); its header regexes backtrack badly on
long lines, so it only ever sees ≤ 16 KiB with lines ≤ 500 characters, and may only shorten.

Intent rules are plain regexes, checked in this precedence: unknown referrer > redirect >
not interested > interested > question > neutral (unsubscribe is decided before, in
``optout_text.unsubscribe_request``). Each rule reports the phrase it matched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mailparser_reply import EmailReplyParser  # type: ignore[import-untyped]
from mailparser_reply.constants import MAIL_LANGUAGES  # type: ignore[import-untyped]

SCAN_CHARS = 65_536
REPLY_CHARS = 8192
LIBRARY_CHARS = 16_384
LIBRARY_LINE = 500

_LANGUAGES = [lang for lang in MAIL_LANGUAGES if lang != "david"]


class Intent(StrEnum):
    INTERESTED = "interested"
    NOT_INTERESTED = "not_interested"
    QUESTION = "question"
    REDIRECT = "redirect"
    UNKNOWN_REFERRER = "unknown_referrer"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Reply:
    text: str
    quoted: bool
    evidence: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IntentResult:
    intent: Intent
    redirect_to: str | None
    evidence: list[str]


_ATTRIBUTION_START = re.compile(r"^(?:on|am|le|el|op|em|il|den|dnia|dne|w dniu)\s", re.I)
_ATTRIBUTION_WORDS = (
    "wrote", "schrieb", "a écrit", "escribió", "schreef", "escreveu", "ha scritto", "skrev",
    "napisał", "napsal", "kirjoitti",
)  # fmt: skip
_SEPARATOR = re.compile(
    r"^[ \t]*(?:-{2,}[ \t]*(?:original message|ursprüngliche nachricht|message d'origine"
    r"|mensaje original|oorspronkelijk bericht|messaggio originale|mensagem original"
    r"|forwarded message|weitergeleitete nachricht|message transféré)[ \t]*-{2,}|_{10,}"
    r"|begin forwarded message:|anfang der weitergeleiteten nachricht:)[ \t]*$",
    re.I,
)
_HEADER_FROM = re.compile(r"^[ \t]*\*?(?:from|von|de|van|da|od|från|fra)[ \t]*:\*?[ \t]*\S", re.I)
_HEADER_OTHER = re.compile(
    r"^[ \t]*\*?(?:sent|date|to|subject|cc|gesendet|datum|an|betreff|envoyé|à|objet|enviado"
    r"|fecha|para|asunto|verzonden|aan|onderwerp|inviato|data|a|oggetto|enviada|assunto)"
    r"[ \t]*:",
    re.I,
)
_SIGNATURE = re.compile(
    r"^(?:--|—|sent from my\b|sent from (?:outlook|mail for windows|yahoo mail)|get outlook for"
    r"|von meinem .{1,40} gesendet|gesendet von meinem|envoyé de mon|envoyé depuis mon"
    r"|enviado desde mi|enviado do meu|verzonden (?:vanaf|met) mijn|verstuurd vanaf mijn"
    r"|inviato da(?:l mio)? )",
    re.I,
)


def _is_attribution(line: str) -> bool:
    s = line.strip().lstrip(">").strip()
    if not s.endswith(":") or len(s) > 400:
        return False
    low = s.casefold()
    has_word = any(w in low for w in _ATTRIBUTION_WORDS)
    return has_word and bool(_ATTRIBUTION_START.match(s) or "@" in s or re.search(r"\d", s))


def _boundary(lines: Sequence[str], i: int) -> str | None:
    line = lines[i]
    if _SEPARATOR.match(line):
        return "separator line"
    if _is_attribution(line):
        return "attribution line"
    stripped = line.strip().lstrip(">").strip()
    if _ATTRIBUTION_START.match(stripped) and len(stripped) < 400:
        for end in (2, 3):
            if _is_attribution(" ".join(s.strip().lstrip(">").strip() for s in lines[i : i + end])):
                return "wrapped attribution line"
    if _HEADER_FROM.match(line) and any(_HEADER_OTHER.match(s) for s in lines[i + 1 : i + 6]):
        return "quoted header block"
    return None


def _own_split(text: str) -> tuple[str, bool, str]:
    lines = text[:SCAN_CHARS].split("\n")
    cut, why = len(lines), ""
    for i in range(len(lines)):
        reason = _boundary(lines, i)
        if reason:
            cut, why = i, reason
            break
    top = lines[:cut]
    quoted = cut < len(lines) or any(s.lstrip().startswith(">") for s in top)
    kept = [s.rstrip() for s in top if not s.lstrip().startswith(">")]
    for i, line in enumerate(kept):
        if i > 0 and _SIGNATURE.match(line.strip()) and line.strip() != "-":
            kept = kept[:i]
            why = why or "signature"
            break
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return body, quoted, why


def _library_cut(text: str) -> str | None:
    """mail-parser-reply's first reply, if it ends earlier than ours (bounded input only)."""
    if not text or len(text) > LIBRARY_CHARS or max(map(len, text.split("\n"))) > LIBRARY_LINE:
        return None
    try:
        replies = EmailReplyParser(languages=list(_LANGUAGES)).read(text=text).replies
        first = replies[0] if replies else None
        if first is None or first.headers:
            return None
        body = str(first.full_body)
    except Exception:
        return None
    ours = "\n".join(line.strip() for line in text.split("\n")).strip()
    return body if body and len(body) < len(ours) and ours.startswith(body) else None


def extract_reply(text: str) -> Reply:
    """The new text above the quoted history, without ``>`` lines and signature."""
    body, quoted, why = _own_split(text.replace("\r\n", "\n"))
    evidence = [f"reply text cut at {why}"] if why else []
    shorter = _library_cut(body)
    if shorter is not None:
        body, quoted = shorter, True
        evidence.append("reply text cut by mail-parser-reply")
    return Reply(text=body[:REPLY_CHARS], quoted=quoted, evidence=evidence)


# -- unsubscribe and intent -----------------------------------------------------------------------

_NAME = r"(?-i:[A-Z][\w'.-]+(?:[ \t]+[A-Z][\w'.-]+){0,2})"
_NOT_NAMES = frozenset(
    {"If", "Whether", "What", "Why", "How", "When", "Where", "Who", "Which", "The", "This", "That",
     "Your", "You", "Anything", "About", "Yet", "It", "Much", "Enough", "Him", "Her", "Them", "Any",
     "Anyone", "Anybody"}
)  # fmt: skip
_UNKNOWN_REFERRER = [
    re.compile(
        r"\b(?:i|we) (?:really )?(?:do not|don't|dont) (?:really )?(?:know|recall|remember) "
        rf"(?:(?:anyone|anybody|someone) (?:named|called|by the name of) )?(?P<name>{_NAME})",
        re.I,
    ),
    re.compile(
        rf"\b(?:who(?: is|'s)|wer ist|qui est|quién es|wie is|quem é|chi è) (?P<name>{_NAME})\s*\?",
        re.I,
    ),
    re.compile(
        r"\bnever (?:heard of|met|worked with)\b|\b(?:don't|do not|can't|cannot)"
        r" (?:recall|remember) (?:working|meeting|speaking|talking|ever)\b|\bnot sure who\b"
        r"|\bhow do (?:you|they) know me\b|\bdon't know (?:him|her|them|this person"
        r"|who (?:that|this|he|she) is)\b"
        rf"|\bkenne (?:ich )?(?:keinen |keine |den |die |herrn |frau )?{_NAME} nicht\b"
        rf"|\b{_NAME} kenne ich nicht\b|\bnie (?:von \w+ )?gehört\b"
        r"|\bje ne (?:le |la )?connais pas\b|\bjamais entendu parler\b|\bno (?:lo |la )?conozco\b"
        r"|\bken ik niet\b|\bnão conheço\b"
        r"|\bnon (?:lo |la )?conosco\b",
        re.I,
    ),
]
_REDIRECT = re.compile(
    r"\b(?:colleague|coworker|co-worker|teammate|counterpart)\b|\b(?:talk|speak) (?:to|with)\b"
    r"|\breach out to\b|\bget in touch with\b|\bcontact (?:my|our|him|her|them|(?-i:[A-Z]))"
    r"|\b(?:right|better|best) (?:person|contact)\b|\b(?:cc'?e?d|copied|copying|looping in"
    r"|looped in|adding) (?:in )?(?:my|our|(?-i:[A-Z]))|\bforward(?:ed|ing)? (?:this|your"
    r" (?:e-?mail|note|message)) to\b|\bkolleg(?:e|in|en)\b|\bwenden sie sich\b|\bzuständig\b"
    r"|\bansprechpartner(?:in)?\b|\bcollègue\b|\bs'occupe\b|\bcompañer[oa]\b|\bcolega\b"
    r"|\bse encarga\b|\bencargad[oa]\b|\bcollega\b|\bsi occupa\b|\bresponsável\b"
    r"|\bneem contact op met\b|\bcontacto con\b",
    re.I,
)
_HANDLES = re.compile(
    rf"\b(?:he|she|they|{_NAME}) (?:handles|owns|manages|runs|looks after|takes care of"
    r"|is (?:responsible for|in charge of))\b",
    re.I,
)
_NOT_INTERESTED = re.compile(
    r"\bnot interested\b|\bno,? thanks?\b|\bno,? thank you\b|\bnot (?:a|the right) (?:good )?fit\b"
    r"|\bnot a priority\b|\b(?:we're|we are|i'm|i am) all set\b|\bnot (?:looking|in the market)\b"
    r"|\bnot (?:at this time|right now)\b|\bno need\b|\bwe already (?:have|use|work with)\b"
    r"|\bnot for us\b|\bnot relevant\b|\bi'll pass\b|\bkein(?:en)? (?:interesse|bedarf)\b"
    r"|\bnicht interessiert\b|\bnein,? danke\b|\bpas intéress|\bpas d'intérêt\b|\bnon merci\b"
    r"|\bpas besoin\b|\bno (?:estamos|estoy) interesad|\bno (?:nos|me) interesa\b|\bno,? gracias\b"
    r"|\bgeen interesse\b|\bniet geïnteresseerd\b|\bnee,? bedankt\b|\bnão (?:tenho|temos) interesse"
    r"|\bnão (?:estamos|estou) interessad|\bnon (?:sono|siamo) interessat|\bnon (?:ci|mi) interessa"
    r"|\bno,? grazie\b",
    re.I,
)
_INTERESTED = re.compile(
    r"\bsounds? (?:good|great|interesting)\b|\blet's (?:talk|chat|connect|meet|set|find|schedule"
    r"|do)\b|\bhappy to (?:chat|talk|connect|meet|hop|jump|learn)\b|\b(?:monday|tuesday|wednesday"
    r"|thursday|friday|tomorrow|next week|that|this) (?:works|would work|is (?:good|fine|great))\b"
    r"|\bworks for me\b|\bbook a (?:time|call|meeting|slot)\b|\bset up a (?:call|meeting|time)\b"
    r"|\bschedule a\b|\binterested\b|\bwould love to\b|\bkeen to\b|\bcalendar link\b|\byes,? please"
    r"|\bklingt (?:gut|interessant)|\bgerne\b|\binteressiert\b|\bpasst mir\b|\bça m'intéresse\b"
    r"|\bvolontiers\b|\bavec plaisir\b|\bintéressé|\bça me va\b|\bme interesa\b|\bsuena bien\b"
    r"|\bcon gusto\b|\bhablemos\b|\bklinkt goed\b|\bgraag\b|\bgeïnteresseerd\b|\btenho interesse"
    r"|\bcom prazer\b|\bvamos conversar\b|\bmi interessa\b|\bvolentieri\b|\bsentiamoci\b",
    re.I,
)
_QUESTION = re.compile(
    r"[?¿]|\bhow much\b|\bwhat does it cost\b|\bpricing\b|\bwie viel\b|\bwas kostet\b|\bcombien\b"
    r"|\bcuánto\b|\bquanto\b|\bhoeveel\b",
    re.I,
)
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_LEFT = re.compile(
    r"\bno longer (?:with|at|works?)\b|\b(?:has|have) left\b|\bleft the (?:company|firm)\b"
    r"|\bnicht mehr (?:bei|für|im unternehmen)\b|\bne fait plus partie\b|\bn'est plus\b"
    r"|\bya no (?:trabaja|forma parte)\b|\bniet meer werkzaam\b|\bnão (?:trabalha|faz parte)\b"
    r"|\bnon (?:lavora|fa) più\b",
    re.I,
)
_ROLE_WORDS = frozenset(
    {"Kollege", "Kollegin", "Kollegen", "Herr", "Herrn", "Frau", "Mr", "Mr.", "Mrs", "Mrs.", "Ms",
     "Ms.", "Dr", "Dr.", "Colleague", "Madame", "Monsieur", "Mme", "M.", "Sr.", "Sra.", "Dott.",
     "Please", "Contact", "Email", "E-mail"}
)  # fmt: skip
_NAME_BEFORE = re.compile(rf"(?P<name>{_NAME})\s*(?:\(|<|\bat\b|[-\u2013\u2014:,])?\s*$")


def _normal(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _redirect_target(text: str, sender: str, cc: Sequence[tuple[str, str]]) -> str | None:
    for found in _ADDRESS.finditer(text):
        addr = found.group(0).rstrip(".").casefold()
        if addr == sender:
            continue
        before = text[max(0, found.start() - 80) : found.start()]
        named = _NAME_BEFORE.search(before)
        words = named.group("name").split() if named else []
        while words and words[0] in _ROLE_WORDS:
            words = words[1:]
        if words and words[0] not in _NOT_NAMES:
            return f"{' '.join(words).strip('<>()')} <{addr}>"
        return addr
    for name, addr in cc:
        first = name.split()[0] if name else ""
        if first and first in text:
            return f"{name} <{addr}>"
    if cc:
        name, addr = cc[0]
        return f"{name} <{addr}>" if name else addr
    return None


def detect_intent(
    reply_text: str, sender: str, cc: Sequence[tuple[str, str]], *, auto_reply: bool = False
) -> IntentResult:
    """Intent of the new text; an auto-reply is only checked for "has left, contact X"."""
    text = _normal(reply_text)
    if not auto_reply:
        for pattern in _UNKNOWN_REFERRER:
            for hit in pattern.finditer(text):
                name = hit.groupdict().get("name")
                if name is None or name.split()[0] not in _NOT_NAMES:
                    evidence = [f"intent unknown_referrer: '{hit.group(0)}'"]
                    return IntentResult(Intent.UNKNOWN_REFERRER, None, evidence)
    left = _LEFT.search(text) if auto_reply else None
    if auto_reply and left is None:
        return IntentResult(Intent.NEUTRAL, None, [])
    cue = _REDIRECT.search(text)
    target = _redirect_target(text, sender, cc) if cue else None
    handles = None if cue else _HANDLES.search(text)
    if handles is not None:  # "X handles this" counts only when it names an address
        target = _redirect_target(text, sender, cc)
        cue = handles if target else None
    if cue is not None and (target or not auto_reply):
        evidence = [f"intent redirect: '{cue.group(0)}'"]
        if left is not None:
            evidence.insert(0, f"auto-reply says '{left.group(0)}'")
        if target:
            evidence.append(f"redirect to {target}")
        return IntentResult(Intent.REDIRECT, target, evidence)
    if auto_reply:
        return IntentResult(Intent.NEUTRAL, None, [])
    for intent, pattern in (
        (Intent.NOT_INTERESTED, _NOT_INTERESTED),
        (Intent.INTERESTED, _INTERESTED),
        (Intent.QUESTION, _QUESTION),
    ):
        if rule := pattern.search(text):
            return IntentResult(intent, None, [f"intent {intent.value}: '{rule.group(0)}'"])
    return IntentResult(Intent.NEUTRAL, None, ["intent neutral: no rule matched"])
