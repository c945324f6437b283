"""The variables a step template sees.

``build_context`` turns an enrollment's snapshot (prospect, referrer, referral) plus the rep and
campaign into plain dicts::

    prospect        every CSV column (custom ones too) + full_name
                    -> prospect.company, prospect['custom column']
    referrer        name, first_name, title, company, email, is_customer, nps, our_context,
                    our_strength, description (+ any other referrer fields)
                    ONLY is_customer and description when the referrer may not be named
    referral        context, strength, temperature, is_warm, may_name_referrer,
                    others (nameable other referrers: name, first_name, title, company, context),
                    others_total (how many other referrers there are, named or not)
    rep             name, first_name, email, title (+ any other rep fields)
    campaign        name, postal_address (+ any other campaign fields)
    step            number, is_follow_up
    unsubscribe_url

When the referrer may not be named, the name, email, title, company and our_context are simply
absent, so a template cannot leak them: ``{{ referrer.name }}`` is a render error.
``referrer.description`` ("one of our customers" / "a mutual connection") works either way.

Conventions for the free-text columns, so sentences read well in the shipped templates:
``referrer.our_context`` is a verb phrase ("worked with our CTO, Jim Walsh, for five years at
Microsoft"); ``referral.context`` is a noun phrase describing the referrer from the prospect's
side ("your former colleague at Chase").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sequencer.core.render import HINT_KEY, first_name

__all__ = ["build_context", "referrer_description"]

_UNNAMED_HINT = (
    "the referrer may not be named to this prospect; use referrer.description "
    "or check referral.may_name_referrer"
)


def referrer_description(is_customer: bool) -> str:
    """A generic way to mention a referrer without naming them."""
    return "one of our customers" if is_customer else "a mutual connection"


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _referrer(referrer: Mapping[str, Any], *, named: bool) -> dict[str, Any]:
    is_customer = bool(referrer.get("is_customer", False))
    description = referrer_description(is_customer)
    if not named:
        return {"is_customer": is_customer, "description": description, HINT_KEY: _UNNAMED_HINT}
    name = _text(referrer.get("name"))
    return {
        **referrer,
        "name": name,
        "first_name": _text(referrer.get("first_name")) or first_name(name),
        "title": _text(referrer.get("title")),
        "company": _text(referrer.get("company")),
        "email": _text(referrer.get("email")),
        "is_customer": is_customer,
        "nps": referrer.get("nps"),
        "our_context": _text(referrer.get("our_context")),
        "our_strength": referrer.get("our_strength"),
        "description": description,
    }


def _other(item: Mapping[str, Any], *, internal: bool) -> dict[str, str] | None:
    """One other referrer, or None when they may not be named.

    Accepts a flat mapping (name, company, title, context, may_name) or a nested one
    ({"referrer": {...}, "context": ..., "may_name": ...}).
    """
    person = item.get("referrer")
    if not isinstance(person, Mapping):
        person = item
    may_name = bool(item.get("may_name", person.get("may_name", False)))
    if not (may_name or internal):
        return None
    name = _text(person.get("name"))
    if not name:
        return None
    return {
        "name": name,
        "first_name": first_name(name),
        "title": _text(person.get("title")),
        "company": _text(person.get("company")),
        "context": _text(item.get("context")),
    }


def build_context(
    *,
    prospect: Mapping[str, str],
    referrer: Mapping[str, Any],
    referral: Mapping[str, Any],
    temperature: str,
    may_name_referrer: bool,
    other_referrers: Sequence[Mapping[str, Any]],
    rep: Mapping[str, str],
    campaign: Mapping[str, Any],
    step_number: int,
    unsubscribe_url: str,
    internal: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The template context for one step of one enrollment.

    ``internal=True`` is for messages that never reach the prospect (the handoff notice to the
    rep, the thank-you to the referrer themselves): the referrer is then always named, while
    ``referral.may_name_referrer`` still tells the truth. Each item of ``other_referrers``
    carries its own ``may_name`` flag (decided by the caller under the campaign's policy);
    without it that referrer is left out of ``referral.others``.

    ``extra`` adds template-specific variables (e.g. ``reply_excerpt`` for the handoff notice);
    it may not replace a built-in one.
    """
    prospect_ctx: dict[str, Any] = dict(prospect)
    full_name = " ".join(
        part
        for part in (_text(prospect.get("first_name")), _text(prospect.get("last_name")))
        if part
    )
    prospect_ctx.setdefault("full_name", full_name)

    others = [
        other
        for other in (_other(item, internal=internal) for item in other_referrers)
        if other is not None
    ]
    referral_ctx: dict[str, Any] = {
        "context": _text(referral.get("context")),
        "strength": referral.get("strength"),
        "temperature": str(temperature),
        "is_warm": str(temperature) == "warm",
        "may_name_referrer": bool(may_name_referrer),
        "others": others,
        "others_total": len(other_referrers),
    }

    rep_name = _text(rep.get("name"))
    rep_ctx: dict[str, Any] = {
        **rep,
        "name": rep_name,
        "first_name": _text(rep.get("first_name")) or first_name(rep_name),
        "email": _text(rep.get("email")),
        "title": _text(rep.get("title")),
    }
    campaign_ctx: dict[str, Any] = {
        **campaign,
        "name": _text(campaign.get("name")),
        "postal_address": _text(campaign.get("postal_address")),
    }

    context: dict[str, Any] = {
        "prospect": prospect_ctx,
        "referrer": _referrer(referrer, named=bool(may_name_referrer) or internal),
        "referral": referral_ctx,
        "rep": rep_ctx,
        "campaign": campaign_ctx,
        "step": {"number": step_number, "is_follow_up": step_number > 1},
        "unsubscribe_url": unsubscribe_url,
    }
    for key, value in (extra or {}).items():
        if key in context:
            raise ValueError(f"extra context variable {key!r} would replace a built-in one")
        context[key] = value
    return context
