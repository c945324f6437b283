"""The consent ledger and the referrer flags on SQLAlchemy. Mixed into SqlRepository."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from itertools import islice
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from sequencer.adapters.db.tables import Enrollment
from sequencer.adapters.db.tables_consent import ConsentEntry
from sequencer.adapters.db.tables_inbound import ReferrerFlag
from sequencer.core.naming import (
    BLOCKING_FLAG_STATES,
    ConsentChange,
    FlagRecord,
    FlagState,
    ReferrerEntry,
    Via,
)
from sequencer.core.ports import EnrollmentRecord
from sequencer.core.states import LIVE_ENROLLMENT_STATES, EnrollmentState

LEDGER = cast(Table, ConsentEntry.__table__)
FLAGS = cast(Table, ReferrerFlag.__table__)
ENROLLMENTS = cast(Table, Enrollment.__table__)
CHUNK = 500  # ids per IN (...): well under SQLite's and PostgreSQL's parameter limits
_LEDGER_COLUMNS = (
    LEDGER.c.referrer_id,
    LEDGER.c.prospect_key,
    LEDGER.c.granted,
    LEDGER.c.actor,
    LEDGER.c.via,
    LEDGER.c.at,
    LEDGER.c.note,
    LEDGER.c.id,
)
_FLAG_COLUMNS = (
    FLAGS.c.id,
    FLAGS.c.campaign_id,
    FLAGS.c.referrer_id,
    FLAGS.c.prospect_email,
    FLAGS.c.reason,
    FLAGS.c.created_at,
    FLAGS.c.state,
    FLAGS.c.resolved_by,
    FLAGS.c.resolved_at,
)


def _chunks(values: Collection[str]) -> Iterable[list[str]]:
    it = iter(sorted(set(values)))
    while chunk := list(islice(it, CHUNK)):
        yield chunk


def _change(row: Any) -> ConsentChange:
    rid, prospect, granted, actor, via, at, note, id_ = row
    return ConsentChange(rid, prospect, bool(granted), actor, Via(via), at, note, id_)


def _flag(row: Any) -> FlagRecord:
    values = list(row)
    values[6] = FlagState(values[6])
    return FlagRecord(*values)


class ConsentQueries:
    session: Session

    def add_consent_change(self, change: ConsentChange) -> None:
        self.session.execute(
            insert(LEDGER).values(
                referrer_id=change.referrer_id,
                prospect_key=change.prospect_key,
                granted=change.granted,
                actor=change.actor[:320],
                via=change.via,
                note=change.note,
                at=change.at,
            )
        )

    def add_consent_changes(self, changes: list[ConsentChange]) -> None:
        """Many changes in one executemany (a launch records its referrers.csv's at once)."""
        if changes:
            self.session.execute(
                insert(LEDGER),
                [
                    {
                        "referrer_id": c.referrer_id,
                        "prospect_key": c.prospect_key,
                        "granted": c.granted,
                        "actor": c.actor[:320],
                        "via": c.via,
                        "note": c.note,
                        "at": c.at,
                    }
                    for c in changes
                ],
            )

    def consent_changes(
        self, referrer_ids: Collection[str] | None = None, limit: int | None = None
    ) -> list[ConsentChange]:
        if referrer_ids is None:
            stmt = select(*_LEDGER_COLUMNS).order_by(LEDGER.c.id.desc())
            if limit is not None:
                stmt = stmt.limit(limit)
            return [_change(r) for r in reversed(self.session.execute(stmt).all())]
        rows: list[Any] = []
        for chunk in _chunks(referrer_ids):
            rows.extend(
                self.session.execute(
                    select(*_LEDGER_COLUMNS).where(LEDGER.c.referrer_id.in_(chunk))
                ).all()
            )
        return sorted((_change(r) for r in rows), key=lambda c: c.id)

    def flagged_referrers(self, referrer_ids: Collection[str] | None = None) -> set[str]:
        blocking = sorted(s.value for s in BLOCKING_FLAG_STATES)
        stmt = select(FLAGS.c.referrer_id).where(FLAGS.c.state.in_(blocking)).distinct()
        if referrer_ids is None:
            return set(self.session.scalars(stmt))
        found: set[str] = set()
        for chunk in _chunks(referrer_ids):
            found.update(self.session.scalars(stmt.where(FLAGS.c.referrer_id.in_(chunk))))
        return found

    def referrer_flags(self, states: Iterable[FlagState] | None = None) -> list[FlagRecord]:
        stmt = select(*_FLAG_COLUMNS).order_by(FLAGS.c.id)
        if states is not None:
            stmt = stmt.where(FLAGS.c.state.in_(sorted(s.value for s in states)))
        return [_flag(r) for r in self.session.execute(stmt).all()]

    def resolve_flags(
        self, flag_ids: Collection[int], state: FlagState, by: str, now: datetime
    ) -> int:
        if not flag_ids:
            return 0
        result = self.session.execute(
            update(FLAGS)
            .where(FLAGS.c.id.in_(sorted(set(flag_ids))), FLAGS.c.state != state.value)
            .values(state=state.value, resolved_by=by[:320], resolved_at=now)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def live_naming(self, referrer_id: str, prospect_key: str | None) -> list[EnrollmentRecord]:
        from sequencer.adapters.db.repository import _RECORD_COLUMNS, _enrollment_record

        stmt = select(*_RECORD_COLUMNS).where(
            ENROLLMENTS.c.state.in_(sorted(LIVE_ENROLLMENT_STATES)),
            ENROLLMENTS.c.may_name_referrer.is_(True),
            ENROLLMENTS.c.referrer["id"].as_string() == referrer_id,
        )
        if prospect_key is not None:
            stmt = stmt.where(ENROLLMENTS.c.prospect_key == prospect_key)
        rows = self.session.execute(stmt.order_by(ENROLLMENTS.c.id)).all()
        return [_enrollment_record(r) for r in rows if r.referrer.get("id") == referrer_id]

    def live_naming_many(self, referrer_ids: Collection[str]) -> list[EnrollmentRecord]:
        """``live_naming`` for many referrers: one statement per 500 ids, not one per id."""
        from sequencer.adapters.db.repository import _RECORD_COLUMNS, _enrollment_record

        rid = ENROLLMENTS.c.referrer["id"].as_string()
        found: list[EnrollmentRecord] = []
        for chunk in _chunks(referrer_ids):
            stmt = select(*_RECORD_COLUMNS).where(
                ENROLLMENTS.c.state.in_(sorted(LIVE_ENROLLMENT_STATES)),
                ENROLLMENTS.c.may_name_referrer.is_(True),
                rid.in_(chunk),
            )
            found.extend(_enrollment_record(r) for r in self.session.execute(stmt).all())
        wanted = set(referrer_ids)
        return [e for e in found if e.referrer.get("id") in wanted]

    def referrer_known(self, referrer_id: str) -> bool:
        if self.session.execute(
            select(LEDGER.c.id).where(LEDGER.c.referrer_id == referrer_id).limit(1)
        ).first():
            return True
        stmt = select(ENROLLMENTS.c.id).where(
            ENROLLMENTS.c.referrer["id"].as_string() == referrer_id
        )
        return self.session.execute(stmt.limit(1)).first() is not None

    def started_held(self, campaign_id: int) -> set[str]:
        """Prospect keys of the campaign's HELD enrollments that already drafted a step: a
        re-launch must not plan them again from step one (their drafts would go out)."""
        from sequencer.adapters.db.repository import DRAFTS

        drafted = select(DRAFTS.c.id).where(DRAFTS.c.enrollment_id == ENROLLMENTS.c.id).exists()
        stmt = select(ENROLLMENTS.c.prospect_key).where(
            ENROLLMENTS.c.campaign_id == campaign_id,
            ENROLLMENTS.c.state == "held",
            (ENROLLMENTS.c.steps_done > 0) | drafted,
        )
        return set(self.session.scalars(stmt))

    def naming_state(
        self, referrer_id: str, prospect_key: str | None
    ) -> tuple[ConsentChange | None, bool]:
        """The newest ledger change that applies, and whether a flag blocks: one round trip
        when the ledger has a row (the send path asks this right before every DATA)."""
        blocking = sorted(s.value for s in BLOCKING_FLAG_STATES)
        flagged = (
            select(FLAGS.c.id)
            .where(FLAGS.c.referrer_id == referrer_id, FLAGS.c.state.in_(blocking))
            .exists()
        )
        applies: ColumnElement[bool] = LEDGER.c.prospect_key.is_(None)
        if prospect_key is not None:
            applies = or_(applies, LEDGER.c.prospect_key == prospect_key)
        row = self.session.execute(
            select(*_LEDGER_COLUMNS, flagged.label("flagged"))
            .where(LEDGER.c.referrer_id == referrer_id, applies)
            .order_by(LEDGER.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None, bool(self.flagged_referrers({referrer_id}))
        return _change(tuple(row)[:-1]), bool(row.flagged)

    def referrer_directory(self, contains: str | None, limit: int) -> list[ReferrerEntry]:
        rid = ENROLLMENTS.c.referrer["id"].as_string()
        name = ENROLLMENTS.c.referrer["name"].as_string()
        naming = ENROLLMENTS.c.may_name_referrer.is_(True)
        live = naming & ENROLLMENTS.c.state.in_(sorted(LIVE_ENROLLMENT_STATES))
        held = naming & (ENROLLMENTS.c.state == EnrollmentState.HELD.value)
        stmt = select(
            rid,
            func.max(ENROLLMENTS.c.id),
            func.sum(case((live, 1), else_=0)),
            func.sum(case((held, 1), else_=0)),
        ).where(rid.is_not(None))
        ledger = select(LEDGER.c.referrer_id).distinct()
        if contains:
            stmt = stmt.where(
                or_(
                    rid.icontains(contains, autoescape=True),
                    name.icontains(contains, autoescape=True),
                )
            )
            ledger = ledger.where(LEDGER.c.referrer_id.icontains(contains, autoescape=True))
        groups = {
            str(r[0]): (int(r[1]), int(r[2] or 0), int(r[3] or 0))
            for r in self.session.execute(stmt.group_by(rid).order_by(rid).limit(limit)).all()
        }
        newest = [g[0] for g in groups.values()]
        snapshots: dict[int, dict[str, Any]] = {}
        for i in range(0, len(newest), CHUNK):
            rows = self.session.execute(
                select(ENROLLMENTS.c.id, ENROLLMENTS.c.referrer).where(
                    ENROLLMENTS.c.id.in_(newest[i : i + CHUNK])
                )
            ).all()
            snapshots.update({int(r[0]): dict(r[1]) for r in rows})
        entries = {
            referrer_id: ReferrerEntry(
                referrer_id,
                str(snapshots.get(e_id, {}).get("name", "")),
                bool(snapshots.get(e_id, {}).get("consent", False)),
                n_live,
                n_held,
            )
            for referrer_id, (e_id, n_live, n_held) in groups.items()
        }
        for referrer_id in self.session.scalars(ledger.order_by(LEDGER.c.referrer_id).limit(limit)):
            entries.setdefault(referrer_id, ReferrerEntry(referrer_id, "", True, 0, 0))
        return [entries[k] for k in sorted(entries)[:limit]]
