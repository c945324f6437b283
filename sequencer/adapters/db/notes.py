"""Queries about notes to referrers (``DraftKind.NOTE``) and whom they thank. Mixed into
SqlRepository; every lookup by referrer goes through ``ix_note_mentions_referrer_key``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sequencer.adapters.db.tables import Draft
from sequencer.adapters.db.tables_notes import NoteMention
from sequencer.core.ports import DraftRecord
from sequencer.core.states import DraftKind, DraftState

DRAFTS = cast(Table, Draft.__table__)
MENTIONS = cast(Table, NoteMention.__table__)
_COLUMNS = tuple(DRAFTS.c[name] for name in DraftRecord.__dataclass_fields__)
# A note that may still be changed (it names one more prospect): not yet claimed by a sender.
_OPEN = (DraftState.PENDING_APPROVAL, DraftState.APPROVED)
# A note that went out, or may have (its outcome is unknown): the window starts there.
_GONE = (DraftState.SENDING, DraftState.SENT, DraftState.NEEDS_ATTENTION)


class NoteQueries:
    session: Session

    def note_for(self, enrollment_id: int) -> int | None:
        stmt = select(MENTIONS.c.draft_id).where(MENTIONS.c.enrollment_id == enrollment_id)
        return self.session.execute(stmt).scalar_one_or_none()

    def note_mentions(self, draft_id: int) -> list[int]:
        stmt = (
            select(MENTIONS.c.enrollment_id)
            .where(MENTIONS.c.draft_id == draft_id)
            .order_by(MENTIONS.c.id)
        )
        return list(self.session.execute(stmt).scalars())

    def add_note_mention(
        self, draft_id: int, enrollment_id: int, referrer_key: str, now: datetime
    ) -> bool:
        """``INSERT … ON CONFLICT (enrollment_id) DO NOTHING``: racing inboxes thank once."""
        dialect = self.session.get_bind().dialect.name
        insert_: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = (
            insert_(MENTIONS)
            .values(
                draft_id=draft_id,
                enrollment_id=enrollment_id,
                referrer_key=referrer_key,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["enrollment_id"])
            .returning(MENTIONS.c.id)
        )
        return self.session.execute(stmt).first() is not None

    def open_note_to(self, campaign_id: int, referrer_key: str) -> DraftRecord | None:
        stmt = (
            select(*_COLUMNS)
            .where(
                DRAFTS.c.id.in_(
                    select(MENTIONS.c.draft_id).where(MENTIONS.c.referrer_key == referrer_key)
                ),
                DRAFTS.c.campaign_id == campaign_id,
                DRAFTS.c.kind == DraftKind.NOTE,
                DRAFTS.c.state.in_(_OPEN),
            )
            .order_by(DRAFTS.c.id)
            .limit(1)
        )
        row = self.session.execute(stmt).first()
        return None if row is None else DraftRecord(*cast(tuple[Any, ...], row))

    def last_note_to(self, referrer_key: str, exclude_draft: int | None = None) -> datetime | None:
        stmt = select(func.max(func.coalesce(DRAFTS.c.sent_at, DRAFTS.c.claimed_at))).where(
            DRAFTS.c.id.in_(
                select(MENTIONS.c.draft_id).where(MENTIONS.c.referrer_key == referrer_key)
            ),
            DRAFTS.c.kind == DraftKind.NOTE,
            DRAFTS.c.state.in_(_GONE),
        )
        if exclude_draft is not None:
            stmt = stmt.where(DRAFTS.c.id != exclude_draft)
        value = self.session.execute(stmt).scalar_one_or_none()
        return cast(datetime | None, value)
