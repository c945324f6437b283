"""Drafts in SqlRepository, against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import delete, event, func, insert, select
from sqlalchemy.exc import IntegrityError

from sequencer.adapters.db.repository import CAMPAIGNS, DRAFT_EVENTS, DRAFTS
from sequencer.adapters.db.session import SqlUnitOfWorkFactory
from sequencer.core.ports import CampaignRecord, DraftEvent, DraftRecord, NewDraft
from sequencer.core.states import CampaignStatus, DraftState, EnrollmentState
from sequencer.errors import NotFound
from tests.adapters.test_db_repository import enrollment, set_status

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
EARLIER = NOW - timedelta(hours=1)
PARIS = timezone(timedelta(hours=2))


def campaign(
    uow_factory: SqlUnitOfWorkFactory, name: str, rep: str = "rep@example.com"
) -> CampaignRecord:
    spec = {"name": name, "rep": {"name": "Rep", "email": rep, "timezone": "UTC"}}
    with uow_factory() as uow:
        record, _ = uow.repo.save_campaign(name, f"{name}.yaml", "h", spec, NOW)
        uow.commit()
    return record


def enroll(
    uow_factory: SqlUnitOfWorkFactory, campaign_id: int, *emails: str, **kw: Any
) -> list[int]:
    """Enroll ``emails`` (same options for all); their enrollment ids, in order."""
    with uow_factory() as uow:
        uow.repo.add_enrollments(campaign_id, [enrollment(e, **kw) for e in emails], NOW)
        uow.commit()
        ids = {e.prospect_email: e.id for e in uow.repo.list_enrollments(campaign_id)}
    return [ids[e] for e in emails]


def new_draft(enrollment_id: int, step: int = 0, **changes: Any) -> NewDraft:
    values: dict[str, Any] = {
        "enrollment_id": enrollment_id,
        "step_index": step,
        "template": "intro",
        "state": DraftState.PENDING_APPROVAL,
        "to_email": "p@x.com",
        "subject": f"Hello ({step})",
        "text": "Hi Ann,\n\nRita suggested I write.",
        "html": "<p>Hi Ann,</p>",
        "headers": {"From": "Rep <rep@example.com>", "To": "p@x.com"},
        "message_id": f"<{enrollment_id}.{step}@refseq.test>",
        "due_at": NOW,
    }
    values.update(changes)
    return NewDraft(**values)


def add(uow_factory: SqlUnitOfWorkFactory, draft: NewDraft, now: datetime = NOW) -> DraftRecord:
    with uow_factory() as uow:
        record = uow.repo.add_draft(draft, now)
        uow.commit()
    assert record is not None
    return record


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


# -- schema -------------------------------------------------------------------------------------


def test_the_database_enforces_one_draft_per_enrollment_and_step(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    (eid,) = enroll(uow_factory, campaign(uow_factory, "c").id, "p@x.com")
    first = add(uow_factory, new_draft(eid))
    row = {
        "enrollment_id": eid,
        "campaign_id": first.campaign_id,
        "step_index": 0,
        "template": "t",
        "state": DraftState.PENDING_APPROVAL,
        "to_email": "p@x.com",
        "subject": "s",
        "text": "t",
        "headers": {},
        "message_id": "<other@x>",
        "due_at": NOW,
        "created_at": NOW,
        "updated_at": NOW,
    }
    with uow_factory() as uow, pytest.raises(IntegrityError, match="step_index"):
        uow.session.execute(insert(DRAFTS).values(row))
    with uow_factory() as uow:  # another step is fine, and the revision defaults to 1
        uow.session.execute(insert(DRAFTS).values({**row, "step_index": 1}))
        assert [d.revision for d in uow.repo.drafts_of(eid)] == [1, 1]


def test_message_ids_are_unique(uow_factory: SqlUnitOfWorkFactory) -> None:
    a, b = enroll(uow_factory, campaign(uow_factory, "c").id, "a@x.com", "b@x.com")
    add(uow_factory, new_draft(a, message_id="<same@x>"))
    with uow_factory() as uow, pytest.raises(IntegrityError, match="message_id"):
        uow.repo.add_draft(new_draft(b, message_id="<same@x>"), NOW)


def test_deleting_a_campaign_cascades_to_drafts_and_events(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    c = campaign(uow_factory, "c")
    (eid,) = enroll(uow_factory, c.id, "p@x.com")
    draft = add(uow_factory, new_draft(eid))
    with uow_factory() as uow:
        uow.repo.add_draft_event(DraftEvent(draft.id, "refseq", "created", {}, {}, NOW))
        uow.session.execute(delete(CAMPAIGNS).where(CAMPAIGNS.c.id == c.id))
        uow.commit()
    with uow_factory() as uow:
        for table in (DRAFTS, DRAFT_EVENTS):
            assert uow.session.execute(select(func.count()).select_from(table)).scalar() == 0


# -- adding and reading -------------------------------------------------------------------------


def test_add_draft_stores_revision_one_and_the_campaign(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    c = campaign(uow_factory, "c")
    (eid,) = enroll(uow_factory, c.id, "p@x.com")
    headers = {"From": "Zoë <zoë@exämple.com>", "References": "<a@x> <b@x>", "X-Ü": "日本 ✓"}
    due = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=PARIS)
    wanted = new_draft(eid, 2, headers=headers, due_at=due, html=None)
    record = add(uow_factory, wanted, now=due)
    assert (record.enrollment_id, record.campaign_id, record.step_index) == (eid, c.id, 2)
    assert (record.revision, record.decided_by, record.decided_at, record.reason) == (
        1,
        None,
        None,
        None,
    )
    assert (record.headers, record.html, record.message_id) == (headers, None, wanted.message_id)
    with uow_factory() as uow:
        (stored,) = uow.repo.drafts_of(eid)
    assert stored == record
    for value in (stored.due_at, stored.created_at, stored.updated_at):
        assert value == due
        assert_utc(value)
        assert value.hour == 12


def test_add_draft_twice_returns_none_and_keeps_the_transaction_usable(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    a, b = enroll(uow_factory, campaign(uow_factory, "c").id, "a@x.com", "b@x.com")
    with uow_factory() as uow:
        first = uow.repo.add_draft(new_draft(a), NOW)
        again = uow.repo.add_draft(new_draft(a, subject="other", message_id="<new@x>"), LATER)
        # On PostgreSQL a failed statement would abort the transaction: this must still work.
        other = uow.repo.add_draft(new_draft(b), NOW)
        uow.commit()
    assert first is not None
    assert other is not None
    assert again is None
    with uow_factory() as uow:  # and across transactions too
        assert uow.repo.add_draft(new_draft(a, message_id="<newer@x>"), LATER) is None
        assert [d.subject for d in uow.repo.drafts_of(a)] == ["Hello (0)"]
        assert [d.id for d in uow.repo.drafts_of(b)] == [other.id]


def test_add_draft_refuses_a_missing_enrollment(uow_factory: SqlUnitOfWorkFactory) -> None:
    with uow_factory() as uow, pytest.raises(NotFound):
        uow.repo.add_draft(new_draft(424242), NOW)


def test_drafts_of_are_in_step_order(uow_factory: SqlUnitOfWorkFactory) -> None:
    a, b = enroll(uow_factory, campaign(uow_factory, "c").id, "a@x.com", "b@x.com")
    for step in (2, 0, 1):
        add(uow_factory, new_draft(a, step))
    add(uow_factory, new_draft(b, 0))
    with uow_factory() as uow:
        assert [d.step_index for d in uow.repo.drafts_of(a)] == [0, 1, 2]
        assert [d.step_number for d in uow.repo.drafts_of(a)] == [1, 2, 3]
        assert uow.repo.drafts_of(b + 100) == []


def test_get_draft_returns_a_view(uow_factory: SqlUnitOfWorkFactory) -> None:
    c = campaign(uow_factory, "spring", rep="Rep@Example.com")
    (eid,) = enroll(uow_factory, c.id, "p@x.com")
    record = add(uow_factory, new_draft(eid))
    with uow_factory() as uow:
        view = uow.repo.get_draft(record.id)
        (enrolled,) = uow.repo.list_enrollments(c.id)
        assert uow.repo.get_draft(record.id + 1) is None
    assert view is not None
    assert (view.draft, view.campaign, view.rep_email) == (record, "spring", "Rep@Example.com")
    assert view.enrollment == enrolled


def test_list_drafts_filters_and_orders_newest_first(uow_factory: SqlUnitOfWorkFactory) -> None:
    ann = campaign(uow_factory, "ann-1", rep="ann@example.com")
    ann2 = campaign(uow_factory, "ann-2", rep="ANN@Example.COM")
    bob = campaign(uow_factory, "bob-1", rep="bob@example.com")
    (a1,) = enroll(uow_factory, ann.id, "p1@x.com")
    (a2,) = enroll(uow_factory, ann2.id, "p2@x.com")
    (b1,) = enroll(uow_factory, bob.id, "p3@x.com")
    old = add(uow_factory, new_draft(a1, 0), now=EARLIER)
    tie_low = add(uow_factory, new_draft(a2, 0), now=NOW)
    tie_high = add(uow_factory, new_draft(b1, 0), now=NOW)
    newest = add(uow_factory, new_draft(a1, 1, state=DraftState.APPROVED), now=LATER)
    pending = [DraftState.PENDING_APPROVAL]

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(uow_factory.engine, "before_cursor_execute", count)
    try:
        with uow_factory() as uow:
            everything = uow.repo.list_drafts(list(DraftState))
            queue = uow.repo.list_drafts(pending)
            anns = uow.repo.list_drafts(iter(pending), rep_email=" Ann@EXAMPLE.com ")
            ann_spring = uow.repo.list_drafts(
                pending, rep_email="ann@example.com", campaign="ann-2"
            )
            by_name = uow.repo.list_drafts(list(DraftState), campaign="ann-1")
            nobody = uow.repo.list_drafts(pending, rep_email="nobody@example.com")
            mismatch = uow.repo.list_drafts(pending, rep_email="bob@example.com", campaign="ann-1")
            no_states = uow.repo.list_drafts([])
    finally:
        event.remove(uow_factory.engine, "before_cursor_execute", count)

    def ids(views: list[Any]) -> list[int]:
        return [v.draft.id for v in views]

    assert ids(everything) == [newest.id, tie_high.id, tie_low.id, old.id]
    assert ids(queue) == [tie_high.id, tie_low.id, old.id]
    assert ids(anns) == [tie_low.id, old.id]
    assert ids(ann_spring) == [tie_low.id]
    assert ids(by_name) == [newest.id, old.id]
    assert (nobody, mismatch, no_states) == ([], [], [])
    assert [(v.campaign, v.rep_email) for v in anns] == [
        ("ann-2", "ANN@Example.COM"),
        ("ann-1", "ann@example.com"),
    ]
    assert [v.enrollment.prospect_email for v in everything] == [
        "p1@x.com",
        "p3@x.com",
        "p2@x.com",
        "p1@x.com",
    ]
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # One per call with states (7), one campaigns lookup per rep_email call (4), none for
    # `nobody` once no campaign matched (-1): never one per draft.
    assert len(selects) == 10


def test_a_campaign_without_a_rep_has_an_empty_rep_email(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    with uow_factory() as uow:
        c, _ = uow.repo.save_campaign("bare", "b.yaml", "h", {"name": "bare"}, NOW)
        uow.commit()
    (eid,) = enroll(uow_factory, c.id, "p@x.com")
    record = add(uow_factory, new_draft(eid))
    with uow_factory() as uow:
        view = uow.repo.get_draft(record.id)
        assert uow.repo.list_drafts([DraftState.PENDING_APPROVAL], rep_email="") != []
    assert view is not None
    assert view.rep_email == ""


# -- compare-and-set ----------------------------------------------------------------------------


def test_update_draft_is_a_compare_and_set_on_the_revision(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    (eid,) = enroll(uow_factory, campaign(uow_factory, "c").id, "p@x.com")
    record = add(uow_factory, new_draft(eid))
    decided = datetime(2025, 3, 3, 12, 0, tzinfo=PARIS)
    with uow_factory() as uow:
        updated = uow.repo.update_draft(
            record.id,
            1,
            LATER,
            state=DraftState.APPROVED,
            subject="Edited ✓",
            headers={"X-Note": "ü"},
            html=None,
            decided_by="rep@example.com",
            decided_at=decided,
            reason="fine",
        )
        uow.commit()
    assert updated == replace(
        record,
        state=DraftState.APPROVED,
        subject="Edited ✓",
        headers={"X-Note": "ü"},
        html=None,
        decided_by="rep@example.com",
        decided_at=decided,
        reason="fine",
        revision=2,
        updated_at=LATER,
    )
    assert updated is not None
    assert_utc(updated.decided_at)
    with uow_factory() as uow:
        stale = uow.repo.update_draft(record.id, 1, LATER, subject="lost update")
        missing = uow.repo.update_draft(record.id + 1, 1, LATER, subject="nobody")
        uow.commit()
    assert (stale, missing) == (None, None)
    with uow_factory() as uow:
        (stored,) = uow.repo.drafts_of(eid)
        assert stored == updated  # the stale write changed nothing
        touched = uow.repo.update_draft(record.id, 2, LATER)
        assert touched is not None
        assert touched.revision == 3


def test_update_draft_loses_to_a_concurrent_writer(uow_factory: SqlUnitOfWorkFactory) -> None:
    (eid,) = enroll(uow_factory, campaign(uow_factory, "c").id, "p@x.com")
    record = add(uow_factory, new_draft(eid))
    # (Separate units of work, as separate requests: on SQLite each one holds the write lock.)
    with uow_factory() as slow:
        seen = slow.repo.get_draft(record.id)  # the rep looks at revision 1 ...
        assert seen is not None
    with uow_factory() as fast:  # ... someone else approves it meanwhile ...
        won = fast.repo.update_draft(record.id, 1, LATER, state=DraftState.APPROVED)
        fast.commit()
    assert won is not None
    assert won.revision == 2
    with uow_factory() as slow:
        lost = slow.repo.update_draft(record.id, seen.draft.revision, LATER, subject="mine")
        slow.commit()
    assert lost is None
    with uow_factory() as uow:
        (stored,) = uow.repo.drafts_of(eid)
    assert (stored.state, stored.subject, stored.revision) == (
        DraftState.APPROVED,
        record.subject,
        2,
    )


def test_update_draft_refuses_other_columns(uow_factory: SqlUnitOfWorkFactory) -> None:
    (eid,) = enroll(uow_factory, campaign(uow_factory, "c").id, "p@x.com")
    record = add(uow_factory, new_draft(eid))
    with uow_factory() as uow:
        for bad in ({"revision": 9}, {"message_id": "<x@y>"}, {"step_index": 3}, {"nope": 1}):
            with pytest.raises(ValueError, match="update_draft cannot change"):
                uow.repo.update_draft(record.id, 1, LATER, **bad)
        (stored,) = uow.repo.drafts_of(eid)
    assert stored == record


# -- events -------------------------------------------------------------------------------------


def test_draft_events_round_trip_in_order(uow_factory: SqlUnitOfWorkFactory) -> None:
    a, b = enroll(uow_factory, campaign(uow_factory, "c").id, "a@x.com", "b@x.com")
    da = add(uow_factory, new_draft(a))
    db = add(uow_factory, new_draft(b))
    events = [
        DraftEvent(da.id, "refseq", "created", {}, {"state": "pending_approval"}, LATER),
        # A rep's wall clock behind the drafter's simulated `--now`: recorded order still wins.
        DraftEvent(da.id, "rep@example.com", "edit", {"subject": "a"}, {"subject": "ä ✓"}, NOW),
        DraftEvent(db.id, "refseq", "created", {}, {"n": None, "l": [1, 2.5]}, NOW),
        DraftEvent(da.id, "rep@example.com", "approve", {"revision": 2}, {"revision": 3}, NOW),
    ]
    with uow_factory() as uow:
        for e in events:
            uow.repo.add_draft_event(e)
        uow.commit()
    with uow_factory() as uow:
        got = uow.repo.draft_events(da.id)
        other = uow.repo.draft_events(db.id)
        assert uow.repo.draft_events(db.id + 1) == []
    assert got == [events[0], events[1], events[3]]  # in the order they were recorded
    assert other == [events[2]]
    for e in got:
        assert_utc(e.at)


def test_an_event_needs_an_existing_draft(uow_factory: SqlUnitOfWorkFactory) -> None:
    with uow_factory() as uow, pytest.raises(IntegrityError):
        uow.repo.add_draft_event(DraftEvent(999, "refseq", "created", {}, {}, NOW))


# -- due enrollments ----------------------------------------------------------------------------


def test_due_enrollments_filters_and_orders(uow_factory: SqlUnitOfWorkFactory) -> None:
    live = campaign(uow_factory, "live")
    paused = campaign(uow_factory, "paused")
    stopped = campaign(uow_factory, "stopped")
    (late,) = enroll(uow_factory, live.id, "late@x.com", next_due_at=EARLIER)
    due_a, due_b = enroll(uow_factory, live.id, "a@x.com", "b@x.com", next_due_at=NOW)
    (future,) = enroll(uow_factory, live.id, "future@x.com", next_due_at=LATER)
    enroll(uow_factory, live.id, "undated@x.com", next_due_at=None)
    enroll(uow_factory, live.id, "held@x.com", state=EnrollmentState.HELD)
    enroll(uow_factory, live.id, "paused@x.com", state=EnrollmentState.PAUSED)
    enroll(uow_factory, live.id, "replied@x.com", state=EnrollmentState.REPLIED)
    (drafted,) = enroll(uow_factory, live.id, "drafted@x.com")
    (next_step,) = enroll(uow_factory, live.id, "next@x.com")
    enroll(uow_factory, paused.id, "in-paused@x.com")
    enroll(uow_factory, stopped.id, "in-stopped@x.com")
    set_status(uow_factory, paused.id, CampaignStatus.PAUSED)
    set_status(uow_factory, stopped.id, CampaignStatus.STOPPED)
    add(uow_factory, new_draft(drafted, 0))  # step 0 drafted: nothing due
    add(uow_factory, new_draft(next_step, 0))  # step 0 drafted and done: step 1 is due
    with uow_factory() as uow:  # sent: the next step's due time is set with it, as sending does
        uow.repo.update_enrollment(next_step, NOW, steps_done=1, next_due_at=NOW)
        uow.commit()
    with uow_factory() as uow:
        due = [e.id for e in uow.repo.due_enrollments(NOW, 100)]
        first_two = [e.id for e in uow.repo.due_enrollments(NOW, 2)]
        at_later = [e.id for e in uow.repo.due_enrollments(LATER, 100)]
        before = uow.repo.due_enrollments(EARLIER - timedelta(seconds=1), 100)
    assert due == [late, due_a, due_b, next_step]  # by next_due_at, then id
    assert first_two == [late, due_a]
    assert at_later == [late, due_a, due_b, next_step, future]
    assert before == []


def test_drafting_the_current_step_clears_next_due_at(uow_factory: SqlUnitOfWorkFactory) -> None:
    """A drafted step leaves the due index (so a tick does not walk drafts waiting for approval);
    a draft for another step (the thank-you note) leaves the enrollment's due time alone."""
    c = campaign(uow_factory, "c")
    current, other = enroll(uow_factory, c.id, "a@x.com", "b@x.com", next_due_at=EARLIER)
    add(uow_factory, new_draft(current, 0))
    add(uow_factory, new_draft(other, 1))
    with uow_factory() as uow:
        by_id = {e.id: e for e in uow.repo.list_enrollments(c.id)}
        due = [e.id for e in uow.repo.due_enrollments(NOW, 100)]
    assert by_id[current].next_due_at is None
    assert by_id[other].next_due_at == EARLIER
    assert due == [other]


