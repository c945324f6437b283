"""What the sending benchmarks share: a database per stage, approved drafts seeded fast, and the
exact bytes a raw baseline sends.

Seeding is set-based and untimed: one campaign per mailbox (each with its own SMTP username, so
its own mailbox key, cap and gap), N enrollments, and N approved step-1 drafts made from one
real rendered draft (``build_draft``) with each prospect's own address, Message-ID and
unsubscribe link, inserted with Core ``executemany``.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, make_url, select, text
from sqlalchemy.pool import NullPool

from benchmarks.harness import Context
from sequencer.adapters.db.migrate import upgrade
from sequencer.adapters.db.repository import DRAFTS, ENROLLMENTS
from sequencer.adapters.db.session import SqlUnitOfWorkFactory, make_uow_factory
from sequencer.core.drafts import DraftConfig, build_draft, message_bytes, to_message, with_date
from sequencer.core.ports import NewEnrollment
from sequencer.core.spec import parse_campaign
from sequencer.core.specjson import spec_from_json, spec_hash, spec_to_json
from sequencer.core.states import DraftState, EnrollmentState

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "sequencer" / "example" / "campaign.yaml"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday, inside every window
SECRET = "benchmark-secret-key-0123456789"
DRAFT_CFG = DraftConfig(SECRET, "https://refseq.acme.example", ROOT / "templates" / "email")


@cache
def _base_spec() -> dict[str, Any]:
    text = EXAMPLE.read_text(encoding="utf-8")
    text = (
        text.replace("min_gap: 90s", "min_gap: 0s")
        .replace("daily_cap: 150", "daily_cap: 10000")
        .replace("[mon, tue, wed, thu, fri]", "[mon, tue, wed, thu, fri, sat, sun]")
        .replace('start: "09:00", end: "17:00"', 'start: "00:00", end: "23:59"')
        .replace("approval: required", "approval: auto")
    )
    spec, errors, _ = parse_campaign(text, EXAMPLE)
    assert spec is not None, errors
    return spec_to_json(spec)


def spec_json(
    name: str,
    port: int,
    username: str,
    host: str = "127.0.0.1",
    imap: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec = copy.deepcopy(_base_spec())
    spec["name"] = name
    spec["mailbox"]["smtp"].update(host=host, port=port, username=username)
    if imap is not None:
        spec["mailbox"]["imap"].update(imap)
    spec["schedule"]["holidays"] = []
    spec["routing"]["webhook_url_env"] = None  # no CRM in the benchmarks
    return spec


# -- databases ----------------------------------------------------------------------------------


@contextmanager
def database(ctx: Context, kind: str, tag: str) -> Iterator[str]:
    """A fresh, migrated database of ``kind`` for one stage; removed afterwards."""
    if kind == "sqlite":
        path = Path(ctx.workdir) / f"{tag}-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"refseq_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ctx.pg_admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = make_url(ctx.pg_admin_url).set(database=name).render_as_string(hide_password=False)
        try:
            upgrade(url)
            yield url
        finally:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def clear(url: str) -> None:
    """Empty every table (the schema stays): each repetition starts from nothing."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as c:
            if engine.dialect.name == "postgresql":
                names = c.scalars(
                    text(
                        "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname ="
                        " current_schema() AND tablename <> 'alembic_version'"
                    )
                ).all()
                c.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
            else:
                c.exec_driver_sql("PRAGMA foreign_keys=OFF")
                names = c.scalars(
                    text(
                        "SELECT name FROM sqlite_master WHERE type='table'"
                        " AND name NOT IN ('alembic_version') AND name NOT LIKE 'sqlite_%'"
                    )
                ).all()
                for name in names:
                    c.exec_driver_sql(f'DELETE FROM "{name}"')
    finally:
        engine.dispose()


# -- seeding ------------------------------------------------------------------------------------


def _enrollment(i: int, box: int) -> NewEnrollment:
    email = f"p{i}.b{box}@prospect{i % 97}.example"
    return NewEnrollment(
        prospect_key=email,
        prospect_email=email,
        prospect={
            "email": email,
            "first_name": f"Pat{i}",
            "last_name": "Lee",
            "title": "CTO",
            "company": f"Company {i}",
            "timezone": "UTC",
        },
        referrer={
            "id": "james-hervin",
            "name": "James Hervin",
            "email": "james@hervin.example",
            "title": "CFO",
            "company": "Northbank",
            "is_customer": True,
            "nps": 10,
            "our_strength": 5,
            "our_context": "a customer since 2021",
            "consent": True,
        },
        referral={"strength": 5, "context": "your former colleague at Chase", "row": i + 2},
        other_referrals=[],
        temperature="warm",
        sequence="warm",
        may_name_referrer=True,
        reason="bench",
        state=EnrollmentState.ACTIVE,
        hold_reason=None,
        next_due_at=None,
    )


