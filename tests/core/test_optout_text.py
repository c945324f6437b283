"""Opt-out replies in seven languages and bare STOP, and the near misses that are not."""

from __future__ import annotations

import pytest

from sequencer.core.inbound import InboundClass, Intent, classify, parse_inbound
from sequencer.core.optout_text import unsubscribe_request

OPT_OUTS = [
    # bare words, as people type them into a reply
    "STOP", "Stop.", "stop!!", "STOP\n\nJohn", "Unsubscribe", "REMOVE", "remove me",
    "Please stop", "opt-out", "Stopp", "Arrêt", "Baja", "Afmelden",
    # English
    "Please take me off your list.", "I'd like to unsubscribe, thanks.",
    # French
    "Bonjour, merci de me retirer de votre liste.", "Retirez-moi de votre liste svp.",
    "Je ne souhaite plus recevoir vos messages.", "Arrêtez de m'écrire.",
    # German
    "Bitte entfernen Sie mich aus Ihrem Verteiler.", "Bitte keine E-Mails mehr.",
    "Schreiben Sie mir bitte nicht mehr.",
    "Bitte tragen Sie mich aus Ihrer Liste aus.",
    # Spanish
    "Por favor, elimíname de su lista.", "No quiero recibir más correos.",
    "Quiero darme de baja.",
    # Portuguese
    "Por favor, remova-me da sua lista.", "Não quero mais receber estes e-mails.",
    "Parem de me enviar mensagens.",
    # Italian
    "Per favore rimuovetemi dalla lista.", "Non voglio più ricevere queste email.",
    "Toglietemi dalla vostra mailing list.",
    # Dutch
    "Haal mij van de lijst a.u.b.", "Geen e-mails meer graag.", "Verwijder mij uit uw bestand.",
]  # fmt: skip


@pytest.mark.parametrize("text", OPT_OUTS)
def test_an_opt_out_in_any_common_language_is_read(text):
    assert unsubscribe_request(text, "Re: Intro from James") is not None, text


NOT_OPT_OUTS = [
    "Don't stop, this is great!", "Please don't remove me, I want to hear more.",
    "Remove me from the thread? No, keep me on it, I'm the right person.",
    "No need to unsubscribe me, happy to chat Tuesday.", "Bitte nicht abmelden, ich bin dabei.",
    "Ne me désabonnez pas, ça m'intéresse.", "Stop by our booth on Tuesday?",
    "We had to stop the project last year, but let's talk.", "Stopping by next week?",
]  # fmt: skip


@pytest.mark.parametrize("text", NOT_OPT_OUTS)
def test_near_misses_are_not_opt_outs(text):
    assert unsubscribe_request(text, "Re: Intro from James") is None, text


def _reply(body: str) -> bytes:
    return (
        "From: Pat <pat@x.example>\r\nTo: dana@acme.example\r\nSubject: Re: Intro\r\n"
        "Message-ID: <r1@x.example>\r\nIn-Reply-To: <m1@acme.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


@pytest.mark.parametrize(
    "body",
    ["STOP\r\n", "Bitte entfernen Sie mich aus Ihrem Verteiler.\r\n\r\n-- \r\nPat\r\n"],
)
def test_a_stop_reply_is_an_unsubscribe_not_a_neutral_reply(body):
    raw = _reply(body)
    verdict = classify(parse_inbound(raw), raw)
    assert (verdict.klass, verdict.intent) == (InboundClass.UNSUBSCRIBE, Intent.NOT_INTERESTED)


def test_an_opt_out_in_the_quoted_original_does_not_count():
    body = (
        "Sounds good, Tuesday works.\r\n\r\nOn Mon, Nov 23, 2026, Dana wrote:\r\n"
        "> If you would rather not hear from us, reply STOP or unsubscribe here.\r\n"
        "> Remove me? Just say so.\r\n"
    )
    raw = _reply(body)
    verdict = classify(parse_inbound(raw), raw)
    assert verdict.klass is InboundClass.HUMAN_REPLY and verdict.intent is Intent.INTERESTED
