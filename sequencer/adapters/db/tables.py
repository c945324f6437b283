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
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sequencer.adapters.db.types import JSONDocument, StrEnumType, UTCDateTime
from sequencer.core.states import CampaignStatus, EnrollmentState

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EMAIL_LENGTH = 320  # RFC 5321: 64 local + @ + 255 domain


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
    steps_done: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
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
