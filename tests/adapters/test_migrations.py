"""Alembic migrations: up/down/up on both backends, and no drift from the models."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect

from sequencer.adapters.db import migrate
from sequencer.adapters.db.session import make_engine, make_uow_factory
from sequencer.adapters.db.tables import Base
from sequencer.adapters.db.types import render_item
from sequencer.core.states import DraftState
from tests.adapters.test_db_repository import enrollment

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
TABLES_0001 = {"campaigns", "enrollments", "suppressions"}
ADDED_LATER = {"enrollments": ("soft_bounces",)}  # columns of 0001's tables added since
TABLES = TABLES_0001 | {
    "drafts",
    "draft_events",
    "mailboxes",
    "reps",
    "login_tokens",
    "imap_checkpoints",
    "inbound_messages",
    "handoffs",
    "webhook_deliveries",
    "referrer_flags",
    "consent_changes",  # 0011
    "note_mentions",  # 0012
}


INDEXES_ADDED_LATER = {"ix_enrollments_state_paused_until"}  # 0007


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def campaign_names(url: str) -> list[str]:
    factory = make_uow_factory(url)
    try:
        with factory() as uow:
            return [s.campaign.name for s in uow.repo.list_campaigns()]
    finally:
        factory.dispose()


def add_campaign(url: str, name: str) -> None:
    factory = make_uow_factory(url)
    try:
        with factory() as uow:
            uow.repo.save_campaign(name, "c.yaml", "h", {"k": "v"}, NOW)
            uow.commit()
    finally:
        factory.dispose()


def add_draft(url: str, campaign: str) -> None:
    """Enroll one prospect in ``campaign`` and draft its first step, with the columns every
    revision since 0002 has (the repository writes today's columns: ``kind`` is 0012's)."""
    factory = make_uow_factory(url)
    try:
        with factory() as uow:
            record = uow.repo.get_campaign(campaign)
            assert record is not None
            if not uow.repo.list_enrollments(record.id):
                uow.repo.add_enrollments(record.id, [enrollment("p@x.com")], NOW)
            (enrolled,) = uow.repo.list_enrollments(record.id)
            uow.commit()
    finally:
        factory.dispose()
    engine = make_engine(url)
    try:
        drafts = Table("drafts", MetaData(), autoload_with=engine)
        with engine.begin() as connection:
            connection.execute(
                drafts.insert().values(
                    enrollment_id=enrolled.id,
                    campaign_id=record.id,
                    step_index=0,
                    template="intro",
                    state=DraftState.PENDING_APPROVAL.value,
                    to_email="p@x.com",
                    subject="Hi",
                    text="Hello",
                    html=None,
                    headers="{}" if engine.dialect.name == "sqlite" else {},
                    message_id="<1@x>",
                    due_at=NOW,
                    revision=1,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
    finally:
        engine.dispose()


def diff_against(url: str, metadata: MetaData) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "render_item": render_item}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_there_is_one_head() -> None:
    assert migrate.script_head() == "0014"


def test_it_upgrades_downgrades_and_upgrades_again(empty_db_url: str) -> None:
    assert migrate.current(empty_db_url) is None
    migrate.upgrade(empty_db_url)
    assert migrate.current(empty_db_url) == migrate.script_head()
    assert table_names(empty_db_url) == TABLES
    add_campaign(empty_db_url, "kept")

    assert migrate.ensure_schema(empty_db_url) is False  # current: nothing to do, row kept
    migrate.upgrade(empty_db_url)  # idempotent too
    assert campaign_names(empty_db_url) == ["kept"]

    migrate.downgrade(empty_db_url, "base")
    assert migrate.current(empty_db_url) is None
    assert table_names(empty_db_url) == set()

    migrate.upgrade(empty_db_url, "head")
    assert table_names(empty_db_url) == TABLES
    assert campaign_names(empty_db_url) == []
    add_campaign(empty_db_url, "again")
    assert campaign_names(empty_db_url) == ["again"]


def test_0007_clears_the_due_time_of_drafted_steps(empty_db_url: str) -> None:
    """Enrollments drafted before 0007 leave the due index as add_draft now makes them do."""
    migrate.upgrade(empty_db_url, "0006")
    add_campaign(empty_db_url, "c")
    add_draft(empty_db_url, "c")  # p@x.com: step 0 drafted
    factory = make_uow_factory(empty_db_url)
    try:
        with factory() as uow:
            record = uow.repo.get_campaign("c")
            assert record is not None
            uow.repo.add_enrollments(record.id, [enrollment("q@x.com")], NOW)
            for e in uow.repo.list_enrollments(record.id):  # due, as revision 0006 left them
                uow.repo.update_enrollment(e.id, NOW, next_due_at=NOW)
            uow.commit()
        migrate.upgrade(empty_db_url)
        with factory() as uow:
            due = {e.prospect_email: e.next_due_at for e in uow.repo.list_enrollments(record.id)}
    finally:
        factory.dispose()
    assert due == {"p@x.com": None, "q@x.com": NOW}
    engine = make_engine(empty_db_url)
    try:
        indexes = {i["name"] for i in inspect(engine).get_indexes("enrollments")}
    finally:
        engine.dispose()
    assert "ix_enrollments_state_paused_until" in indexes


def test_drafts_downgrade_to_0001_and_come_back(empty_db_url: str) -> None:
    """0002 (drafts) goes away and comes back without touching 0001's tables or rows."""
    migrate.upgrade(empty_db_url, "0001")
    assert migrate.current(empty_db_url) == "0001"
    assert table_names(empty_db_url) == TABLES_0001
    add_campaign(empty_db_url, "before-drafts")

    migrate.upgrade(empty_db_url)
    assert migrate.current(empty_db_url) == migrate.script_head()
    assert table_names(empty_db_url) == TABLES
    add_draft(empty_db_url, "before-drafts")

    migrate.downgrade(empty_db_url, "0001")
    assert migrate.current(empty_db_url) == "0001"
    assert table_names(empty_db_url) == TABLES_0001
    assert campaign_names(empty_db_url) == ["before-drafts"]
    before_drafts = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        if table.name in TABLES_0001:
            copy = table.to_metadata(before_drafts)
            for name in ADDED_LATER.get(table.name, ()):
                copy._columns.remove(copy.c[name])  # a column a later revision added
            for index in [i for i in copy.indexes if i.name in INDEXES_ADDED_LATER]:
                copy.indexes.remove(index)
    assert diff_against(empty_db_url, before_drafts) == []  # 0001's schema, exactly

    migrate.upgrade(empty_db_url)
    assert table_names(empty_db_url) == TABLES
    assert diff_against(empty_db_url, Base.metadata) == []
    add_draft(empty_db_url, "before-drafts")  # step 0 is free again: the drafts went with 0002