def test_due_enrollments_are_full_records(uow_factory: SqlUnitOfWorkFactory) -> None:
    c = campaign(uow_factory, "c")
    enroll(uow_factory, c.id, "p@x.com", next_due_at=datetime(2025, 3, 3, 10, 0, tzinfo=PARIS))
    with uow_factory() as uow:
        (due,) = uow.repo.due_enrollments(NOW, 10)
        assert [due] == uow.repo.list_enrollments(c.id)
    assert due.next_due_at == datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
    assert_utc(due.next_due_at)


# -- campaigns and enrollments used by drafting -------------------------------------------------


def test_campaign_by_id(uow_factory: SqlUnitOfWorkFactory) -> None:
    c = campaign(uow_factory, "c")
    with uow_factory() as uow:
        assert uow.repo.campaign_by_id(c.id) == c
        assert uow.repo.campaign_by_id(c.id + 1) is None


def test_update_enrollment(uow_factory: SqlUnitOfWorkFactory) -> None:
    c = campaign(uow_factory, "c")
    a, b = enroll(uow_factory, c.id, "a@x.com", "b@x.com")
    until = datetime(2025, 4, 1, 9, 0, tzinfo=PARIS)
    with uow_factory() as uow:
        uow.repo.update_enrollment(
            a,
            LATER,
            state=EnrollmentState.PAUSED,
            steps_done=2,
            next_due_at=None,
            paused_until=until,
            hold_reason="out of office",
        )
        with pytest.raises(ValueError, match="update_enrollment cannot change"):
            uow.repo.update_enrollment(a, LATER, prospect_email="x@y.com")
        with pytest.raises(NotFound):
            uow.repo.update_enrollment(b + 100, LATER, steps_done=1)
        uow.commit()
    with uow_factory() as uow:
        got = {e.id: e for e in uow.repo.list_enrollments(c.id)}
    changed = got[a]
    assert (changed.state, changed.steps_done, changed.next_due_at, changed.hold_reason) == (
        EnrollmentState.PAUSED,
        2,
        None,
        "out of office",
    )
    assert (changed.paused_until, changed.updated_at, changed.created_at) == (until, LATER, NOW)
    assert_utc(changed.paused_until)
    assert (got[b].steps_done, got[b].updated_at) == (0, NOW)


def test_racing_drafters_insert_once(uow_factory: SqlUnitOfWorkFactory) -> None:
    """Two transactions draft the same step: the second waits for the first, then gets None."""
    (eid,) = enroll(uow_factory, campaign(uow_factory, "c").id, "p@x.com")
    results: list[DraftRecord | None] = []

    def second() -> None:
        with uow_factory() as uow:
            results.append(uow.repo.add_draft(new_draft(eid, message_id="<second@x>"), LATER))
            uow.commit()

    with uow_factory() as first:
        won = first.repo.add_draft(new_draft(eid), NOW)  # not committed yet
        racer = threading.Thread(target=second)
        racer.start()
        racer.join(0.3)
        assert racer.is_alive()  # blocked on the first transaction's row (or write lock)
        first.commit()
    racer.join(10)
    assert not racer.is_alive()
    assert won is not None
    assert results == [None]
    with uow_factory() as uow:
        assert uow.repo.drafts_of(eid) == [won]
