"""Seeded data every stage shares: the generated campaign files, fresh databases, bulk seeding.

Everything here is set up *outside* the timed parts. The same seed gives the same data on every
run, so two runs (and refseq's side and its baseline in one run) see identical input.

* :func:`generate` writes the example campaign YAML next to N generated prospects, N/25
  referrers and ~1.7 N referrals (1 to 3 referrers per prospect).
* :func:`fresh_database` yields the SQLAlchemy URL of a new, migrated database: a SQLite file
  in the stage's folder, or a ``refseq_bench_<hex>`` PostgreSQL database created from the admin
  URL and dropped (``WITH (FORCE)``) afterwards.
* :func:`launch` runs the real check + launch (the fastest way to get realistic enrollments
  for a few thousand prospects); :func:`clone_enrollments` multiplies launched rows in SQL
  (``INSERT ... SELECT`` over a number series) for the million-row tables.
"""

from __future__ import annotations

import csv
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_YAML = ROOT / "sequencer" / "example" / "campaign.yaml"
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York
CAMPAIGN = "q4-fintech-intros"
REP_EMAIL = "dana@acme.example"

FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")
LAST = ("Park", "Reyes", "Nair", "Dubois", "Tanaka", "Ortiz", "Silva", "Novak", "Berg", "Khan")
TITLES = ("CEO", "CTO", "CFO", "COO", "VP Engineering", "Head of Data", "CISO", "VP Sales")
ZONES = ("America/New_York", "America/Chicago", "Europe/London", "Europe/Paris", "Asia/Tokyo", "")
INDUSTRIES = ("banking", "payments", "lending", "insurance", "wealth")
PROSPECT_COLUMNS = ("email", "first_name", "last_name", "title", "company", "timezone", "industry")
REFERRER_COLUMNS = (
    "id", "name", "email", "title", "company", "is_customer", "nps", "our_strength",
    "our_context", "consent",
)  # fmt: skip
REFERRAL_COLUMNS = ("referrer_id", "prospect_email", "strength", "context")
CONTEXTS = (
    "your former colleague at Chase",
    "sat with you on a fintech panel, last spring",
    "invested alongside your seed round",
    'co-authored "Open Banking in Practice" with you',
    "your board colleague at the Springfield Fintech Guild",
)


# -- campaign files ----------------------------------------------------------------------------


