"""Which prospects each note to a referrer thanks them for (revision 0012)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from sequencer.adapters.db.tables import EMAIL_LENGTH, Base
from sequencer.adapters.db.types import UTCDateTime


class NoteMention(Base):
    """One prospect (enrollment) named in one note: a prospect is thanked for at most once
    (``enrollment_id`` is unique), and a note may name several prospects of one referrer."""

    __tablename__ = "note_mentions"
    __table_args__ = (Index("ix_note_mentions_referrer_key", "referrer_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int] = mapped_column(
        ForeignKey("enrollments.id", ondelete="CASCADE"), unique=True
    )
    referrer_key: Mapped[str] = mapped_column(String(EMAIL_LENGTH))  # casefolded address
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
