"""Alembic migrations: up/down/up on both backends, and no drift from the models."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect

from sequencer.adapters.db import migrate
from sequencer.adapters.db.session import make_engine, make_uow_factory
from sequencer.adapters.db.tables import Base
from sequencer.adapters.db.types import render_item

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
TABLES = {"campaigns", "enrollments", "suppressions"}


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
    assert migrate.script_head() == "0001"


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
    with ThreadPoolExecutor(max_workers=4) as pool:
        ran = list(pool.map(lambda _: migrate.ensure_schema(empty_db_url), range(4)))
    assert any(ran)
    assert migrate.current(empty_db_url) == migrate.script_head()
    assert table_names(empty_db_url) == TABLES
