"""Does the new text of a reply (or its subject) ask to be removed? Pure.

Read in English, French, German, Spanish, Portuguese, Italian and Dutch, plus a bare
"STOP" / "UNSUBSCRIBE" / "REMOVE" (a word or two, perhaps "please" and a name under it).
Only the new text counts: the caller passes ``replytext.extract_reply(...).text``, so a quoted
original or a signature never does. Kept sane against false positives:

* a phrase preceded by a negation ("don't unsubscribe me", "bitte nicht abmelden", "ne me
  désabonnez pas") does not count, nor does a bare "don't stop";
* a question answered no right after ("remove me from the thread? no, …") does not count;
* a reply's subject is usually ours ("Re: Stop sending paper invoices"), so it only counts when
  it is nothing but an opt-out word, or when the message is not a reply at all.
"""

from __future__ import annotations

import re

_UNSUBSCRIBE = re.compile(
    # English
    r"\bunsubscribe (?:me|us)\b|\bplease unsubscribe\b|^[ \t]*unsubscribe\b"
    r"|\b(?:want|like|wish) to (?:unsubscribe|opt[- ]out)\b"
    r"|\bremove (?:me|us|my (?:e-?mail|address|name))\b|\btake (?:me|us) off\b"
    r"|\bstop (?:e-?mailing|spamming)\b"
    r"|\bstop (?:sending|contacting|messaging|writing to) (?:me|us)\b"
    r"|\b(?:do not|don't|dont|never) (?:contact|e-?mail|write to|message) (?:me|us)\b"
    r"|\bplease stop\b(?! by)|\bopt (?:me|us) out\b|\bopt out of (?:your|these|this|future)\b"
    r"|\bno more e-?mails\b"
    # German
    r"|\babmelden\b|\bmelden sie mich\b.{0,40}\bab\b|\baustragen\b"
    r"|\btragen sie mich\b.{0,60}\baus\b|\b(?:entfernen|löschen|streichen) sie mich\b"
    r"|\bkeine (?:weiteren |weitere )?(?:e-?mails|nachrichten|werbung)\b"
    r"|\b(?:schreiben sie mir|kontaktieren sie mich) (?:bitte )?nicht mehr\b"
    r"|\bnicht mehr (?:kontaktieren|anschreiben)\b"
    # French
    r"|d[ée]sinscri|d[ée]sabonn|\b(?:retirez|supprimez|enlevez|rayez)[- ]moi\b"
    r"|\bme (?:retirer|supprimer|rayer|enlever) de (?:votre|vos|la|cette|ta)\b"
    r"|\bne plus (?:recevoir|me contacter)\b|\bne (?:me )?(?:contactez|écrivez) plus\b"
    r"|\barr[êe]tez de m'(?:écrire|envoyer|contacter)"
    r"|\bne (?:souhaite|veux|désire) plus (?:recevoir|être contacté)"
    # Spanish
    r"|\bno me (?:escriba|escribas|contacte|contactes|envíe|envíes)\b|\bdar(?:me)? de baja\b"
    r"|\b(?:elimíname|elimínenme|eliminadme|quítame|quíteme|sácame|sáqueme|bórrame|bórreme)\b"
    r"|\bno quiero recibir m[áa]s\b|\bdej(?:e|en|a) de (?:escribirme|enviarme|contactarme)\b"
    # Portuguese
    r"|\bdescadastr|\bcancelar (?:a )?inscrição\b|\bnão (?:me )?(?:envie|contate|escreva)\b"
    r"|\b(?:remova|retire|tire)[- ]me\b|\bme (?:remova|retire|tire|descadastre) d"
    r"|\bnão quero (?:mais )?receber\b|\bpar(?:e|em) de (?:me )?(?:enviar|escrever|contatar)\b"
    # Italian
    r"|\bdisiscriv|\bcancellami\b|\bcancellatemi\b|\brimuovetemi\b|\brimuovimi\b"
    r"|\btoglietemi\b|\btoglimi\b|\bnon (?:scrivermi|contattarmi)\b"
    r"|\bnon voglio (?:più )?ricevere\b|\bsmettete(?:la)? di (?:scrivermi|inviarmi|contattarmi)\b"
    # Dutch
    r"|\buitschrijven\b|\bafmelden\b|\bmeld (?:mij|me) af\b|\bverwijder (?:mij|me)\b"
    r"|\bhaal (?:mij|me) (?:van|uit|af)\b|\bgeen (?:e-?mails?|mails|berichten) meer\b"
    r"|\bstop met (?:mailen|e-?mailen|sturen|mij te)\b",
    re.I | re.M,
)
_BARE = re.compile(
    r"(?:please[ \t]+|bitte[ \t]+)?"
    r"(?:stop|stopp|unsubscribe|remove(?: me)?|opt[- ]?out|arr[êe]t(?:er)?|d[ée]sinscri(?:re|ption)"
    r"|d[ée]sabonn(?:er|ement)|abmelden|austragen|baja|darme de baja|descadastrar|sair"
    r"|cancelar|disiscrivimi|cancellami|basta|afmelden|uitschrijven|verwijderen)"
    r"(?:[ \t]+(?:please|bitte|por favor|s'il vous plaît|svp|per favore|alsjeblieft|aub))?",
    re.I,
)
_NEGATED = re.compile(
    r"(?:\b(?:don't|do not|dont|never|not|no need to|didn't|did not|doesn't|nicht|kein|niet"
    r"|jamais|ne|n'|mai)(?:[ \t]+[\w'-]+){0,2}[ \t]+)$",
    re.I,
)
_ANSWERED_NO = re.compile(
    r"[^.!?\n]{0,80}\?[ \t]*(?:no|nope|nah|not really|nein|non|nee|não)\b", re.I
)
_SUBJECT_WORDS = frozenset(
    {"unsubscribe", "unsubscribe me", "remove", "remove me", "stop", "opt out", "opt-out",
     "abmelden", "austragen", "désinscription", "désinscrire", "désabonnement", "baja",
     "darme de baja", "uitschrijven", "afmelden", "descadastrar", "disiscrivimi", "cancellami"}
)  # fmt: skip
_REPLY_PREFIX = re.compile(r"^(?:(?:re|aw|sv|fw|fwd|wg|tr|rv|antw)\s*:\s*)+", re.I)
_SIGN_OFF_WORDS = 3


