"""``ports.Repository`` on SQLAlchemy. Returns the core's frozen records, never ORM objects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from datetime import datetime
from itertools import islice
from typing import Any, cast

from sqlalchemy import CursorResult, Row, Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sequencer.adapters.db.tables import Campaign, Enrollment, SuppressionEntry
from sequencer.core.ports import (
    CampaignRecord,
    CampaignSummary,
    EnrollmentRecord,
    NewEnrollment,
    Suppression,
)
from sequencer.core.states import LIVE_ENROLLMENT_STATES, CampaignStatus, EnrollmentState
from sequencer.errors import NotFound

INSERT_CHUNK = 2000
ENROLLMENTS = cast(Table, Enrollment.__table__)
SUPPRESSIONS = cast(Table, SuppressionEntry.__table__)
_PLAN_FIELDS = (
    "prospect_key",
    "prospect_email",
    "prospect",
    "referrer",
    "referral",
    "other_referrals",
    "temperature",
    "sequence",
    "may_name_referrer",
    "reason",
    "state",
    "hold_reason",
    "next_due_at",
)
# The enrollments columns in EnrollmentRecord's field order (positional construction is fast).
_RECORD_COLUMNS = tuple(ENROLLMENTS.c[f.name] for f in fields(EnrollmentRecord))
_OWNING_STATUSES = (CampaignStatus.ACTIVE, CampaignStatus.PAUSED)


def normalize_suppression(value: str) -> str:
    return value.strip().casefold()


def _chunks(rows: Iterable[NewEnrollment], size: int) -> Iterator[list[NewEnrollment]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def _plan_values(row: NewEnrollment) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _PLAN_FIELDS}


def _campaign_record(c: Campaign) -> CampaignRecord:
    return CampaignRecord(
        id=c.id,
        name=c.name,
        status=c.status,
        source=c.source,
        spec_hash=c.spec_hash,
        spec=c.spec,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


def _enrollment_record(row: Row[Any]) -> EnrollmentRecord:
    return EnrollmentRecord(
        *cast(tuple[Any, ...], row)
    )  # columns selected in the record's field order


def _suppression(s: SuppressionEntry) -> Suppression:
    return Suppression(value=s.value, reason=s.reason, source=s.source, created_at=s.created_at)


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


class SqlRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- suppression list -------------------------------------------------------------------

    def suppressed_values(self) -> set[str]:
        return {v.casefold() for v in self.session.scalars(select(SuppressionEntry.value))}

    def add_suppression(self, value: str, reason: str, source: str, now: datetime) -> bool:
        """Add ``value`` (an address or ``@domain``); False if it was already suppressed."""
        values = {
            "value": normalize_suppression(value),
            "reason": reason,
            "source": source,
            "created_at": now,
        }
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            stmt: Any = postgresql.insert(SUPPRESSIONS).values(values).on_conflict_do_nothing()
        elif dialect == "sqlite":
            stmt = sqlite.insert(SUPPRESSIONS).values(values).on_conflict_do_nothing()
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            if values["value"] in self.suppressed_values():
                return False
            stmt = insert(SUPPRESSIONS).values(values)
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... RETURNING.
        inserted = self.session.execute(stmt.returning(SUPPRESSIONS.c.id)).scalar_one_or_none()
        return inserted is not None

    def remove_suppression(self, value: str) -> bool:
        stmt = delete(SuppressionEntry).where(
            SuppressionEntry.value == normalize_suppression(value)
        )
        return _rowcount(self.session.execute(stmt)) > 0

    def list_suppressions(self) -> list[Suppression]:
        entries = self.session.scalars(select(SuppressionEntry).order_by(SuppressionEntry.value))
        return [_suppression(s) for s in entries]

    # -- campaigns --------------------------------------------------------------------------

    def _campaign(self, name: str) -> Campaign | None:
        return self.session.scalars(select(Campaign).where(Campaign.name == name)).one_or_none()

    def get_campaign(self, name: str) -> CampaignRecord | None:
        found = self._campaign(name)
        return None if found is None else _campaign_record(found)

    def save_campaign(
        self, name: str, source: str, spec_hash: str, spec: dict[str, Any], now: datetime
    ) -> tuple[CampaignRecord, bool]:
        """Insert or update by name (keeping its status). Returns (record, created)."""
        found = self._campaign(name)
        created = found is None
        if found is None:
            found = Campaign(
                name=name,
                status=CampaignStatus.ACTIVE,
                source=source,
                spec_hash=spec_hash,
                spec=spec,
                created_at=now,
                updated_at=now,
            )
            self.session.add(found)
        else:
            found.source = source
            found.spec_hash = spec_hash
            found.spec = spec
            found.updated_at = now
        self.session.flush()
        return _campaign_record(found), created

    def set_campaign_status(self, campaign_id: int, status: CampaignStatus, now: datetime) -> None:
        found = self.session.get(Campaign, campaign_id)
        if found is None:
            raise NotFound(f"campaign #{campaign_id} does not exist")
        found.status = status
        found.updated_at = now
        self.session.flush()

    def list_campaigns(self) -> list[CampaignSummary]:
        campaigns = list(self.session.scalars(select(Campaign).order_by(Campaign.name)))
        by_state: dict[int, dict[str, int]] = {c.id: {} for c in campaigns}
        by_temperature: dict[int, dict[str, int]] = {c.id: {} for c in campaigns}
        count = func.count().label("n")
        for cid, state, n in self.session.execute(
            select(Enrollment.campaign_id, Enrollment.state, count)
            .group_by(Enrollment.campaign_id, Enrollment.state)
            .order_by(Enrollment.campaign_id, Enrollment.state)
        ):
            by_state.setdefault(cid, {})[state.value] = n
        for cid, temperature, n in self.session.execute(
            select(Enrollment.campaign_id, Enrollment.temperature, count)
            .group_by(Enrollment.campaign_id, Enrollment.temperature)
            .order_by(Enrollment.campaign_id, Enrollment.temperature)
        ):
            by_temperature.setdefault(cid, {})[temperature] = n
        return [
            CampaignSummary(
                campaign=_campaign_record(c),
                by_state=by_state[c.id],
                by_temperature=by_temperature[c.id],
            )
            for c in campaigns
        ]

    # -- enrollments ------------------------------------------------------------------------

    def enrollment_states(self, campaign_id: int) -> dict[str, EnrollmentState]:
        """prospect_key → state for every enrollment of the campaign."""
        rows = self.session.execute(
            select(Enrollment.prospect_key, Enrollment.state).where(
                Enrollment.campaign_id == campaign_id
            )
        )
        return dict(rows.all())

    def live_elsewhere(self, campaign_id: int | None) -> dict[str, str]:
        """prospect_key → campaign name, for live enrollments in *other* active/paused campaigns.

        With ``campaign_id=None`` every active/paused campaign counts. When a prospect is live
        in several, the oldest campaign (lowest id) is named.
        """
        stmt = (
            select(Enrollment.prospect_key, Campaign.name)
            .join(Campaign, Campaign.id == Enrollment.campaign_id)
            .where(
                Enrollment.state.in_(sorted(LIVE_ENROLLMENT_STATES)),
                Campaign.status.in_(_OWNING_STATUSES),
            )
            .order_by(Campaign.id.desc())
        )
        if campaign_id is not None:
            stmt = stmt.where(Campaign.id != campaign_id)
        # Rows come newest campaign first, so the oldest one wins the dict.
        return dict(self.session.execute(stmt).all())

    def add_enrollments(
        self,
        campaign_id: int,
        rows: Iterable[NewEnrollment],
        now: datetime,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Bulk insert (executemany in chunks of ``INSERT_CHUNK``); ``progress(total so far)``."""
        done = 0
        fixed = {
            "campaign_id": campaign_id,
            "steps_done": 0,
            "paused_until": None,
            "created_at": now,
            "updated_at": now,
        }
        for chunk in _chunks(rows, INSERT_CHUNK):
            self.session.execute(
                insert(ENROLLMENTS), [{**fixed, **_plan_values(row)} for row in chunk]
            )
            done += len(chunk)
            if progress is not None:
                progress(done)
        return done

    def replace_held(self, campaign_id: int, row: NewEnrollment, now: datetime) -> bool:
        """Re-plan the HELD enrollment of ``row``'s prospect. False if it is not held."""
        values = _plan_values(row)
        key = values.pop("prospect_key")
        stmt = (
            update(ENROLLMENTS)
            .where(
                ENROLLMENTS.c.campaign_id == campaign_id,
                ENROLLMENTS.c.prospect_key == key,
                ENROLLMENTS.c.state == EnrollmentState.HELD,
            )
            .values(**values, steps_done=0, paused_until=None, updated_at=now)
        )
        return _rowcount(self.session.execute(stmt)) == 1

    def list_enrollments(
        self, campaign_id: int, states: Iterable[EnrollmentState] | None = None
    ) -> list[EnrollmentRecord]:
        stmt = (
            select(*_RECORD_COLUMNS)
            .where(ENROLLMENTS.c.campaign_id == campaign_id)
            .order_by(ENROLLMENTS.c.id)
        )
        if states is not None:
            stmt = stmt.where(ENROLLMENTS.c.state.in_(sorted(set(states))))
        return [_enrollment_record(row) for row in self.session.execute(stmt).all()]
