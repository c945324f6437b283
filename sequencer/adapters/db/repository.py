"""``ports.Store`` on SQLAlchemy. Returns the core's frozen records, never ORM objects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from datetime import datetime
from functools import cache
from itertools import islice
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Row,
    Select,
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sequencer.adapters.db.consent import ConsentQueries
from sequencer.adapters.db.inbound_review import InboundReviewQueries
from sequencer.adapters.db.inbox import InboxQueries
from sequencer.adapters.db.notes import NoteQueries
from sequencer.adapters.db.outbox import OutboxQueries
from sequencer.adapters.db.tables import (
    Campaign,
    Draft,
    DraftEventEntry,
    Enrollment,
    SuppressionEntry,
)
from sequencer.core.ports import (
    CampaignRecord,
    CampaignSummary,
    DraftEvent,
    DraftRecord,
    DraftView,
    EnrollmentRecord,
    NewDraft,
    NewEnrollment,
    Suppression,
)
from sequencer.core.states import (
    LIVE_ENROLLMENT_STATES,
    CampaignStatus,
    DraftState,
    EnrollmentState,
)
from sequencer.errors import NotFound

INSERT_CHUNK = 2000
CAMPAIGNS = cast(Table, Campaign.__table__)
ENROLLMENTS = cast(Table, Enrollment.__table__)
SUPPRESSIONS = cast(Table, SuppressionEntry.__table__)
DRAFTS = cast(Table, Draft.__table__)
DRAFT_EVENTS = cast(Table, DraftEventEntry.__table__)
# NewEnrollment's fields are all enrollments columns (what launch plans for a prospect).
_PLAN_FIELDS = tuple(f.name for f in fields(NewEnrollment))
# The enrollments columns in EnrollmentRecord's field order (positional construction is fast).
_RECORD_COLUMNS = tuple(ENROLLMENTS.c[f.name] for f in fields(EnrollmentRecord))
_OWNING_STATUSES = (CampaignStatus.ACTIVE, CampaignStatus.PAUSED)
# The drafts columns in DraftRecord's field order, likewise.
_DRAFT_COLUMNS = tuple(DRAFTS.c[f.name] for f in fields(DraftRecord))
_NEW_DRAFT_FIELDS = tuple(f.name for f in fields(NewDraft))
# A drafted current step leaves the due index (see add_draft); executemany-able.
_CLEAR_DRAFTED_DUE = (
    update(ENROLLMENTS)
    .where(ENROLLMENTS.c.id == bindparam("eid"), ENROLLMENTS.c.steps_done == bindparam("step"))
    .values(next_due_at=null())
)
_EVENT_COLUMNS = tuple(DRAFT_EVENTS.c[f.name] for f in fields(DraftEvent))
# What update_draft / update_enrollment may change (ids, keys and timestamps are not theirs).
DRAFT_CHANGES = frozenset(
    {
        "state",
        "subject",
        "text",
        "html",
        "headers",
        "decided_by",
        "decided_at",
        "reason",
        "due_at",
        "attempts",
        "next_attempt_at",
        "mailbox_key",
        "claimed_at",
        "data_started_at",
        "sent_at",
        "smtp_reply",
        "last_error",
        "message",
    }
)
# A change to any of these makes the stored message bytes stale (update_draft drops them unless
# the caller passes the rebuilt ``message``; the sender then builds them at send time).
_MESSAGE_INPUTS = frozenset({"subject", "text", "html", "headers"})
ENROLLMENT_CHANGES = frozenset(
    {"state", "steps_done", "next_due_at", "paused_until", "hold_reason", "soft_bounces"}
)
# The rep of a campaign, read from its spec JSON (json_extract on SQLite, #>> on PostgreSQL).
_REP_EMAIL = CAMPAIGNS.c.spec[("rep", "email")].as_string()
# A DraftView row: draft columns, campaign name, rep email, enrollment columns.
_VIEW_COLUMNS = (*_DRAFT_COLUMNS, CAMPAIGNS.c.name, _REP_EMAIL, *_RECORD_COLUMNS)
_N_DRAFT = len(_DRAFT_COLUMNS)


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
    # _RECORD_COLUMNS are selected in the record's field order.
    return EnrollmentRecord(*cast(tuple[Any, ...], row))


def _draft_record(row: Row[Any]) -> DraftRecord:
    return DraftRecord(*cast(tuple[Any, ...], row))


def _draft_view(row: Row[Any]) -> DraftView:
    values = cast(tuple[Any, ...], row)
    return DraftView(
        draft=DraftRecord(*values[:_N_DRAFT]),
        campaign=values[_N_DRAFT],
        rep_email=values[_N_DRAFT + 1] or "",
        enrollment=EnrollmentRecord(*values[_N_DRAFT + 2 :]),
    )


def _views_query() -> Select[Any]:
    return (
        select(*_VIEW_COLUMNS)
        .join(ENROLLMENTS, ENROLLMENTS.c.id == DRAFTS.c.enrollment_id)
        .join(CAMPAIGNS, CAMPAIGNS.c.id == DRAFTS.c.campaign_id)
    )


def _checked(changes: dict[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValueError(
            f"{what} cannot change {', '.join(unknown)} (only {', '.join(sorted(allowed))})"
        )
    return changes


# Statements built once per set of changed columns and executed with parameters: building an
# UPDATE expression costs more than running it (the sender runs several per message).
_EVENT_INSERT = insert(DRAFT_EVENTS)


@cache
def _draft_update(keys: tuple[str, ...]) -> Any:
    revision: ColumnElement[int] = DRAFTS.c.revision
    values: dict[str, Any] = {k: bindparam(f"v_{k}", type_=DRAFTS.c[k].type) for k in keys}
    return (
        update(DRAFTS)
        .where(
            DRAFTS.c.id == bindparam("w_id", type_=DRAFTS.c.id.type),
            revision == bindparam("w_revision", type_=revision.type),
        )
        .values(
            **values,
            revision=revision + 1,
            updated_at=bindparam("v_updated_at", type_=DRAFTS.c.updated_at.type),
        )
        .returning(*_DRAFT_COLUMNS)
    )


@cache
def _enrollment_update(keys: tuple[str, ...]) -> Any:
    values: dict[str, Any] = {k: bindparam(f"v_{k}", type_=ENROLLMENTS.c[k].type) for k in keys}
    return (
        update(ENROLLMENTS)
        .where(ENROLLMENTS.c.id == bindparam("w_id", type_=ENROLLMENTS.c.id.type))
        .values(**values, updated_at=bindparam("v_updated_at", type_=ENROLLMENTS.c.updated_at.type))
    )


def _suppression(s: SuppressionEntry) -> Suppression:
    return Suppression(value=s.value, reason=s.reason, source=s.source, created_at=s.created_at)


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


class SqlRepository(OutboxQueries, InboxQueries, InboundReviewQueries, NoteQueries, ConsentQueries):
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- suppression list -------------------------------------------------------------------

    def suppressed_values(self) -> set[str]:
        return {v.casefold() for v in self.session.scalars(select(SuppressionEntry.value))}

    def is_address_suppressed(self, address: str) -> bool:
        key = normalize_suppression(address)
        wanted = (key, "@" + key.rpartition("@")[2])
        stmt = select(SuppressionEntry.id).where(SuppressionEntry.value.in_(wanted)).limit(1)
        return self.session.execute(stmt).first() is not None

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

    def campaign_by_id(self, campaign_id: int) -> CampaignRecord | None:
        found = self.session.get(Campaign, campaign_id)
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

    def campaign_records(self) -> list[CampaignRecord]:
        return [
            _campaign_record(c)
            for c in self.session.scalars(select(Campaign).order_by(Campaign.name))
        ]

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

    def replied_anywhere(self) -> dict[str, str]:
        """prospect_key → campaign name, for everyone who has replied to any campaign."""
        stmt = (
            select(Enrollment.prospect_key, Campaign.name)
            .join(Campaign, Campaign.id == Enrollment.campaign_id)
            .where(Enrollment.state == EnrollmentState.REPLIED)
            .order_by(Campaign.id.desc())
        )
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

    def update_enrollment(self, enrollment_id: int, now: datetime, **changes: Any) -> None:
        """Set ``changes`` (state, steps_done, next_due_at, paused_until, hold_reason) and
        ``updated_at``. NotFound if there is no such enrollment."""
        values = _checked(changes, ENROLLMENT_CHANGES, "update_enrollment")
        params = {f"v_{k}": v for k, v in values.items()}
        params.update(w_id=enrollment_id, v_updated_at=now)
        stmt = _enrollment_update(tuple(sorted(values)))
        if _rowcount(self.session.execute(stmt, params)) != 1:
            raise NotFound(f"enrollment #{enrollment_id} does not exist")

    def due_enrollments(self, now: datetime, limit: int) -> list[EnrollmentRecord]:
        """Active enrollments of active campaigns whose next step is due (next_due_at <= now)
        and has no draft yet (no row for (enrollment, steps_done)), oldest due first."""
        drafted = exists().where(
            DRAFTS.c.enrollment_id == ENROLLMENTS.c.id,
            DRAFTS.c.step_index == ENROLLMENTS.c.steps_done,
        )
        stmt = (
            select(*_RECORD_COLUMNS)
            .join(CAMPAIGNS, CAMPAIGNS.c.id == ENROLLMENTS.c.campaign_id)
            .where(
                ENROLLMENTS.c.state == EnrollmentState.ACTIVE,
                CAMPAIGNS.c.status == CampaignStatus.ACTIVE,
                ENROLLMENTS.c.next_due_at <= now,
                ~drafted,
            )
            .order_by(ENROLLMENTS.c.next_due_at, ENROLLMENTS.c.id)
            .limit(limit)
        )
        return [_enrollment_record(row) for row in self.session.execute(stmt).all()]

    # -- drafts -----------------------------------------------------------------------------

    def drafts_of(self, enrollment_id: int) -> list[DraftRecord]:
        stmt = (
            select(*_DRAFT_COLUMNS)
            .where(DRAFTS.c.enrollment_id == enrollment_id)
            .order_by(DRAFTS.c.step_index)
        )
        return [_draft_record(row) for row in self.session.execute(stmt).all()]

    def add_draft(
        self,
        draft: NewDraft,
        now: datetime,
        campaign_id: int | None = None,
        clear_due: bool = True,
    ) -> DraftRecord | None:
        """Insert at revision 1; None when (enrollment, step) already has a draft.

        ``INSERT ... ON CONFLICT (enrollment_id, step_index) DO NOTHING``: the database decides
        between racing inserts, and a lost race leaves the transaction usable (no error, no
        savepoint). Any other conflict (a duplicate ``message_id``) raises IntegrityError.

        The enrollment's ``next_due_at`` is cleared when this is its current step (``steps_done``):
        the step is drafted, so the enrollment is no longer due (sending sets the next step's due
        time). That keeps drafts waiting for approval or for the send window out of the
        ``(state, next_due_at)`` index range that every tick's ``due_enrollments`` walks, so a
        tick costs the same with 1M enrollments as with 10k.

        The draft is inserted *before* the enrollment row is updated: a tick that loses the race
        (its list of due enrollments was stale) then never holds the enrollment's row lock while
        it waits on the other draft's uncommitted index entry. Updating first deadlocked on
        PostgreSQL against a sender recording that draft's outcome (draft row, then enrollment).
        """
        e = ENROLLMENTS
        if campaign_id is None:  # else the drafts' foreign keys still refuse a wrong enrollment
            campaign_id = self.session.execute(
                select(e.c.campaign_id).where(e.c.id == draft.enrollment_id)
            ).scalar_one_or_none()
        if campaign_id is None:
            raise NotFound(f"enrollment #{draft.enrollment_id} does not exist")
        stmt = self._insert_drafts([(draft, campaign_id)], now)
        row = self.session.execute(stmt).one_or_none()
        if clear_due:
            self.clear_drafted_due([(draft.enrollment_id, draft.step_index)])
        return None if row is None else _draft_record(row)

    def add_drafts(self, drafts: list[tuple[NewDraft, int]], now: datetime) -> list[DraftRecord]:
        if not drafts:
            return []
        rows = self.session.execute(self._insert_drafts(drafts, now)).all()
        return [_draft_record(row) for row in rows]

    def _insert_drafts(self, drafts: list[tuple[NewDraft, int]], now: datetime) -> Any:
        """``INSERT … ON CONFLICT (enrollment_id, step_index) DO NOTHING RETURNING`` of one or
        many drafts (multi-row VALUES: one round trip for a drafting batch)."""
        rows = []
        for draft, campaign_id in drafts:
            values = {name: getattr(draft, name) for name in _NEW_DRAFT_FIELDS}
            values.update(campaign_id=campaign_id, revision=1, created_at=now, updated_at=now)
            rows.append(values)
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            stmt: Any = postgresql.insert(DRAFTS)
        elif dialect == "sqlite":
            stmt = sqlite.insert(DRAFTS)
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise NotImplementedError(f"add_draft needs ON CONFLICT, not on {dialect}")
        return (
            stmt.values(rows)
            .on_conflict_do_nothing(index_elements=["enrollment_id", "step_index"])
            .returning(*_DRAFT_COLUMNS)
        )

    def clear_drafted_due(self, steps: list[tuple[int, int]]) -> None:
        if steps:
            rows = [{"eid": enrollment_id, "step": step} for enrollment_id, step in steps]
            self.session.execute(_CLEAR_DRAFTED_DUE, rows)

    def get_draft(self, draft_id: int) -> DraftView | None:
        row = self.session.execute(_views_query().where(DRAFTS.c.id == draft_id)).one_or_none()
        return None if row is None else _draft_view(row)

    def list_drafts(
        self,
        states: Iterable[DraftState],
        rep_email: str | None = None,
        campaign: str | None = None,
    ) -> list[DraftView]:
        """Drafts in ``states``, newest first (created_at, then id, descending).

        ``rep_email`` keeps the campaigns whose spec names that rep (case-insensitive);
        ``campaign`` keeps one campaign by name. One query, two with ``rep_email``.
        """
        wanted = sorted(set(states))
        if not wanted:
            return []
        stmt = _views_query().where(DRAFTS.c.state.in_(wanted))
        if campaign is not None:
            stmt = stmt.where(CAMPAIGNS.c.name == campaign)
        if rep_email is not None:
            # Casefold in Python (SQL lower() differs from it outside ASCII): campaigns are few.
            rep = rep_email.strip().casefold()
            ids = [
                cid
                for cid, email in self.session.execute(select(CAMPAIGNS.c.id, _REP_EMAIL))
                if (email or "").strip().casefold() == rep
            ]
            if not ids:
                return []
            stmt = stmt.where(DRAFTS.c.campaign_id.in_(ids))
        stmt = stmt.order_by(DRAFTS.c.created_at.desc(), DRAFTS.c.id.desc())
        return [_draft_view(row) for row in self.session.execute(stmt).all()]

    def update_draft(
        self, draft_id: int, expected_revision: int, now: datetime, **changes: Any
    ) -> DraftRecord | None:
        """Compare-and-set: one ``UPDATE ... WHERE id = :id AND revision = :expected`` that
        applies ``changes``, bumps ``revision`` and sets ``updated_at``. Returns the new record,
        or None when the draft is missing or its revision moved on (nothing is changed then).
        """
        values = _checked(changes, DRAFT_CHANGES, "update_draft")
        if "message" not in values and not _MESSAGE_INPUTS.isdisjoint(values):
            values["message"] = None
        params = {f"v_{k}": v for k, v in values.items()}
        params.update(w_id=draft_id, w_revision=expected_revision, v_updated_at=now)
        stmt = _draft_update(tuple(sorted(values)))
        row = self.session.execute(stmt, params).one_or_none()
        return None if row is None else _draft_record(row)

    def add_draft_event(self, event: DraftEvent) -> None:
        values = {column.name: getattr(event, column.name) for column in _EVENT_COLUMNS}
        self.session.execute(_EVENT_INSERT, values)

    def draft_events(self, draft_id: int) -> list[DraftEvent]:
        """The draft's events in the order they were recorded (by id, not by ``at``).

        ``at`` is the caller's clock (``--now`` in a simulation, a skewed worker), so it may
        run backwards; the insertion order cannot. Changes to one draft are serialised by the
        compare-and-set on its revision, so their ids increase in the order they happened.
        """
        stmt = (
            select(*_EVENT_COLUMNS)
            .where(DRAFT_EVENTS.c.draft_id == draft_id)
            .order_by(DRAFT_EVENTS.c.id)
        )
        return [DraftEvent(*cast(tuple[Any, ...], row)) for row in self.session.execute(stmt)]
