"""What the inbox needs to trust a message and to put the rest in front of a person.

Mixed into SqlRepository: our latest message to an address (bounces, auto-replies and
opt-outs outside a thread are acted on only after it), and the review list of inbound
messages nobody acted on.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sequencer.adapters.db.inbox import _INBOUND_COLUMNS, DRAFTS, ENROLLMENTS, INBOUND, _row
from sequencer.core.ports import DraftRecord, InboundRecord

NEEDS_PERSON = ("unhandled", "unmatched")
REVIEW_LIMIT = 1000  # the list a person reads; older ones remain in `refseq inbox`


class InboundReviewQueries:
    session: Session

    def last_sent_to(self, address: str, not_after: datetime) -> DraftRecord | None:
        from sequencer.adapters.db.repository import _DRAFT_COLUMNS, _draft_record

        key = address.casefold()
        went = func.coalesce(DRAFTS.c.sent_at, DRAFTS.c.data_started_at)
        row = self.session.execute(
            select(*_DRAFT_COLUMNS)
            .join(ENROLLMENTS, ENROLLMENTS.c.id == DRAFTS.c.enrollment_id)
            .where(
                ENROLLMENTS.c.prospect_key == key,  # indexed
                func.lower(DRAFTS.c.to_email) == key,  # not a note to someone else
                went.is_not(None),
                went <= not_after,
            )
            .order_by(went.desc(), DRAFTS.c.id.desc())
            .limit(1)
        ).one_or_none()
        return None if row is None else _draft_record(row)

    def inbound_for_review(self) -> list[InboundRecord]:
        stmt = (
            select(*_INBOUND_COLUMNS)
            .where(INBOUND.c.status.in_(NEEDS_PERSON), INBOUND.c.reviewed_at.is_(None))
            .order_by(INBOUND.c.received_at.desc(), INBOUND.c.id.desc())
            .limit(REVIEW_LIMIT)
        )
        return [_row(InboundRecord, r) for r in self.session.execute(stmt).all()]

    def mark_inbound_reviewed(self, inbound_id: int, by: str, now: datetime) -> bool:
        done = self.session.execute(
            update(INBOUND)
            .where(
                INBOUND.c.id == inbound_id,
                INBOUND.c.status.in_(NEEDS_PERSON),
                INBOUND.c.reviewed_at.is_(None),
            )
            .values(reviewed_at=now, reviewed_by=by[:320])
        )
        return bool(getattr(done, "rowcount", 0))
