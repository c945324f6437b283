"""The outbox queries: the database is the send queue. Mixed into SqlRepository."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sequencer.adapters.db.tables import Draft, Mailbox
from sequencer.core.ports import DraftRecord, DraftView, MailboxState
from sequencer.core.states import OPEN_DRAFT_STATES, DraftState

MAILBOXES = cast(Table, Mailbox.__table__)
DRAFTS = cast(Table, Draft.__table__)
# States that count against a mailbox's rolling cap: anything that was (or may have been) sent.
_COUNTED = (DraftState.SENDING, DraftState.SENT, DraftState.NEEDS_ATTENTION)


class OutboxQueries:
    session: Session

    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def lock_mailbox(self, key: str, now: datetime) -> MailboxState:
        """Lock the mailbox row for this transaction and read its send budget.

        PostgreSQL: ``SELECT … FOR UPDATE``. SQLite: an UPDATE first, so the transaction takes
        the database's write lock before it reads (a deferred read would see a stale snapshot).
        """
        insert_ = postgresql.insert if self._dialect() == "postgresql" else sqlite.insert
        self.session.execute(
            insert_(MAILBOXES)
            .values(key=key, next_send_at=None, updated_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        stmt: Any = select(MAILBOXES.c.next_send_at).where(MAILBOXES.c.key == key)
        if self._dialect() == "postgresql":
            stmt = stmt.with_for_update()
        else:
            self.session.execute(
                update(MAILBOXES).where(MAILBOXES.c.key == key).values(updated_at=now)
            )
        next_send_at = self.session.execute(stmt).scalar_one()
        moment = func.coalesce(DRAFTS.c.sent_at, DRAFTS.c.claimed_at)
        count, oldest = self.session.execute(
            select(func.count(), func.min(moment)).where(
                DRAFTS.c.mailbox_key == key,
                DRAFTS.c.state.in_(_COUNTED),
                moment > now - timedelta(hours=24),
            )
        ).one()
        return MailboxState(key, next_send_at, int(count), _aware(oldest))

    def set_mailbox_next(self, key: str, next_send_at: datetime, now: datetime) -> None:
        self.session.execute(
            update(MAILBOXES)
            .where(MAILBOXES.c.key == key)
            .values(next_send_at=next_send_at, updated_at=now)
        )

    def mailbox_states(self, now: datetime) -> list[MailboxState]:
        keys = self.session.execute(select(MAILBOXES.c.key, MAILBOXES.c.next_send_at)).all()
        out = []
        moment = func.coalesce(DRAFTS.c.sent_at, DRAFTS.c.claimed_at)
        for key, next_send_at in keys:
            count, oldest = self.session.execute(
                select(func.count(), func.min(moment)).where(
                    DRAFTS.c.mailbox_key == key,
                    DRAFTS.c.state.in_(_COUNTED),
                    moment > now - timedelta(hours=24),
                )
            ).one()
            out.append(MailboxState(key, next_send_at, int(count), _aware(oldest)))
        return out

    def claimable(self, campaign_ids: list[int], now: datetime, limit: int) -> list[DraftView]:
        """Approved drafts of these campaigns that are due, oldest first; rows another sender
        has locked are skipped (PostgreSQL ``FOR UPDATE SKIP LOCKED``)."""
        from sequencer.adapters.db.repository import _draft_view, _views_query

        if not campaign_ids:
            return []
        stmt = (
            _views_query()
            .where(
                DRAFTS.c.campaign_id.in_(campaign_ids),
                DRAFTS.c.state == DraftState.APPROVED,
                DRAFTS.c.due_at <= now,
                or_(DRAFTS.c.next_attempt_at.is_(None), DRAFTS.c.next_attempt_at <= now),
            )
            .order_by(DRAFTS.c.due_at, DRAFTS.c.id)
            .limit(limit)
        )
        if self._dialect() == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=DRAFTS)
        return [_draft_view(row) for row in self.session.execute(stmt).all()]

    def stuck_sending(self, claimed_before: datetime) -> list[DraftRecord]:
        from sequencer.adapters.db.repository import _DRAFT_COLUMNS, _draft_record

        stmt = select(*_DRAFT_COLUMNS).where(
            DRAFTS.c.state == DraftState.SENDING, DRAFTS.c.claimed_at < claimed_before
        )
        return [_draft_record(row) for row in self.session.execute(stmt).all()]

    def open_drafts_of(self, enrollment_id: int) -> list[DraftRecord]:
        from sequencer.adapters.db.repository import _DRAFT_COLUMNS, _draft_record

        stmt = select(*_DRAFT_COLUMNS).where(
            DRAFTS.c.enrollment_id == enrollment_id,
            DRAFTS.c.state.in_(sorted(OPEN_DRAFT_STATES)),
        )
        return [_draft_record(row) for row in self.session.execute(stmt).all()]

    def next_due_by_campaign(self) -> dict[int, datetime]:
        """Per campaign id, the earliest next step of its active enrollments."""
        from sequencer.adapters.db.tables import Enrollment
        from sequencer.core.states import EnrollmentState

        enrollments = cast(Table, Enrollment.__table__)
        rows = self.session.execute(
            select(enrollments.c.campaign_id, func.min(enrollments.c.next_due_at))
            .where(enrollments.c.state == EnrollmentState.ACTIVE)
            .group_by(enrollments.c.campaign_id)
        ).all()
        return {cid: at for cid, at in ((c, _aware(a)) for c, a in rows) if at is not None}

    def outbox_counts(self, now: datetime) -> dict[int, dict[str, int]]:
        """Per campaign id: drafts per state, plus ``due`` (approved and due now)."""
        out: dict[int, dict[str, int]] = {}
        rows = self.session.execute(
            select(DRAFTS.c.campaign_id, DRAFTS.c.state, func.count()).group_by(
                DRAFTS.c.campaign_id, DRAFTS.c.state
            )
        ).all()
        for campaign_id, state, n in rows:
            out.setdefault(campaign_id, {})[DraftState(state).value] = int(n)
        due = self.session.execute(
            select(DRAFTS.c.campaign_id, func.count())
            .where(DRAFTS.c.state == DraftState.APPROVED, DRAFTS.c.due_at <= now)
            .group_by(DRAFTS.c.campaign_id)
        ).all()
        for campaign_id, n in due:
            out.setdefault(campaign_id, {})["due"] = int(n)
        return out


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # SQLite aggregates come back naive (stored as UTC)
