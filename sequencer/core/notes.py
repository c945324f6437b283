"""Thank-you notes to referrers: a kind of message of its own (``DraftKind.NOTE``), not a step.

One note per referrer per window (``routing.thank_window``, a day by default) names every
prospect of theirs that engaged since; it is timed in the referrer's zone (their ``timezone``
when the data has one, else the rep's), never the prospect's, and carries a footer written
for a referrer. Pure: no clock, no database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sequencer.core.compose import make_message_id
from sequencer.core.drafts import (
    DraftConfig,
    EnrollmentData,
    enrollment_context,
    message_bytes,
    recipient_of,
    to_message,
    unsubscribe_url,
)
from sequencer.core.model import CampaignSpec
from sequencer.core.ports import NewDraft
from sequencer.core.render import render_step, template_dirs
from sequencer.core.states import DraftKind, DraftState

NOTE_TEMPLATE = "thank_referrer"
# A note's step_index: it is no step of the sequence (steps are 0, 1, …). With the
# (enrollment_id, step_index) unique key, an enrollment owns at most one note.
NOTE_INDEX = -1


def note_zone(referrer: Mapping[str, Any], spec: CampaignSpec) -> ZoneInfo:
    """The referrer's zone when their row has a valid ``timezone``, else the rep's."""
    name = str(referrer.get("timezone") or "").strip()
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(spec.rep.timezone)


def referrer_key(enrollment: EnrollmentData) -> str:
    """The referrer's casefolded address ("" when they have none: no note then)."""
    return str(enrollment.referrer.get("email") or "").strip().casefold()


def thanked(enrollment: EnrollmentData) -> dict[str, Any]:
    """How a note names one prospect (``named``: the referrer was named to them)."""
    p = enrollment.prospect
    name = " ".join(x for x in (p.get("first_name", ""), p.get("last_name", "")) if x)
    return {
        "name": name or enrollment.prospect_email,
        "company": p.get("company", ""),
        "named": bool(enrollment.may_name_referrer),
    }


def build_note(
    spec: CampaignSpec,
    owner: EnrollmentData,
    owner_id: int,
    people: Sequence[EnrollmentData],
    cfg: DraftConfig,
    due_at: datetime,
    message_id: str | None = None,
) -> NewDraft:
    """The note to ``owner``'s referrer thanking them for ``people`` (owner first), rendered
    with the internal context (the referrer is the reader) and always awaiting approval."""
    to_email = str(owner.referrer.get("email") or "").strip()
    link = unsubscribe_url(cfg, to_email, spec.name)
    extra = {"thanked": [thanked(e) for e in people]}
    context = enrollment_context(spec, owner, 1, link, internal=True, extra=extra)
    rendered = render_step(
        NOTE_TEMPLATE, context, template_dirs(cfg.shipped_templates, spec.templates_dir)
    )
    draft = NewDraft(
        enrollment_id=owner_id,
        step_index=NOTE_INDEX,
        template=NOTE_TEMPLATE,
        state=DraftState.PENDING_APPROVAL,
        to_email=to_email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        headers={"X-Refseq-Unsubscribe-Url": link},
        message_id=message_id or make_message_id(spec.rep.email.rsplit("@", 1)[-1]),
        due_at=due_at,
        kind=DraftKind.NOTE,
    )
    recipient = recipient_of(DraftKind.NOTE, owner)
    return replace(draft, message=message_bytes(to_message(draft, spec, recipient, due_at)))