def generate(folder: Path, n: int, seed: int = 2026) -> Path:
    """The example campaign YAML with N generated prospects; returns the YAML's path."""
    rng = random.Random(seed)
    n_referrers = max(20, n // 25)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "referrers.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(REFERRER_COLUMNS)
        for r in range(n_referrers):
            w.writerow(
                [
                    f"ref-{r}",
                    f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                    f"referrer{r}@partner{r % 97}.example",
                    rng.choice(TITLES),
                    f"Partner {r % 97}",
                    rng.choice(("yes", "no")),
                    rng.choice(("", *map(str, range(6, 11)))),
                    rng.randint(1, 5),
                    "worked with our CTO for five years at Microsoft",
                    "yes" if rng.random() < 0.85 else "no",
                ]
            )
    with (
        (folder / "prospects.csv").open("w", newline="", encoding="utf-8") as pf,
        (folder / "referrals.csv").open("w", newline="", encoding="utf-8") as rf,
    ):
        pw, rw = csv.writer(pf), csv.writer(rf)
        pw.writerow(PROSPECT_COLUMNS)
        rw.writerow(REFERRAL_COLUMNS)
        for i in range(n):
            email = f"prospect{i}@company{i % 5003}.example"
            pw.writerow(
                [
                    email,
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    rng.choice(TITLES),
                    f"Company {i % 5003}",
                    rng.choice(ZONES),
                    rng.choice(INDUSTRIES),
                ]
            )
            for r in rng.sample(range(n_referrers), rng.choice((1, 1, 1, 2, 2, 3))):
                rw.writerow([f"ref-{r}", email, rng.randint(1, 5), rng.choice(CONTEXTS)])
    text = EXAMPLE_YAML.read_text(encoding="utf-8")
    data_line = (
        "data:\n  prospects: prospects.csv\n  referrers: referrers.csv\n"
        "  referrals: referrals.csv\n"
    )
    assert data_line in text, "the example campaign's data block changed; update the benchmark"
    text = text.replace(
        data_line,
        "data:\n"
        f"  prospects: {folder / 'prospects.csv'}\n"
        f"  referrers: {folder / 'referrers.csv'}\n"
        f"  referrals: {folder / 'referrals.csv'}\n",
    )
    yaml = folder / "campaign.yaml"
    yaml.write_text(text, encoding="utf-8")
    return yaml


# -- databases ---------------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as a plain libpq one, for psycopg."""
    from sqlalchemy import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_pg(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards); yields its SQLAlchemy URL."""
    import psycopg
    from sqlalchemy import make_url

    name = f"refseq_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(admin_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(
    kind: str, workdir: str, pg_admin_url: str, migrate: bool = True
) -> Iterator[str]:
    """A new database of ``kind`` ("sqlite" or "postgresql"), migrated to the head revision
    unless ``migrate=False``; yields its SQLAlchemy URL."""
    from sequencer.adapters.db.migrate import ensure_schema

    if kind == "sqlite":
        path = Path(workdir) / f"refseq-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
        if migrate:
            ensure_schema(url)
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif kind == "postgresql":
        with fresh_pg(pg_admin_url) as url:
            if migrate:
                ensure_schema(url)
            yield url
    else:
        raise ValueError(f"unknown database {kind!r}")


def raw_connect(url: str) -> Any:
    """A plain DB-API connection (sqlite3 / psycopg) to the database at ``url``."""
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db
    import psycopg

    return psycopg.connect(libpq_url(url))


# -- enrollments -------------------------------------------------------------------------------


def draft_config() -> Any:
    from sequencer import bootstrap
    from sequencer.config import Settings

    return bootstrap.draft_config(
        Settings.from_env({"REFSEQ_SECRET_KEY": "benchmark-secret-key-0123456789"})
    )


def check(yaml: Path, render: bool = False) -> Any:
    from sequencer.services.checking import check_campaign

    return check_campaign(yaml, draft_config() if render else None)


def launch(url: str, folder: Path, n: int, now: datetime = NOW) -> int:
    """Generate N prospects in ``folder`` and launch them into ``url`` (the real services).
    Returns how many were enrolled."""
    from sequencer.adapters.db.session import make_uow_factory
    from sequencer.services.launch import launch_campaign

    checked = check(generate(folder, n))
    uow_factory = make_uow_factory(url)
    try:
        return launch_campaign(uow_factory, checked, now).enrolled
    finally:
        uow_factory.dispose()


def clone_enrollments(
    url: str,
    template_id: int,
    start: int,
    count: int,
    key_prefix: str,
    state: str,
    next_due_at: datetime | None,
) -> None:
    """Insert ``count`` copies of enrollment ``template_id`` in one ``INSERT ... SELECT``:
    prospect ``<key_prefix><i>@bench.example`` for i in [start, start + count), in ``state``,
    due at ``next_due_at``. Untimed seeding for the large tables (1M rows in seconds)."""
    from sqlalchemy import bindparam, text

    from sequencer.adapters.db.session import make_engine
    from sequencer.adapters.db.types import UTCDateTime

    sqlite = url.startswith("sqlite")
    if sqlite:
        series = (
            "WITH RECURSIVE s(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM s WHERE i < :stop) "
        )
        source = "s"
        email = "(:prefix || s.i || '@bench.example')"
    else:
        series = ""
        source = "generate_series(CAST(:start AS integer), CAST(:stop AS integer)) AS s(i)"
        email = "(:prefix || s.i::text || '@bench.example')"
    sql = (
        f"{series}INSERT INTO enrollments (campaign_id, prospect_key, prospect_email, prospect,"
        " referrer, referral, other_referrals, temperature, sequence, may_name_referrer, reason,"
        " state, hold_reason, steps_done, soft_bounces, next_due_at, paused_until, created_at,"
        " updated_at)"
        f" SELECT t.campaign_id, {email}, {email}, t.prospect, t.referrer, t.referral,"
        " t.other_referrals, t.temperature, t.sequence, t.may_name_referrer, t.reason, :state,"
        " NULL, 0, 0, :due, NULL, t.created_at, t.updated_at"
        f" FROM enrollments t, {source} WHERE t.id = :template"
    )
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(sql).bindparams(bindparam("due", type_=UTCDateTime())),
                {
                    "start": start,
                    "stop": start + count - 1,
                    "prefix": key_prefix,
                    "state": state,
                    "due": next_due_at,
                    "template": template_id,
                },
            )
    finally:
        engine.dispose()


@contextmanager
def copy_of(url: str, workdir: str, pg_admin_url: str) -> Iterator[str]:
    """A throwaway copy of the database at ``url`` (SQLite: the file; PostgreSQL: ``CREATE
    DATABASE ... TEMPLATE``), so each repetition starts from the same state. Close every
    connection to ``url`` first."""
    import shutil

    from sqlalchemy import make_url

    if url.startswith("sqlite"):
        path = Path(workdir) / f"copy-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(url.removeprefix("sqlite:///"), path)
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    source = make_url(url).database
    name = f"refseq_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