def seed(
    url: str,
    n: int,
    port: int,
    mailboxes: int = 1,
    now: datetime = NOW,
    host: str = "127.0.0.1",
    imap: dict[str, Any] | None = None,
) -> list[tuple[str, str, bytes]]:
    """N approved, due step-1 drafts over ``mailboxes`` campaigns (one mailbox each).

    Returns (envelope from, recipient, message bytes) per draft: what refseq will send, for the
    raw baseline."""
    uow_factory = make_uow_factory(url)
    out: list[tuple[str, str, bytes]] = []
    try:
        per_box = [n // mailboxes + (1 if b < n % mailboxes else 0) for b in range(mailboxes)]
        campaign_ids: list[int] = []
        with uow_factory() as uow:
            for box in range(mailboxes):
                spec = spec_json(f"bench-{box}", port, f"box{box}", host, imap)
                record, _ = uow.repo.save_campaign(
                    spec["name"], str(EXAMPLE), spec_hash(spec, []), spec, now
                )
                campaign_ids.append(record.id)
            uow.commit()
        i = 0
        for box, count in enumerate(per_box):
            spec_doc = spec_json(f"bench-{box}", port, f"box{box}", host, imap)
            spec = spec_from_json(spec_doc)
            rows = [_enrollment(i + k, box) for k in range(count)]
            i += count
            with uow_factory() as uow:
                uow.repo.add_enrollments(campaign_ids[box], rows, now)
                uow.commit()
            if not rows:
                continue
            out.extend(_drafts(uow_factory, spec, campaign_ids[box], rows, now))
    finally:
        uow_factory.dispose()
    return out


def _drafts(
    uow_factory: SqlUnitOfWorkFactory,
    spec: Any,
    campaign_id: int,
    rows: list[NewEnrollment],
    now: datetime,
) -> list[tuple[str, str, bytes]]:
    from sequencer.core.drafts import unsubscribe_url

    with uow_factory() as uow:
        session = uow.session
        ids = dict(
            session.execute(
                select(ENROLLMENTS.c.prospect_email, ENROLLMENTS.c.id).where(
                    ENROLLMENTS.c.campaign_id == campaign_id
                )
            ).all()
        )
        model = build_draft(spec, rows[0], ids[rows[0].prospect_email], 0, [], DRAFT_CFG, now)
        values: list[dict[str, Any]] = []
        out: list[tuple[str, str, bytes]] = []
        due = now - timedelta(minutes=1)
        domain = spec.rep.email.rsplit("@", 1)[-1]
        for row in rows:
            draft = replace(
                model,
                enrollment_id=ids[row.prospect_email],
                to_email=row.prospect_email,
                message_id=f"<{uuid.uuid4().hex}@{domain}>",
                headers={
                    "X-Refseq-Unsubscribe-Url": unsubscribe_url(
                        DRAFT_CFG, row.prospect_email, spec.name
                    )
                },
                due_at=due,
            )
            record = {k: getattr(draft, k) for k in DRAFT_FIELDS if hasattr(draft, k)}
            record.update(
                campaign_id=campaign_id, revision=1, created_at=now, updated_at=now, attempts=0
            )
            stored = message_bytes(to_message(draft, spec, row.prospect, now))
            record["message"] = stored  # as build_draft stores it
            values.append(record)
            out.append((spec.rep.email, row.prospect_email, with_date(stored, NOW)))
        for start in range(0, len(values), 2000):
            session.execute(insert(DRAFTS), values[start : start + 2000])
        uow.commit()
    return out


DRAFT_FIELDS = tuple(c.name for c in DRAFTS.c)


def mark_sent(url: str, now: datetime) -> list[tuple[str, str, str]]:
    """Turn every seeded draft into a step 1 SENT at ``now`` (its enrollment waits three days
    for step 2). Returns (prospect email, Message-ID, subject) of each, for replies."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as c:
            c.execute(
                DRAFTS.update().values(
                    state=DraftState.SENT, sent_at=now, claimed_at=now, attempts=1, revision=3
                )
            )
            c.execute(
                ENROLLMENTS.update().values(steps_done=1, next_due_at=now + timedelta(days=3))
            )
            rows = c.execute(select(DRAFTS.c.to_email, DRAFTS.c.message_id, DRAFTS.c.subject)).all()
        return [(a, m, s) for a, m, s in rows]
    finally:
        engine.dispose()
