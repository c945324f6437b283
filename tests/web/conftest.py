"""Shared set-up for the web tests: two reps with drafts, launched through the real CLI."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sequencer.adapters.db.reps import reps_factory
from sequencer.adapters.db.session import SqlUnitOfWorkFactory
from sequencer.adapters.web.passwords import Argon2Hasher, fast_hasher
from sequencer.config import Settings
from sequencer.core.ports import DraftRecord
from sequencer.resources import example_dir
from sequencer.services import accounts, approval
from sequencer.services.accounts import Role
from tests.cli_helpers import NOW, Cli

SECRET = "test-secret-key-0123456789"
BASE_URL = "https://refseq.acme.example"
TUESDAY = "2026-11-24T10:00:00+00:00"
DANA, EVE, ADMIN = "dana@acme.example", "eve@acme.example", "ops@acme.example"
PASSWORDS = {DANA: "dana-password-1", EVE: "eve-password-22", ADMIN: "admin-password-3"}
HASHER: Argon2Hasher = fast_hasher()
# A prospect whose name is markup: every page must show it as text.
EVIL_NAME = '<script>alert("x")</script>Ev'
# A referrer (in Eve's copy) whose name is markup and, to matplotlib, broken mathtext.
EVIL_REFERRER = r"<img src=x onerror=alert(1)>Lena $\frac$ Fox"


class Clock:
    """The app's clock; tests move it forward (rate-limit windows, link expiry)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def web_cli(db_url: str, cwd: Path) -> Cli:
    cli = Cli(db_url, cwd)
    cli.env.update(
        {"REFSEQ_SECRET_KEY": SECRET, "REFSEQ_BASE_URL": BASE_URL, "REFSEQ_ACTOR": "ops"}
    )
    return cli


def copy_campaign(
    source: Path, folder: Path, name: str, rep_name: str, rep_email: str, tag: str
) -> Path:
    """The example campaign under another name, rep and prospects (``x+tag@domain``)."""
    folder.mkdir(parents=True)
    for csv in ("prospects.csv", "referrers.csv", "referrals.csv"):
        text = (source.parent / csv).read_text(encoding="utf-8-sig")
        if csv != "referrers.csv":
            text = re.sub(r"([a-z.]+)@", rf"\1+{tag}@", text)
        if csv == "prospects.csv" and tag == "eve":
            text = text.replace("Elena,Park", f'"{EVIL_NAME}",Park')
        if csv == "referrers.csv" and tag == "eve":
            text = text.replace(",Lena Fox,", f",{EVIL_REFERRER},")
        (folder / csv).write_text(text, encoding="utf-8")
    yaml = source.read_text(encoding="utf-8")
    yaml = yaml.replace("campaign: q4-fintech-intros", f"campaign: {name}")
    yaml = yaml.replace("name: Dana Whitfield", f"name: {rep_name}")
    yaml = yaml.replace("email: dana@acme.example", f"email: {rep_email}")
    target = folder / "campaign.yaml"
    target.write_text(yaml, encoding="utf-8")
    return target


@dataclass(frozen=True)
class World:
    settings: Settings
    uow_factory: SqlUnitOfWorkFactory
    cli: Cli

    def pending(self, rep_email: str | None) -> list[int]:
        return [v.draft.id for v in approval.queue(self.uow_factory, rep_email=rep_email)]

    def draft(self, draft_id: int) -> DraftRecord:
        view, _ = approval.show(self.uow_factory, draft_id)
        return view.draft


def build_world(
    db_url: str,
    uow_factory: SqlUnitOfWorkFactory,
    tmp: Path,
    *,
    dana_campaigns: int = 1,
    days: tuple[str, ...] = (NOW,),
) -> World:
    """Dana's example campaign (plus ``dana_campaigns - 1`` copies), Eve's copy, their drafts
    at each of ``days``, and three accounts: Dana and Eve (reps) and an admin.
    ``dana_campaigns=0``: the accounts only."""
    cli = web_cli(db_url, tmp)
    yamls = []
    if dana_campaigns:
        shutil.copytree(example_dir(), tmp / "example")  # what `refseq init` writes
        example = tmp / "example" / "campaign.yaml"
        yamls.append(example)
    if dana_campaigns > 1:
        yamls.append(
            copy_campaign(example, tmp / "q1", "q1-payments-partners", "Dana Whitfield", DANA, "q1")
        )
    if dana_campaigns:
        yamls.append(copy_campaign(example, tmp / "eve", "eve-insurance", "Eve Stone", EVE, "eve"))
    for yaml in yamls:
        cli("launch", str(yaml), "--now", NOW)
    for day in days if yamls else ():
        cli("tick", "--now", day, "--only", "draft")
    units = reps_factory(uow_factory)
    now = datetime.now(UTC)
    for email, name, role in (
        (DANA, "Dana Whitfield", Role.REP),
        (EVE, "Eve Stone", Role.REP),
        (ADMIN, "Ops Admin", Role.ADMIN),
    ):
        accounts.add_rep(units, email, name, now, role, PASSWORDS[email], HASHER)
    settings = Settings(database_url=db_url, broker_url=None, secret_key=SECRET, base_url=BASE_URL)
    return World(settings, uow_factory, cli)


@pytest.fixture
def clock() -> Clock:
    return Clock()
