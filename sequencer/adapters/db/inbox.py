"""Inbound mail, checkpoints, handoffs and webhooks on SQLAlchemy. Mixed into SqlRepository."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sequencer.adapters.db.tables import Draft, Enrollment
from sequencer.adapters.db.tables_inbound import (
    Handoff,
    ImapCheckpoint,
    InboundMessage,
    ReferrerFlag,
    WebhookDelivery,
)
from sequencer.core.ports import (
    Checkpoint,
    DraftRecord,
    EnrollmentRecord,
    HandoffRecord,
    InboundRecord,
    WebhookRecord,
)
from sequencer.core.states import LIVE_ENROLLMENT_STATES, EnrollmentState

CHECKPOINTS = cast(Table, ImapCheckpoint.__table__)
INBOUND = cast(Table, InboundMessage.__table__)
HANDOFFS = cast(Table, Handoff.__table__)
WEBHOOKS = cast(Table, WebhookDelivery.__table__)
FLAGS = cast(Table, ReferrerFlag.__table__)
DRAFTS = cast(Table, Draft.__table__)
ENROLLMENTS = cast(Table, Enrollment.__table__)
_INBOUND_COLUMNS = tuple(INBOUND.c[f.name] for f in fields(InboundRecord))
_HANDOFF_COLUMNS = tuple(HANDOFFS.c[f.name] for f in fields(HandoffRecord))
_WEBHOOK_COLUMNS = tuple(WEBHOOKS.c[f.name] for f in fields(WebhookRecord))
INBOUND_CHANGES = frozenset(
    {
        "status",
        "klass",
        "intent",
        "evidence",
        "extracted",
        "from_addr",
        "subject",
        "message_id",
        "enrollment_id",
        "matched_by",
        "error",
        "handled_at",
    }
)
HANDOFF_CHANGES = frozenset(
    {"state", "notified_at", "notice_claimed_at", "handled_at", "handled_by"}
)
WEBHOOK_CHANGES = frozenset(
    {"status", "attempts", "last_status_code", "last_error", "next_attempt_at", "delivered_at"}
)


def _row(cls: Any, row: Any) -> Any:
    return cls(*cast(tuple[Any, ...], row))


def _checked(changes: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    return changes


class InboxQueries:
    session: Session

    def _insert(self) -> Any:
        dialect = self.session.get_bind().dialect.name
        return postgresql.insert if dialect == "postgresql" else sqlite.insert

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self, key: str) -> Checkpoint | None:
        row = self.session.execute(
            select(CHECKPOINTS.c.uidvalidity, CHECKPOINTS.c.last_uid).where(
                CHECKPOINTS.c.key == key
            )
        ).one_or_none()
        return None if row is None else Checkpoint(int(row[0]), int(row[1]))

    def save_checkpoint(self, key: str, checkpoint: Checkpoint, now: datetime) -> None:
        values = {
            "uidvalidity": checkpoint.uidvalidity,
            "last_uid": checkpoint.last_uid,
            "polled_at": now,
        }
        stmt = self._insert()(CHECKPOINTS).values(key=key, **values)
        self.session.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=values))

    def last_polled(self, key: str) -> datetime | None:
        return cast(
            datetime | None,
            self.session.execute(
                select(CHECKPOINTS.c.polled_at).where(CHECKPOINTS.c.key == key)
            ).scalar_one_or_none(),
        )

    # -- inbound messages -------------------------------------------------------------------

    def add_inbound(
        self,
        dedupe_key: str,
        mailbox_key: str,
        uid: int | None,
        raw: bytes,
        received_at: datetime,
        now: datetime,
        from_addr: str | None = None,
    ) -> int | None:
        stmt = (
            self._insert()(INBOUND)
            .values(
                dedupe_key=dedupe_key,
                mailbox_key=mailbox_key,
                uid=uid,
                raw=raw,
                received_at=received_at,
                from_addr=from_addr,
                fetched_at=now,
                status="new",
                evidence=[],
                extracted={},
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(INBOUND.c.id)
        )
        return cast(int | None, self.session.execute(stmt).scalar_one_or_none())

    def inbound_to_process(self, limit: int) -> list[tuple[InboundRecord, bytes]]:
        rows = self.session.execute(
            select(*_INBOUND_COLUMNS, INBOUND.c.raw)
            .where(INBOUND.c.status == "new")
            .order_by(INBOUND.c.received_at, INBOUND.c.id)
            .limit(limit)
        ).all()
        return [(InboundRecord(*tuple(r)[:-1]), bytes(r[-1])) for r in rows]

    def get_inbound(self, inbound_id: int) -> tuple[InboundRecord, bytes] | None:
        r = self.session.execute(
            select(*_INBOUND_COLUMNS, INBOUND.c.raw).where(INBOUND.c.id == inbound_id)
        ).one_or_none()
        return None if r is None else (InboundRecord(*tuple(r)[:-1]), bytes(r[-1]))

    def update_inbound(self, inbound_id: int, **changes: Any) -> None:
        self.session.execute(
            update(INBOUND)
            .where(INBOUND.c.id == inbound_id)
            .values(**_checked(changes, INBOUND_CHANGES))
        )

    def list_inbound(self, statuses: Iterable[str] | None = None) -> list[InboundRecord]:
        stmt = select(*_INBOUND_COLUMNS).order_by(INBOUND.c.received_at.desc(), INBOUND.c.id.desc())
        if statuses is not None:
            stmt = stmt.where(INBOUND.c.status.in_(sorted(set(statuses))))
        return [_row(InboundRecord, r) for r in self.session.execute(stmt).all()]

    def inbound_since(self, prospect_key: str, since: datetime, pending: bool = False) -> int:
        stmt = select(func.count()).where(
            INBOUND.c.from_addr == prospect_key, INBOUND.c.received_at > since
        )
        if pending:
            stmt = stmt.where(INBOUND.c.status == "new")
        return int(self.session.execute(stmt).scalar_one())

    # -- matching ---------------------------------------------------------------------------

    def draft_by_message_ids(self, message_ids: Iterable[str]) -> DraftRecord | None:
        from sequencer.adapters.db.repository import _DRAFT_COLUMNS, _draft_record

        ids = [m for m in message_ids if m]
        if not ids:
            return None
        row = self.session.execute(
            select(*_DRAFT_COLUMNS)
            .where(DRAFTS.c.message_id.in_(ids))
            .order_by(DRAFTS.c.id.desc())
            .limit(1)
        ).one_or_none()
        return None if row is None else _draft_record(row)

    def get_enrollment(self, enrollment_id: int) -> EnrollmentRecord | None:
        from sequencer.adapters.db.repository import _RECORD_COLUMNS, _enrollment_record

        row = self.session.execute(
            select(*_RECORD_COLUMNS).where(ENROLLMENTS.c.id == enrollment_id)
        ).one_or_none()
        return None if row is None else _enrollment_record(row)

    def live_enrollments_for(self, prospect_key: str) -> list[EnrollmentRecord]:
        from sequencer.adapters.db.repository import _RECORD_COLUMNS, _enrollment_record

        rows = self.session.execute(
            select(*_RECORD_COLUMNS)
            .where(
                ENROLLMENTS.c.prospect_key == prospect_key,
                ENROLLMENTS.c.state.in_(sorted(LIVE_ENROLLMENT_STATES)),
            )
            .order_by(ENROLLMENTS.c.id.desc())
        ).all()
        return [_enrollment_record(r) for r in rows]

    def active_naming_referrer(self, campaign_id: int, referrer_id: str) -> list[EnrollmentRecord]:
        """Filtered in SQL (the referrer's id inside its JSON snapshot), not by reading every
        active enrollment of the campaign: one flagged referrer costs the same in a campaign
        of 100k as in one of 100."""
        from sequencer.adapters.db.repository import _RECORD_COLUMNS, _enrollment_record

        rows = self.session.execute(
            select(*_RECORD_COLUMNS)
            .where(
                ENROLLMENTS.c.campaign_id == campaign_id,
                ENROLLMENTS.c.state == EnrollmentState.ACTIVE,
                ENROLLMENTS.c.may_name_referrer.is_(True),
                ENROLLMENTS.c.referrer["id"].as_string() == referrer_id,
            )
            .order_by(ENROLLMENTS.c.id)
        ).all()
        return [_enrollment_record(r) for r in rows]

    def live_enrollments_on_domain(self, domain: str) -> list[EnrollmentRecord]:
        from sequencer.adapters.db.repository import _RECORD_COLUMNS, _enrollment_record

        rows = self.session.execute(
            select(*_RECORD_COLUMNS)
            .where(
                ENROLLMENTS.c.prospect_key.like(f"%@{domain}"),
                ENROLLMENTS.c.state.in_(sorted(LIVE_ENROLLMENT_STATES)),
            )
            .limit(20)
        ).all()
        return [_enrollment_record(r) for r in rows]

    def paused_due(self, now: datetime) -> list[EnrollmentRecord]:
        from sequencer.adapters.db.repository import _RECORD_COLUMNS, _enrollment_record

        rows = self.session.execute(
            select(*_RECORD_COLUMNS).where(
                ENROLLMENTS.c.state == EnrollmentState.PAUSED, ENROLLMENTS.c.paused_until <= now
            )
        ).all()
        return [_enrollment_record(r) for r in rows]

    # -- handoffs, webhooks, flags ----------------------------------------------------------

    def add_handoff(self, handoff: HandoffRecord) -> HandoffRecord | None:
        values = {f.name: getattr(handoff, f.name) for f in fields(HandoffRecord) if f.name != "id"}
        stmt = (
            self._insert()(HANDOFFS)
            .values(values)
            .on_conflict_do_nothing(index_elements=["inbound_id"])
            .returning(*_HANDOFF_COLUMNS)
        )
        row = self.session.execute(stmt).one_or_none()
        return None if row is None else _row(HandoffRecord, row)

    def list_handoffs(
        self, rep_email: str | None = None, states: Iterable[str] = ("open",)
    ) -> list[HandoffRecord]:
        stmt = (
            select(*_HANDOFF_COLUMNS)
            .where(HANDOFFS.c.state.in_(sorted(set(states))))
            .order_by(HANDOFFS.c.created_at.desc(), HANDOFFS.c.id.desc())
        )
        rows = [_row(HandoffRecord, r) for r in self.session.execute(stmt).all()]
        if rep_email is not None:
            rep = rep_email.strip().casefold()
            rows = [h for h in rows if h.rep_email.casefold() == rep]
        return rows

    def update_handoff(self, handoff_id: int, **changes: Any) -> None:
        self.session.execute(
            update(HANDOFFS)
            .where(HANDOFFS.c.id == handoff_id)
            .values(**_checked(changes, HANDOFF_CHANGES))
        )

    def claim_handoff_notice(self, handoff_id: int, now: datetime, stale_before: datetime) -> bool:
        h = HANDOFFS.c
        result = self.session.execute(
            update(HANDOFFS)
            .where(
                h.id == handoff_id,
                h.notified_at.is_(None),
                or_(h.notice_claimed_at.is_(None), h.notice_claimed_at < stale_before),
            )
            .values(notice_claimed_at=now)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def add_webhook(
        self,
        handoff_id: int,
        url_env: str,
        payload: dict[str, Any],
        now: datetime,
        secret_env: str | None = None,
    ) -> None:
        self.session.execute(
            insert(WEBHOOKS).values(
                handoff_id=handoff_id,
                url_env=url_env,
                secret_env=secret_env,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )

    def pending_webhooks(self, now: datetime) -> list[WebhookRecord]:
        rows = self.session.execute(
            select(*_WEBHOOK_COLUMNS)
            .where(WEBHOOKS.c.status == "pending", WEBHOOKS.c.next_attempt_at <= now)
            .order_by(WEBHOOKS.c.id)
        ).all()
        return [_row(WebhookRecord, r) for r in rows]

    def update_webhook(self, webhook_id: int, **changes: Any) -> None:
        self.session.execute(
            update(WEBHOOKS)
            .where(WEBHOOKS.c.id == webhook_id)
            .values(**_checked(changes, WEBHOOK_CHANGES))
        )

    def add_referrer_flag(
        self,
        campaign_id: int,
        referrer_id: str,
        prospect_email: str,
        inbound_id: int,
        reason: str,
        now: datetime,
    ) -> None:
        self.session.execute(
            insert(FLAGS).values(
                campaign_id=campaign_id,
                referrer_id=referrer_id,
                prospect_email=prospect_email,
                inbound_id=inbound_id,
                reason=reason,
                created_at=now,
            )
        )
