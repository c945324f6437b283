"""SQLAlchemy 2 typed models. Enums are stored by value; every constraint has a predictable name.

Change a model here, then add a revision under ``migrations/versions/`` (the migration test
fails while the two disagree).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sequencer.adapters.db.types import JSONDocument, StrEnumType, UTCDateTime
from sequencer.core.states import CampaignStatus, DraftKind, DraftState, EnrollmentState

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EMAIL_LENGTH = 320  # RFC 5321: 64 local + @ + 255 domain
# Draft has a column named ``text``, which hides sqlalchemy.text inside its class body.
_FIRST_REVISION = text("1")
_ZERO = text("0")
_STEP_KIND = text("'step'")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[CampaignStatus] = mapped_column(StrEnumType(CampaignStatus))
    source: Mapped[str] = mapped_column(Text)
    spec_hash: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("campaign_id", "prospect_key"),
        Index("ix_enrollments_state_next_due_at", "state", "next_due_at"),
        Index("ix_enrollments_state_paused_until", "state", "paused_until"),  # rev. 0007
        Index("ix_enrollments_prospect_key", "prospect_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    prospect_key: Mapped[str] = mapped_column(String(EMAIL_LENGTH))  # casefolded email
    prospect_email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    prospect: Mapped[dict[str, str]] = mapped_column(JSONDocument)
    referrer: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    referral: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    other_referrals: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    temperature: Mapped[str] = mapped_column(String(16))
    sequence: Mapped[str] = mapped_column(String(200))
    may_name_referrer: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[EnrollmentState] = mapped_column(StrEnumType(EnrollmentState))
    hold_reason: Mapped[str | None] = mapped_column(Text)
    steps_done: Mapped[int] = mapped_column(Integer, default=0, server_default=_ZERO)
    # Soft bounces in a row since the last delivery (three stop the enrollment). Rev. 0005.
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0, server_default=_ZERO)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SuppressionEntry(Base):
    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # a casefolded address, or "@domain"
    value: Mapped[str] = mapped_column(String(EMAIL_LENGTH), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Draft(Base):
    """One step of one enrollment, rendered: what the rep approves and the sender sends."""

    __tablename__ = "drafts"
    __table_args__ = (
        # At most one draft per (enrollment, step), enforced by the database: two drafting
        # ticks racing on the same step cannot both insert (see SqlRepository.add_draft).
        UniqueConstraint("enrollment_id", "step_index"),
        Index("ix_drafts_state_due_at", "state", "due_at"),
        Index("ix_drafts_campaign_id_state_due_at", "campaign_id", "state", "due_at"),  # 0008
        Index("ix_drafts_mailbox_key_sent_at", "mailbox_key", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    # Denormalised from the enrollment: the queue filters by campaign without a join.
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column(Integer)
    template: Mapped[str] = mapped_column(String(200))
    state: Mapped[DraftState] = mapped_column(StrEnumType(DraftState, length=20))
    to_email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    subject: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSONDocument)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # +1 on every change: the compare-and-set token of SqlRepository.update_draft.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default=_FIRST_REVISION)
    decided_by: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The outbox columns (revision 0003): written before and after the SMTP effect.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=_ZERO)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mailbox_key: Mapped[str | None] = mapped_column(String(400))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Revision 0014: the claim's moment on the database's clock (the sweeper's staleness).
    claim_db_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    data_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Revision 0006: the message bytes (without Date:) built at draft time and on every edit;
    # the sender adds Date: and sends exactly these. NULL: built at send time (older drafts).
    message: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Revision 0012: a step of the sequence, or a note to the referrer (step_index -1).
    kind: Mapped[DraftKind] = mapped_column(
        StrEnumType(DraftKind, length=10), default=DraftKind.STEP, server_default=_STEP_KIND
    )


class Mailbox(Base):
    """One sending mailbox (SMTP account), shared by every campaign that uses it.

    Its row is the lock that serialises claims for the mailbox, so ``min_gap`` and the rolling
    ``daily_cap`` hold across workers and machines.
    """

    __tablename__ = "mailboxes"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    next_send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DraftEventEntry(Base):
    """The audit trail of a draft: who did what, when, with the fields before and after."""

    __tablename__ = "draft_events"
    __table_args__ = (Index("ix_draft_events_draft_id", "draft_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    action: Mapped[str] = mapped_column(String(40))
    before: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    after: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


# Rep accounts for the web queue (revision 0004). Imported here, not at the top, so this block
# stays an append-only addition; services.accounts is pure (stdlib + email-validator).
from sequencer.services.accounts import Role  # noqa: E402


class RepEntry(Base):
    """A person who signs in to the web queue. ``email`` is stored casefolded."""

    __tablename__ = "reps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(StrEnumType(Role, length=10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Revision 0013: +1 on sign-out; part of every session cookie's version (revocation).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=_ZERO)


class LoginToken(Base):
    """A one-time sign-in link: only the SHA-256 of the token is kept."""

    __tablename__ = "login_tokens"
    __table_args__ = (Index("ix_login_tokens_rep_id", "rep_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    rep_id: Mapped[int] = mapped_column(ForeignKey("reps.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
