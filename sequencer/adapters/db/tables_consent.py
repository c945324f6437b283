"""The consent ledger (revision 0011): every grant or revocation to name a referrer, audited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sequencer.adapters.db.tables import EMAIL_LENGTH, Base
from sequencer.adapters.db.types import StrEnumType, UTCDateTime
from sequencer.core.naming import Via


class ConsentEntry(Base):
    """One change; the newest that applies wins (``core.naming.NamingGate``). Append-only."""

    __tablename__ = "consent_changes"
    __table_args__ = (Index("ix_consent_changes_referrer_id", "referrer_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    referrer_id: Mapped[str] = mapped_column(String(200))
    prospect_key: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH))  # None: everyone
    granted: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    via: Mapped[Via] = mapped_column(StrEnumType(Via, length=20))
    note: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