def _normal(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _counts(text: str, hit: re.Match[str]) -> bool:
    """Not negated just before, and not a question answered "no" right after."""
    before = text[max(0, hit.start() - 40) : hit.start()]
    return not _NEGATED.search(before) and not _ANSWERED_NO.match(text, hit.end())


def _phrase(text: str) -> str | None:
    for hit in _UNSUBSCRIBE.finditer(text):
        if _counts(text, hit):
            return hit.group(0).strip()
    return None


def _bare(text: str) -> str | None:
    """The whole new text is an opt-out word (a sign-off of a few words under it allowed)."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if not lines or len(lines) > 2:
        return None
    if len(lines) == 2 and len(lines[1].split()) > _SIGN_OFF_WORDS:
        return None
    word = lines[0].strip(" \t.!¡,;:-")
    return word if _BARE.fullmatch(word) else None


def unsubscribe_request(reply_text: str, subject: str) -> str | None:
    """Evidence when the new text (or the subject) asks to be removed, else ``None``."""
    text = _normal(reply_text)
    if found := _phrase(text):
        return f"reply text asks to be removed: '{found}'"
    if found := _bare(text):
        return f"reply says just '{found}'"
    if len(text) < 60 and (hit := re.search(r"\bunsubscribe\b", text, re.I)) and _counts(text, hit):
        return f"short reply says '{hit.group(0)}'"
    bare = _REPLY_PREFIX.sub("", subject).strip()
    if bare.strip(" .!").casefold() in _SUBJECT_WORDS:
        return f"subject asks to be removed: '{bare}'"
    if bare == subject and len(bare) < 60 and (found := _phrase(_normal(bare))):
        return f"subject asks to be removed: '{found}'"
    return None
