"""Shared set-up for the SMTP, IMAP and race fault tests.

* :func:`module_database`: a migrated database (SQLite file or a fresh PostgreSQL database) that
  lives for a whole module, so a table of fault cases shares one launched campaign.
* :func:`write_campaign`: the example campaign with ``n`` generated prospects (all warm, New York,
  referred by James Hervin), auto approval, no gap, a high cap, pointing at a given SMTP port
  (and IMAP account).
* :func:`park_all` / :func:`make_due`: move approved drafts out of the way and bring exactly one
  back, so one ``send_due`` call sends exactly the draft a case is about.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sequencer.core.drafts import DraftConfig
from sequencer.core.ports import DraftView, UnitOfWork
from sequencer.core.states import DraftState
from tests.cli_helpers import Cli, imap_at, init_example
from tests.conftest import _truncate_all

SECRET = "test-secret-key-0123456789"
BASE_URL = "https://refseq.acme.example"
REP = "dana@acme.example"
MON = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York
FAR = datetime(2027, 6, 1, tzinfo=UTC)  # parked drafts are due then
DRAFT_CFG = DraftConfig(SECRET, BASE_URL, Path("templates/email"))
UowFactory = Callable[[], UnitOfWork]


@contextlib.contextmanager
def module_database(request: pytest.FixtureRequest, tmp: Path) -> Iterator[str]:
    """``request.param`` is "sqlite" or "postgresql" (use ``tests.conftest.DB_PARAMS``).

    PostgreSQL: the run's migrated database, emptied now (as ``db_url`` does before each test;
    the tests of one module run together). Not a database of its own: dropping one forces a
    checkpoint, seconds on a busy server."""
    if request.param == "sqlite":
        path = tmp / "refseq.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("pg_migrated_url")
    _truncate_all(request.getfixturevalue("pg_janitor"))
    yield url


def prospect(i: int) -> str:
    return f"p{i:03d}@bulk{i:03d}.example"


def write_campaign(
    cli: Cli,
    folder: Path,
    smtp_port: int,
    n: int,
    *,
    approval: str = "auto",
    imap: tuple[int, str, str] | None = None,
) -> Path:
    """The example campaign with ``n`` prospects ``prospect(i)``; ``imap`` = (port, user, env)."""
    yaml = init_example(cli, folder)
    (folder / "prospects.csv").write_text(
        "email,first_name,last_name,title,company,timezone,industry\n"
        + "".join(
            f"{prospect(i)},P{i},Bulk,CEO,Bulk {i},America/New_York,banking\n" for i in range(n)
        )
    )
    (folder / "referrals.csv").write_text(
        "referrer_id,prospect_email,strength,context\n"
        + "".join(f"james-hervin,{prospect(i)},5,your former colleague\n" for i in range(n))
    )
    text = (
        yaml.read_text()
        .replace("port: 2525", f"port: {smtp_port}")
        .replace("min_gap: 90s", "min_gap: 0s")
        .replace("daily_cap: 150", "daily_cap: 10000")
    )
    if approval == "auto":
        text = text.replace("approval: required", "approval: auto")
    if imap is not None:
        port, user, env = imap
        text = imap_at(text, port).replace(
            "username: dana, password_env: REFSEQ_IMAP_PASSWORD",
            f"username: {user}, password_env: {env}",
        )
    yaml.write_text(text)
    return yaml


def drafts(uow_factory: UowFactory, states: list[DraftState]) -> list[DraftView]:
    with uow_factory() as uow:
        views: list[DraftView] = uow.repo.list_drafts(states)
    return sorted(views, key=lambda v: v.draft.id)


def park_all(uow_factory: UowFactory, now: datetime) -> int:
    """Every approved draft becomes due at FAR (out of the way of the cases)."""
    parked = 0
    with uow_factory() as uow:
        for view in uow.repo.list_drafts([DraftState.APPROVED]):
            d = view.draft
            assert uow.repo.update_draft(d.id, d.revision, now, due_at=FAR) is not None
            parked += 1
        uow.commit()
    return parked


def make_due(uow_factory: UowFactory, draft_id: int, at: datetime) -> None:
    with uow_factory() as uow:
        view = uow.repo.get_draft(draft_id)
        assert view is not None and view.draft.state is DraftState.APPROVED
        d = view.draft
        assert uow.repo.update_draft(d.id, d.revision, at, due_at=at) is not None
        uow.commit()


def later(moment: datetime, **delta: float) -> datetime:
    return moment + timedelta(**delta)
