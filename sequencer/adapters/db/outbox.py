"""The outbox queries: the database is the send queue. Mixed into SqlRepository."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sequencer.adapters.db.clock import db_ago, db_now
from sequencer.adapters.db.tables import Draft, Mailbox
from sequencer.core.ports import DraftEvent, DraftRecord, DraftView, MailboxState, SendRecheck
from sequencer.core.states import OPEN_DRAFT_STATES, CampaignStatus, DraftState

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
        count, oldest = self._sent_last_24h(key, now)
        return MailboxState(key, next_send_at, count, oldest)

    def _sent_last_24h(self, key: str, now: datetime) -> tuple[int, datetime | None]:
        """How many drafts of this mailbox were sent (or claimed, or may have been sent) in the
        last 24 h, and the oldest such moment (``coalesce(sent_at, claimed_at)``).

        Split so that each half is an index range scan on (mailbox_key, sent_at): the sent ones
        by ``sent_at``, and the few not sent (yet) by ``claimed_at``. A single ``coalesce`` is
        not indexable and would read every draft the mailbox ever sent, at every claim.
        """
        since = now - timedelta(hours=24)
        sent_n, sent_min = self.session.execute(_SENT_SINCE, {"key": key, "since": since}).one()
        open_n, open_min = self.session.execute(_CLAIMED_SINCE, {"key": key, "since": since}).one()
        oldest = [m for m in (_aware(sent_min), _aware(open_min)) if m is not None]
        return int(sent_n) + int(open_n), min(oldest) if oldest else None

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

    def claim_drafts(
        self, drafts: list[tuple[int, int]], key: str, now: datetime
    ) -> list[DraftRecord]:
        from sequencer.adapters.db.repository import _DRAFT_COLUMNS, _draft_record

        if not drafts:
            return []
        stmt = (
            update(DRAFTS)
            .where(
                DRAFTS.c.id.in_([draft_id for draft_id, _ in drafts]),  # the primary key
                tuple_(DRAFTS.c.id, DRAFTS.c.revision).in_(drafts),
                DRAFTS.c.state == DraftState.APPROVED,
            )
            .values(
                state=DraftState.SENDING,
                claimed_at=now,
                claim_db_at=db_now(self.session),  # what the sweeper judges staleness by
                mailbox_key=key,
                attempts=DRAFTS.c.attempts + 1,
                data_started_at=None,
                revision=DRAFTS.c.revision + 1,
                updated_at=now,
            )
            .returning(*_DRAFT_COLUMNS)
        )
        order = {draft_id: i for i, (draft_id, _) in enumerate(drafts)}
        rows = [_draft_record(row) for row in self.session.execute(stmt).all()]
        return sorted(rows, key=lambda d: order[d.id])

    def add_draft_events(self, events: list[DraftEvent]) -> None:
        from sequencer.adapters.db.repository import _EVENT_COLUMNS, _EVENT_INSERT

        if events:
            rows = [{c.name: getattr(e, c.name) for c in _EVENT_COLUMNS} for e in events]
            self.session.execute(_EVENT_INSERT, rows)

    def recheck_before_send(
        self, enrollment_id: int, campaign_id: int, address: str
    ) -> SendRecheck | None:
        from sequencer.adapters.db.repository import (
            _RECORD_COLUMNS,
            _enrollment_record,
            normalize_suppression,
        )

        key = normalize_suppression(address)
        params = {
            "enrollment_id": enrollment_id,
            "campaign_id": campaign_id,
            "address": key,
            "domain": "@" + key.rpartition("@")[2],
            "sender": address.casefold(),
        }
        row = self.session.execute(_recheck_statement(), params).one_or_none()
        if row is None:
            return None
        values = tuple(row)
        n = len(_RECORD_COLUMNS)
        raw_status = values[n]
        return SendRecheck(
            enrollment=_enrollment_record(cast(Any, values[:n])),
            campaign_status=None if raw_status is None else CampaignStatus(raw_status),
            suppressed=bool(values[n + 1]),
            unread=bool(values[n + 2]),
        )

    def latest_pending_inbound(self, addresses: list[str]) -> dict[str, datetime]:
        from sequencer.adapters.db.tables_inbound import InboundMessage

        if not addresses:
            return {}
        inbound = cast(Table, InboundMessage.__table__)
        rows = self.session.execute(
            select(inbound.c.from_addr, func.max(inbound.c.received_at))
            .where(inbound.c.from_addr.in_(sorted(set(addresses))), inbound.c.status == "new")
            .group_by(inbound.c.from_addr)
        ).all()
        return {a: at for a, latest in rows if (at := _aware(latest)) is not None}

    def stuck_sending(self, stale_after: timedelta) -> list[DraftRecord]:
        """SENDING drafts claimed more than ``stale_after`` ago by the database's clock (never
        the caller's: see ``clock.py``); a claim from before revision 0014 by its claimed_at."""
        from sequencer.adapters.db.repository import _DRAFT_COLUMNS, _draft_record

        claimed = func.coalesce(DRAFTS.c.claim_db_at, DRAFTS.c.claimed_at)
        stmt = select(*_DRAFT_COLUMNS).where(
            DRAFTS.c.state == DraftState.SENDING, claimed < db_ago(self.session, stale_after)
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

    def campaigns_with_due_drafts(self, now: datetime) -> set[int]:
        # Per campaign, does one approved draft exist that is due? One seek each on the
        # (campaign_id, state, due_at) index (revision 0008): what the dispatcher runs every
        # minute reads neither the whole drafts table nor every approved draft.
        from sequencer.adapters.db.repository import CAMPAIGNS

        due = exists().where(
            DRAFTS.c.campaign_id == CAMPAIGNS.c.id,
            DRAFTS.c.state == DraftState.APPROVED,
            DRAFTS.c.due_at <= now,
        )
        rows = self.session.execute(select(CAMPAIGNS.c.id).where(due))
        return {int(campaign_id) for (campaign_id,) in rows}


# sent_at is only ever set together with SENT (a terminal state), so this half needs no state
# filter: SQLite and PostgreSQL count it from the (mailbox_key, sent_at) index alone, without
# reading a row per message the mailbox sent in the last 24 h.
_SENT_SINCE = select(func.count(), func.min(DRAFTS.c.sent_at)).where(
    DRAFTS.c.mailbox_key == bindparam("key"),
    DRAFTS.c.sent_at > bindparam("since", type_=DRAFTS.c.sent_at.type),
)
_CLAIMED_SINCE = select(func.count(), func.min(DRAFTS.c.claimed_at)).where(
    DRAFTS.c.mailbox_key == bindparam("key"),
    DRAFTS.c.sent_at.is_(None),
    DRAFTS.c.claimed_at > bindparam("since", type_=DRAFTS.c.claimed_at.type),
    DRAFTS.c.state.in_(_COUNTED),
)


@cache
def _recheck_statement() -> Any:
    """The enrollment, its campaign's status, whether the address or its domain is suppressed,
    and whether unread mail from it arrived after the enrollment: one row, one round trip."""
    from sequencer.adapters.db.repository import (
        _RECORD_COLUMNS,
        CAMPAIGNS,
        ENROLLMENTS,
        SUPPRESSIONS,
    )
    from sequencer.adapters.db.tables_inbound import InboundMessage

    inbound = cast(Table, InboundMessage.__table__)
    status = select(CAMPAIGNS.c.status).where(CAMPAIGNS.c.id == bindparam("campaign_id"))
    suppressed = exists().where(
        SUPPRESSIONS.c.value.in_([bindparam("address"), bindparam("domain")])
    )
    unread = exists().where(
        inbound.c.from_addr == bindparam("sender"),
        inbound.c.status == "new",
        inbound.c.received_at > ENROLLMENTS.c.created_at,
    )
    return select(
        *_RECORD_COLUMNS,
        status.scalar_subquery(),
        suppressed.label("suppressed"),
        unread.label("unread"),
    ).where(ENROLLMENTS.c.id == bindparam("enrollment_id"))


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # SQLite aggregates come back naive (stored as UTC)
