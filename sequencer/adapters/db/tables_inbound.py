"""Inbound mail, IMAP checkpoints, handoffs to reps and webhook deliveries (revision 0005)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from sequencer.adapters.db.tables import EMAIL_LENGTH, Base
from sequencer.adapters.db.types import JSONDocument, UTCDateTime

_ZERO = text("0")


class ImapCheckpoint(Base):
    """How far a mailbox folder has been read: advanced only after its messages are stored."""

    __tablename__ = "imap_checkpoints"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)  # user@host:port/folder
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    polled_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboundMessage(Base):
    """A fetched message, raw bytes first; parsed and classified afterwards (never dropped)."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        Index("ix_inbound_messages_status", "status"),
        Index("ix_inbound_messages_enrollment_id", "enrollment_id"),
        Index("ix_inbound_messages_from_addr", "from_addr"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)  # Message-ID or sha256
    mailbox_key: Mapped[str] = mapped_column(String(400))
    uid: Mapped[int | None] = mapped_column(BigInteger)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20))  # new | handled | unmatched | unhandled
    klass: Mapped[str | None] = mapped_column(String(20))
    intent: Mapped[str | None] = mapped_column(String(20))
    evidence: Mapped[list[Any]] = mapped_column(JSONDocument)
    extracted: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    from_addr: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH))
    subject: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(400))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    matched_by: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # rev. 0010: a person marked an unhandled/unmatched message handled
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reviewed_by: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH))


class Handoff(Base):
    """An engaged prospect routed back to the rep, with what they wrote."""

    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_rep_email_state", "rep_email", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inbound_id: Mapped[int] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), unique=True
    )
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    rep_email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    intent: Mapped[str] = mapped_column(String(20))
    reply_text: Mapped[str] = mapped_column(Text)
    redirect_to: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20))  # open | handled
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notice_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # rev. 0009
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handled_by: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH))


class WebhookDelivery(Base):
    """One JSON POST about a handoff: retried with backoff, every outcome recorded."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handoff_id: Mapped[int] = mapped_column(
        ForeignKey("handoffs.id", ondelete="CASCADE"), unique=True
    )
    url_env: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(20))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=_ZERO)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Revision 0013: the env var with this endpoint's signing secret (routing.webhook_secret_env).
    secret_env: Mapped[str | None] = mapped_column(String(200))


class ReferrerFlag(Base):
    """A prospect said they don't know the referrer: the relationship data needs a look."""

    __tablename__ = "referrer_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    referrer_id: Mapped[str] = mapped_column(String(200))
    prospect_email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Revision 0011: open until a person clears or confirms it (``refseq flags``).
    state: Mapped[str] = mapped_column(String(20), server_default=text("'open'"))
    resolved_by: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
