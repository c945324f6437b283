"""SqlRepository and SqlUnitOfWork against real SQLite and PostgreSQL databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, make_url
from sqlalchemy.exc import IntegrityError, StatementError

from sequencer.adapters.db import repository
from sequencer.adapters.db.session import SqlUnitOfWorkFactory, make_engine, normalize_url
from sequencer.core.ports import CampaignRecord, NewEnrollment
from sequencer.core.states import CampaignStatus, EnrollmentState
from sequencer.errors import NotFound

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def enrollment(
    email: str,
    state: EnrollmentState = EnrollmentState.ACTIVE,
    *,
    temperature: str = "warm",
    next_due_at: datetime | None = NOW,
    **changes: Any,
) -> NewEnrollment:
    values: dict[str, Any] = {
        "prospect_key": email.casefold(),
        "prospect_email": email,
        "prospect": {"email": email, "first_name": "Ann"},
        "referrer": {"name": "Rita", "email": "rita@example.com"},
        "referral": {"strength": 3, "context": "worked together", "row": 2},
        "other_referrals": [],
        "temperature": temperature,
        "sequence": "default",
        "may_name_referrer": True,
        "reason": "strongest referral",
        "state": state,
        "hold_reason": "needs consent" if state is EnrollmentState.HELD else None,
        "next_due_at": next_due_at,
    }
    values.update(changes)
    return NewEnrollment(**values)


def save(
    uow_factory: SqlUnitOfWorkFactory, name: str, spec: dict[str, Any] | None = None
) -> CampaignRecord:
    with uow_factory() as uow:
        record, _ = uow.repo.save_campaign(name, f"{name}.yaml", "h1", spec or {"n": name}, NOW)
        uow.commit()
    return record


def enroll(uow_factory: SqlUnitOfWorkFactory, campaign_id: int, *rows: NewEnrollment) -> int:
    with uow_factory() as uow:
        n = uow.repo.add_enrollments(campaign_id, rows, NOW)
        uow.commit()
    return n


def set_status(uow_factory: SqlUnitOfWorkFactory, campaign_id: int, status: CampaignStatus) -> None:
    with uow_factory() as uow:
        uow.repo.set_campaign_status(campaign_id, status, LATER)
        uow.commit()


# -- unit of work -------------------------------------------------------------------------------


def test_entering_returns_the_unit_of_work(uow_factory: SqlUnitOfWorkFactory) -> None:
    uow = uow_factory()
    with uow as entered:
        assert entered is uow
        assert isinstance(uow.repo, repository.SqlRepository)


def test_it_keeps_only_committed_work(uow_factory: SqlUnitOfWorkFactory) -> None:
    with uow_factory() as uow:
        uow.repo.save_campaign("kept", "s", "h", {}, NOW)
        uow.commit()
        uow.repo.save_campaign("dropped", "s", "h", {}, NOW)
    with uow_factory() as uow:
        uow.repo.save_campaign("rolled-back", "s", "h", {}, NOW)
        uow.rollback()
        uow.commit()
    failing = uow_factory()

    def fail_inside() -> None:
        with failing as uow:
            uow.repo.save_campaign("failed", "s", "h", {}, NOW)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_inside()
    with uow_factory() as uow:
        names = [s.campaign.name for s in uow.repo.list_campaigns()]
    assert names == ["kept"]


# -- campaigns ----------------------------------------------------------------------------------


def test_it_creates_then_updates_a_campaign_keeping_its_status(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    with uow_factory() as uow:
        first, created = uow.repo.save_campaign("spring", "a.yaml", "h1", {"v": 1}, NOW)
        uow.commit()
    assert created
    assert (first.name, first.status, first.spec, first.created_at) == (
        "spring",
        CampaignStatus.ACTIVE,
        {"v": 1},
        NOW,
    )
    set_status(uow_factory, first.id, CampaignStatus.PAUSED)
    with uow_factory() as uow:
        second, created = uow.repo.save_campaign("spring", "b.yaml", "h2", {"v": 2}, LATER)
        uow.commit()
    assert not created
    assert second.id == first.id
    assert (second.status, second.source, second.spec_hash, second.spec) == (
        CampaignStatus.PAUSED,
        "b.yaml",
        "h2",
        {"v": 2},
    )
    assert (second.created_at, second.updated_at) == (NOW, LATER)
    with uow_factory() as uow:
        assert uow.repo.get_campaign("spring") == second
        assert uow.repo.get_campaign("autumn") is None


def test_it_refuses_the_status_of_a_missing_campaign(uow_factory: SqlUnitOfWorkFactory) -> None:
    with uow_factory() as uow, pytest.raises(NotFound):
        uow.repo.set_campaign_status(12345, CampaignStatus.STOPPED, NOW)


def test_it_counts_enrollments_per_state_and_temperature(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    a = save(uow_factory, "a")
    b = save(uow_factory, "b")
    save(uow_factory, "c-empty")
    enroll(
        uow_factory,
        a.id,
        enrollment("1@x.com"),
        enrollment("2@x.com", temperature="cold"),
        enrollment("3@x.com", EnrollmentState.HELD, temperature="cold"),
    )
    enroll(uow_factory, b.id, enrollment("1@x.com", EnrollmentState.HELD))
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(uow_factory.engine, "before_cursor_execute", count)
    try:
        with uow_factory() as uow:
            summaries = uow.repo.list_campaigns()
    finally:
        event.remove(uow_factory.engine, "before_cursor_execute", count)
    by_name = {s.campaign.name: s for s in summaries}
    assert [s.campaign.name for s in summaries] == ["a", "b", "c-empty"]
    assert by_name["a"].by_state == {"active": 2, "held": 1}
    assert by_name["a"].by_temperature == {"warm": 1, "cold": 2}
    assert by_name["a"].total == 3
    assert (by_name["b"].by_state, by_name["b"].by_temperature) == ({"held": 1}, {"warm": 1})
    assert (by_name["c-empty"].by_state, by_name["c-empty"].total) == ({}, 0)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3  # campaigns + two GROUP BYs, however many campaigns


# -- enrollments --------------------------------------------------------------------------------


def test_it_adds_enrollments_in_chunks_and_reports_progress(
    uow_factory: SqlUnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repository, "INSERT_CHUNK", 3)
    campaign = save(uow_factory, "c")
    seen: list[int] = []

    def rows() -> Iterator[NewEnrollment]:  # any iterable, consumed once
        for i in range(7):
            yield enrollment(f"P{i}@Example.com")

    with uow_factory() as uow:
        assert uow.repo.add_enrollments(campaign.id, rows(), NOW, seen.append) == 7
        assert uow.repo.add_enrollments(campaign.id, [], NOW, seen.append) == 0
        uow.commit()
    assert seen == [3, 6, 7]
    with uow_factory() as uow:
        states = uow.repo.enrollment_states(campaign.id)
        listed = uow.repo.list_enrollments(campaign.id)
    assert states == {f"p{i}@example.com": EnrollmentState.ACTIVE for i in range(7)}
    assert [e.prospect_email for e in listed] == [f"P{i}@Example.com" for i in range(7)]
    first = listed[0]
    assert (first.campaign_id, first.steps_done, first.paused_until) == (campaign.id, 0, None)
    assert (first.created_at, first.updated_at) == (NOW, NOW)


def test_the_database_enforces_one_enrollment_per_prospect_and_campaign(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    a = save(uow_factory, "a")
    b = save(uow_factory, "b")
    enroll(uow_factory, a.id, enrollment("dup@x.com"))
    assert enroll(uow_factory, b.id, enrollment("dup@x.com")) == 1  # another campaign is fine
    with uow_factory() as uow, pytest.raises(IntegrityError):
        uow.repo.add_enrollments(a.id, [enrollment("dup@x.com")], NOW)


def test_the_database_enforces_the_campaign_foreign_key(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    with uow_factory() as uow, pytest.raises(IntegrityError):
        uow.repo.add_enrollments(98765, [enrollment("orphan@x.com")], NOW)


def test_datetimes_come_back_aware_utc_at_the_same_instant(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    campaign = save(uow_factory, "tz")
    paris = timezone(timedelta(hours=2))
    due = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=paris)
    with uow_factory() as uow:
        uow.repo.add_enrollments(campaign.id, [enrollment("t@x.com", next_due_at=due)], due)
        uow.commit()
    with uow_factory() as uow:
        (got,) = uow.repo.list_enrollments(campaign.id)
    for value in (got.next_due_at, got.created_at, got.updated_at):
        assert value == due
        assert value is not None
        assert value.utcoffset() == timedelta(0)
        assert value.tzinfo is not None
        assert value.hour == 12
    assert campaign.created_at.tzinfo is not None
    assert campaign.created_at.utcoffset() == timedelta(0)


def test_it_refuses_naive_datetimes(uow_factory: SqlUnitOfWorkFactory) -> None:
    campaign = save(uow_factory, "naive")
    naive = datetime(2025, 1, 1, 12, 0)  # naive on purpose
    with uow_factory() as uow, pytest.raises(StatementError, match="naive datetime"):
        uow.repo.add_enrollments(campaign.id, [enrollment("n@x.com", next_due_at=naive)], NOW)


def test_json_round_trips_unicode(uow_factory: SqlUnitOfWorkFactory) -> None:
    spec = {"name": "Ünïcødé ✓", "steps": [{"subject": "こんにちは 👋"}], "n": 1.5, "ok": None}
    campaign = save(uow_factory, "json", spec)
    row = enrollment(
        "zoë@exämple.com",
        prospect={"email": "zoë@exämple.com", "first_name": "Zoë", "company": "Łódź S.A."},
        referrer={"name": "Renée", "tags": ["日本", "Ω"], "nested": {"k": "ü"}},
        other_referrals=[{"name": "Søren", "strength": 1}],
    )
    enroll(uow_factory, campaign.id, row)
    with uow_factory() as uow:
        assert uow.repo.get_campaign("json") == campaign
        assert campaign.spec == spec
        (got,) = uow.repo.list_enrollments(campaign.id)
    assert (got.prospect_key, got.prospect_email) == ("zoë@exämple.com", "zoë@exämple.com")
    assert (got.prospect, got.referrer, got.referral, got.other_referrals) == (
        row.prospect,
        row.referrer,
        row.referral,
        row.other_referrals,
    )


def test_it_lists_enrollments_by_state(uow_factory: SqlUnitOfWorkFactory) -> None:
    campaign = save(uow_factory, "c")
    enroll(
        uow_factory,
        campaign.id,
        enrollment("a@x.com"),
        enrollment("b@x.com", EnrollmentState.HELD, next_due_at=None),
        enrollment("c@x.com", EnrollmentState.PAUSED),
    )
    with uow_factory() as uow:
        held = uow.repo.list_enrollments(campaign.id, [EnrollmentState.HELD])
        live = uow.repo.list_enrollments(
            campaign.id, iter([EnrollmentState.ACTIVE, EnrollmentState.PAUSED])
        )
        none = uow.repo.list_enrollments(campaign.id, [])
        other = uow.repo.list_enrollments(campaign.id + 1)
    assert [(e.prospect_key, e.state, e.hold_reason) for e in held] == [
        ("b@x.com", EnrollmentState.HELD, "needs consent")
    ]
    assert held[0].next_due_at is None
    assert [e.prospect_key for e in live] == ["a@x.com", "c@x.com"]
    assert (none, other) == ([], [])


def test_it_replaces_only_a_held_enrollment(uow_factory: SqlUnitOfWorkFactory) -> None:
    campaign = save(uow_factory, "c")
    enroll(
        uow_factory,
        campaign.id,
        enrollment("held@x.com", EnrollmentState.HELD, next_due_at=None),
        enrollment("active@x.com"),
    )
    released = enrollment(
        "held@x.com", temperature="cold", reason="consent given", may_name_referrer=False
    )
    with uow_factory() as uow:
        assert uow.repo.replace_held(campaign.id, released, LATER)
        assert not uow.repo.replace_held(campaign.id, enrollment("active@x.com"), LATER)
        assert not uow.repo.replace_held(campaign.id, enrollment("nobody@x.com"), LATER)
        uow.commit()
    with uow_factory() as uow:
        got = {e.prospect_key: e for e in uow.repo.list_enrollments(campaign.id)}
    held = got["held@x.com"]
    assert (held.state, held.hold_reason, held.temperature, held.reason) == (
        EnrollmentState.ACTIVE,
        None,
        "cold",
        "consent given",
    )
    assert (held.may_name_referrer, held.next_due_at, held.updated_at) == (False, NOW, LATER)
    assert held.created_at == NOW
    assert got["active@x.com"].updated_at == NOW


def test_live_elsewhere_names_other_active_or_paused_campaigns(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    active = save(uow_factory, "active")
    paused = save(uow_factory, "paused")
    stopped = save(uow_factory, "stopped")
    mine = save(uow_factory, "mine")
    set_status(uow_factory, paused.id, CampaignStatus.PAUSED)
    set_status(uow_factory, stopped.id, CampaignStatus.STOPPED)
    enroll(
        uow_factory,
        active.id,
        enrollment("live@x.com"),
        enrollment("done@x.com", EnrollmentState.COMPLETED),
        enrollment("replied@x.com", EnrollmentState.REPLIED),
        enrollment("twice@x.com", EnrollmentState.PAUSED),
    )
    enroll(
        uow_factory,
        paused.id,
        enrollment("held@x.com", EnrollmentState.HELD),
        enrollment("twice@x.com"),
    )
    enroll(uow_factory, stopped.id, enrollment("stale@x.com"))
    enroll(uow_factory, mine.id, enrollment("own@x.com"), enrollment("live@x.com"))
    with uow_factory() as uow:
        for_mine = uow.repo.live_elsewhere(mine.id)
        for_active = uow.repo.live_elsewhere(active.id)
        for_all = uow.repo.live_elsewhere(None)
    others = {"live@x.com": "active", "twice@x.com": "active", "held@x.com": "paused"}
    assert for_mine == others
    assert for_active == {
        "held@x.com": "paused",
        "twice@x.com": "paused",
        "own@x.com": "mine",
        "live@x.com": "mine",
    }
    assert for_all == {**others, "own@x.com": "mine"}


def test_it_adds_twenty_thousand_enrollments(uow_factory: SqlUnitOfWorkFactory) -> None:
    campaign = save(uow_factory, "big")
    seen: list[int] = []
    rows = (
        enrollment(f"p{i}@x.com", temperature="warm" if i % 4 else "cold") for i in range(20_000)
    )
    with uow_factory() as uow:
        assert uow.repo.add_enrollments(campaign.id, rows, NOW, seen.append) == 20_000
        uow.commit()
    assert seen == list(range(2000, 20_001, 2000))
    with uow_factory() as uow:
        (summary,) = uow.repo.list_campaigns()
        assert len(uow.repo.enrollment_states(campaign.id)) == 20_000
    assert summary.by_state == {"active": 20_000}
    assert summary.by_temperature == {"warm": 15_000, "cold": 5_000}


# -- suppressions -------------------------------------------------------------------------------


def test_suppressions_are_case_insensitive_and_unique(uow_factory: SqlUnitOfWorkFactory) -> None:
    with uow_factory() as uow:
        assert uow.repo.add_suppression("Bob@Example.COM", "unsubscribed", "reply", NOW)
        assert not uow.repo.add_suppression(" bob@example.com ", "again", "cli", LATER)
        assert uow.repo.add_suppression("@Competitor.IO", "competitor", "cli", NOW)
        uow.commit()
    with uow_factory() as uow:
        assert not uow.repo.add_suppression("BOB@EXAMPLE.COM", "again", "cli", LATER)
        assert uow.repo.suppressed_values() == {"bob@example.com", "@competitor.io"}
        listed = uow.repo.list_suppressions()
    assert [(s.value, s.reason, s.source) for s in listed] == [
        ("@competitor.io", "competitor", "cli"),
        ("bob@example.com", "unsubscribed", "reply"),
    ]
    assert all(s.created_at == NOW and s.created_at.utcoffset() == timedelta(0) for s in listed)
    with uow_factory() as uow:
        assert uow.repo.remove_suppression("BOB@example.com")
        assert not uow.repo.remove_suppression("bob@example.com")
        assert not uow.repo.remove_suppression("@nowhere.example")
        uow.commit()
    with uow_factory() as uow:
        assert uow.repo.suppressed_values() == {"@competitor.io"}


# -- engines ------------------------------------------------------------------------------------


def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.connect() as connection:
            got = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("foreign_keys", "journal_mode", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()
    assert got == {
        "foreign_keys": 1,
        "journal_mode": "wal",
        "busy_timeout": 30000,
        "synchronous": 1,
    }


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u:p%40ss@db:5433/refseq", "postgresql+psycopg"),
        ("postgresql://u@db/refseq", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/refseq", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_it_selects_psycopg_for_postgresql_urls(url: str, driver: str) -> None:
    normalized = make_url(normalize_url(url))
    assert normalized.drivername == driver
    assert normalized.database == make_url(url).database
    assert normalized.password == make_url(url).password


def test_it_refuses_other_databases() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        make_engine("mysql://u@h/db")


def test_active_naming_referrer_filters_in_sql(uow_factory: SqlUnitOfWorkFactory) -> None:
    """What a 'who is this referrer?' reply pauses: active enrollments of that campaign that
    may name that referrer (by the id in the referrer snapshot), nothing else."""
    c, other = save(uow_factory, "c"), save(uow_factory, "other")
    rita = {"id": "ref-7", "name": "Rita"}
    rows = [
        enrollment("a@x.com", referrer=rita),
        enrollment("b@x.com", referrer=rita),
        enrollment("unnamed@x.com", referrer=rita, may_name_referrer=False),
        enrollment("paused@x.com", EnrollmentState.PAUSED, referrer=rita),
        enrollment("other-ref@x.com", referrer={"id": "ref-70", "name": "Otto"}),
        enrollment("no-id@x.com"),
    ]
    with uow_factory() as uow:
        uow.repo.add_enrollments(c.id, rows, NOW)
        uow.repo.add_enrollments(other.id, [enrollment("elsewhere@x.com", referrer=rita)], NOW)
        uow.commit()
    with uow_factory() as uow:
        found = uow.repo.active_naming_referrer(c.id, "ref-7")
        none = uow.repo.active_naming_referrer(c.id, "ref-8")
    assert [e.prospect_email for e in found] == ["a@x.com", "b@x.com"]
    assert none == []
