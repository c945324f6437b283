"""Thank the referrer when prospects they know engage: at most one note per referrer per window.

Drafting (inside the inbox transaction that records the handoff): a prospect is thanked for
once (``note_mentions.enrollment_id`` is unique). When the campaign already has a note to that
referrer that no sender has claimed yet, the prospect is added to it (re-rendered, back to
awaiting approval: the rep approved other words); otherwise a new note is drafted, due no
sooner than a window after the last note to that referrer went out.

Sending goes through the ordinary outbox claim (services.sending); at claim time
:func:`note_wait` defers a note while another note to the same referrer went out less than a
window ago, so two campaigns, or a note drafted before the last went out, still make one note
per window.

"I'm not the right person, talk to X" (intent ``redirect``) drafts no note: the note tells the
referrer that the two of us are now in touch thanks to them, which a redirect is not, and a
"thanks for a dead end" reads as automation. If X replies, that handoff is on the same
referrer's path and thanks them then.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sequencer.core.drafts import DraftConfig
from sequencer.core.inbound import InboundClass
from sequencer.core.model import CampaignSpec
from sequencer.core.notes import build_note, referrer_key
from sequencer.core.ports import (
    DraftEvent,
    DraftRecord,
    EnrollmentRecord,
    HandoffRecord,
    Store,
)
from sequencer.core.replytext import Intent
from sequencer.core.states import DraftState

ACTOR = "refseq-inbox"
NO_NOTE_INTENTS = frozenset({Intent.REDIRECT.value})


def _event(repo: Store, draft_id: int, action: str, why: str, now: datetime, **after: str) -> None:
    repo.add_draft_event(DraftEvent(draft_id, ACTOR, action, {}, {"why": why, **after}, now))


def thank_referrer(
    repo: Store,
    spec: CampaignSpec,
    handoff: HandoffRecord,
    e: EnrollmentRecord,
    cfg: DraftConfig | None,
    now: datetime,
) -> DraftRecord | None:
    """Draft (or extend) the note thanking ``e``'s referrer; the note, or None when none is due."""
    key = referrer_key(e)
    if spec.routing.thank_referrer != "draft" or cfg is None or not key:
        return None
    if handoff.intent in NO_NOTE_INTENTS or repo.note_for(e.id) is not None:
        return None
    existing = repo.open_note_to(e.campaign_id, key)
    if existing is not None:
        extended = _extend(repo, spec, existing, e, cfg, now)
        if extended is not None:
            return extended
    last = repo.last_note_to(key)
    window = timedelta(seconds=spec.routing.thank_window_seconds)
    due = now if last is None else max(now, last + window)
    record = repo.add_draft(
        build_note(spec, e, e.id, [e], cfg, due), now, campaign_id=e.campaign_id, clear_due=False
    )
    if record is None:
        return None
    if not repo.add_note_mention(record.id, e.id, key, now):  # a racing inbox thanked them
        repo.update_draft(
            record.id, record.revision, now, state=DraftState.CANCELLED, reason="already thanked"
        )
        return None
    _event(repo, record.id, "created", "thank the referrer", now, state=record.state.value)
    return record


def _extend(
    repo: Store,
    spec: CampaignSpec,
    note: DraftRecord,
    e: EnrollmentRecord,
    cfg: DraftConfig,
    now: datetime,
) -> DraftRecord | None:
    """Add ``e``'s prospect to an unclaimed note; None when a sender took it meanwhile."""
    owner = repo.get_enrollment(note.enrollment_id)
    if owner is None:
        return None
    people = [x for x in (repo.get_enrollment(i) for i in repo.note_mentions(note.id)) if x]
    people = [p for p in people if p.id != e.id] + [e]
    new = build_note(spec, owner, owner.id, people, cfg, note.due_at, note.message_id)
    updated = repo.update_draft(
        note.id,
        note.revision,
        now,
        state=DraftState.PENDING_APPROVAL,
        decided_by=None,
        decided_at=None,
        subject=new.subject,
        text=new.text,
        html=new.html,
        message=new.message,
    )
    if updated is None or not repo.add_note_mention(note.id, e.id, referrer_key(e), now):
        return None
    why = f"thank the referrer for {e.prospect_email} too ({len(people)} prospects)"
    _event(repo, note.id, "extended", why, now, state=updated.state.value)
    return updated


# How an inbound message about a note is matched: to no prospect (a person reads it in
# `refseq inbox`); the referrer answering or bouncing a note must not count as the prospect's.
NOTE_MATCH = "note-to-referrer"


def note_inbound(
    repo: Store, klass: InboundClass, bounced: list[tuple[str, str]], now: datetime
) -> None:
    """A note bounced hard: the referrer's address takes no more notes."""
    if klass is InboundClass.HARD_BOUNCE:
        for address, status in bounced:
            why = f"hard bounce of a thank-you note ({status})"
            repo.add_suppression(address.casefold(), why, "inbox", now)


def note_wait(repo: Store, note: DraftRecord, spec: CampaignSpec, now: datetime) -> datetime | None:
    """When ``note`` may go, if another note to the same referrer went out within the window."""
    last = repo.last_note_to(note.to_email.strip().casefold(), exclude_draft=note.id)
    if last is None:
        return None
    may_go = last + timedelta(seconds=spec.routing.thank_window_seconds)
    return may_go if may_go > now else None