def test_the_migrations_match_the_models(db_url: str) -> None:
    """The `alembic check` equivalent: autogenerate finds nothing to do."""
    assert diff_against(db_url, Base.metadata) == []


def test_the_drift_check_notices_a_model_change(db_url: str) -> None:
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["suppressions"].append_column(Column("hits", Integer, nullable=True))
    diff = diff_against(db_url, changed)
    assert len(diff) == 1
    assert "add_column" in repr(diff[0])
    assert "hits" in repr(diff[0])


def test_ensure_schema_creates_an_empty_sqlite_file_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "new.db"
    path.parent.mkdir()
    url = f"sqlite:///{path}"
    assert migrate.ensure_schema(url) is True
    assert table_names(url) == TABLES
    assert migrate.current(url) == migrate.script_head()
    add_campaign(url, "first")
    assert migrate.ensure_schema(url) is False
    assert campaign_names(url) == ["first"]


def test_autogenerate_renders_plain_sqlalchemy_types(empty_db_url: str) -> None:
    """A new revision must never import the application (render_item does that)."""
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "render_item": render_item}
            )
            script = produce_migrations(context, Base.metadata)
            assert script.upgrade_ops is not None
            assert script.downgrade_ops is not None
            code = "\n".join(
                render_python_code(ops, render_item=render_item, migration_context=context)
                for ops in (script.upgrade_ops, script.downgrade_ops)
            )
    finally:
        engine.dispose()
    assert "sequencer" not in code
    assert "UTCDateTime" not in code
    assert "StrEnumType" not in code
    assert "sa.DateTime(timezone=True)" in code
    assert "sa.String(length=20)" in code
    assert "sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')" in code
    namespace: dict[str, object] = {}
    header = (
        "import sqlalchemy as sa\n"
        "from alembic import op\n"
        "from sqlalchemy.dialects import postgresql\n"
    )
    exec(compile(header + "def run():\n" + code, "<rendered>", "exec"), namespace)


def test_processes_starting_together_migrate_once(empty_db_url: str) -> None:
    script = (
        "import sys; from sequencer.adapters.db.migrate import ensure_schema as e; e(sys.argv[1])"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    assert migrate.current(empty_db_url) == migrate.script_head()
    assert table_names(empty_db_url) == TABLES
