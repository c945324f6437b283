"""State machines as tables.

Enrollment::

    held ──release──▶ active ──reply──▶ replied
                        │  ├──bounce──▶ bounced
                        │  ├──unsubscribe──▶ unsubscribed
                        │  ├──finish──▶ completed
                        │  ├──stop──▶ stopped
                        │  └──pause──▶ paused ──resume/release──▶ active
    held/paused ──stop──▶ stopped
    active/paused ──hold──▶ held   (mail a person must read first: ``refseq held`` / ``release``)

Campaign::

    active ⇄ paused ; active/paused ──stop──▶ stopped (final)
"""

from __future__ import annotations

from enum import StrEnum

from sequencer.errors import InvalidTransition


class EnrollmentState(StrEnum):
    HELD = "held"
    ACTIVE = "active"
    PAUSED = "paused"
    REPLIED = "replied"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    COMPLETED = "completed"
    STOPPED = "stopped"


class DraftKind(StrEnum):
    """What a draft is: a step of the prospect's sequence, or a note to someone else (the
    thank-you to a referrer). Only steps are sequence steps: reports, threads, due times and
    the prospect's state ignore notes."""

    STEP = "step"
    NOTE = "note"


class CampaignStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"


# States in which an enrollment still "owns" the prospect: no other campaign may enroll them.
LIVE_ENROLLMENT_STATES = frozenset(
    {EnrollmentState.HELD, EnrollmentState.ACTIVE, EnrollmentState.PAUSED}
)

# States in which the drafts already made wait (approved, not sent, not cancelled) until the
# enrollment is active again: an out-of-office pause, or a hold for a person's decision.
WAITING_ENROLLMENT_STATES = frozenset({EnrollmentState.PAUSED, EnrollmentState.HELD})

ENROLLMENT_TRANSITIONS: dict[tuple[EnrollmentState, str], EnrollmentState] = {
    (EnrollmentState.HELD, "release"): EnrollmentState.ACTIVE,
    (EnrollmentState.HELD, "stop"): EnrollmentState.STOPPED,
    (EnrollmentState.ACTIVE, "reply"): EnrollmentState.REPLIED,
    (EnrollmentState.ACTIVE, "bounce"): EnrollmentState.BOUNCED,
    (EnrollmentState.ACTIVE, "unsubscribe"): EnrollmentState.UNSUBSCRIBED,
    (EnrollmentState.ACTIVE, "finish"): EnrollmentState.COMPLETED,
    (EnrollmentState.ACTIVE, "stop"): EnrollmentState.STOPPED,
    (EnrollmentState.ACTIVE, "pause"): EnrollmentState.PAUSED,
    (EnrollmentState.ACTIVE, "hold"): EnrollmentState.HELD,
    (EnrollmentState.PAUSED, "hold"): EnrollmentState.HELD,
    (EnrollmentState.PAUSED, "resume"): EnrollmentState.ACTIVE,
    # a person ends a pause early (an old flag's pause, a long out-of-office): like ``resume``
    (EnrollmentState.PAUSED, "release"): EnrollmentState.ACTIVE,
    (EnrollmentState.PAUSED, "reply"): EnrollmentState.REPLIED,
    (EnrollmentState.PAUSED, "bounce"): EnrollmentState.BOUNCED,
    (EnrollmentState.PAUSED, "unsubscribe"): EnrollmentState.UNSUBSCRIBED,
    (EnrollmentState.PAUSED, "stop"): EnrollmentState.STOPPED,
}

CAMPAIGN_TRANSITIONS: dict[tuple[CampaignStatus, str], CampaignStatus] = {
    (CampaignStatus.ACTIVE, "pause"): CampaignStatus.PAUSED,
    (CampaignStatus.PAUSED, "resume"): CampaignStatus.ACTIVE,
    (CampaignStatus.ACTIVE, "stop"): CampaignStatus.STOPPED,
    (CampaignStatus.PAUSED, "stop"): CampaignStatus.STOPPED,
}


def enrollment_transition(state: EnrollmentState, event: str) -> EnrollmentState:
    try:
        return ENROLLMENT_TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition("enrollment", state.value, event) from None


def campaign_transition(status: CampaignStatus, event: str) -> CampaignStatus:
    try:
        return CAMPAIGN_TRANSITIONS[(status, event)]
    except KeyError:
        raise InvalidTransition("campaign", status.value, event) from None


class DraftState(StrEnum):
    """A message's life::

    pending_approval ──approve──▶ approved ──claim──▶ sending ──sent──▶ sent
           │  ▲                    │   │                 ├──fail──▶ failed
           │  └──edit (stays)      │   └──cancel         └──unknown──▶ needs_attention
           ├──reject──▶ rejected   ▼
           └──cancel──▶ cancelled (enrollment stopped before it went out)
    """

    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    NEEDS_ATTENTION = "needs_attention"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


DRAFT_TRANSITIONS: dict[tuple[DraftState, str], DraftState] = {
    (DraftState.PENDING_APPROVAL, "approve"): DraftState.APPROVED,
    (DraftState.PENDING_APPROVAL, "edit"): DraftState.PENDING_APPROVAL,
    (DraftState.PENDING_APPROVAL, "reject"): DraftState.REJECTED,
    (DraftState.PENDING_APPROVAL, "cancel"): DraftState.CANCELLED,
    (DraftState.APPROVED, "approve"): DraftState.APPROVED,  # approving twice is harmless
    (DraftState.APPROVED, "claim"): DraftState.SENDING,
    (DraftState.APPROVED, "cancel"): DraftState.CANCELLED,
    (DraftState.APPROVED, "reject"): DraftState.REJECTED,
    (DraftState.SENDING, "sent"): DraftState.SENT,
    (DraftState.SENDING, "fail"): DraftState.FAILED,
    (DraftState.SENDING, "unknown"): DraftState.NEEDS_ATTENTION,
    (DraftState.SENDING, "release"): DraftState.APPROVED,
    (DraftState.NEEDS_ATTENTION, "sent"): DraftState.SENT,
    (DraftState.NEEDS_ATTENTION, "resend"): DraftState.APPROVED,  # a person says it never arrived
    (DraftState.NEEDS_ATTENTION, "cancel"): DraftState.CANCELLED,
}

# A draft in one of these states may still go out: stopping an enrollment cancels them.
OPEN_DRAFT_STATES = frozenset({DraftState.PENDING_APPROVAL, DraftState.APPROVED})


def draft_transition(state: DraftState, event: str) -> DraftState:
    try:
        return DRAFT_TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition("draft", state.value, event) from None
