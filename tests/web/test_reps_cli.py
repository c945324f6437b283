"""`refseq rep …` and the accounts service, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sequencer.adapters.cli.main import app
from sequencer.adapters.db.reps import reps_factory
from sequencer.adapters.web.passwords import Argon2Hasher
from sequencer.services import accounts
from sequencer.services.accounts import Role
from tests.web.conftest import BASE_URL, HASHER, web_cli


@pytest.fixture
def cli(db_url, tmp_path):
    return web_cli(db_url, tmp_path)


def test_rep_add_link_and_list(cli, uow_factory):
    # CliRunner's stdin is not a terminal: without --password-stdin there is no prompt.
    out = cli("rep", "add", "Dana@Acme.example", "--name", "Dana Whitfield").stdout
    assert "added rep dana@acme.example (without a password: refseq rep link" in out
    err = cli("rep", "add", "dana@acme.example", code=1).stderr
    assert "rep dana@acme.example already exists" in err
    result = cli.runner.invoke(
        app,
        ["rep", "add", "ops@acme.example", "--admin", "--password-stdin"],
        input="a-long-password-1\n",
        env=cli.env,
    )
    assert result.exit_code == 0, result.stderr
    assert "added admin ops@acme.example (with a password)" in result.stdout
    rows = {r["email"]: (r["role"], r["password"]) for r in cli.json("rep", "list")}
    assert rows == {"dana@acme.example": ("rep", False), "ops@acme.example": ("admin", True)}

    link = cli("rep", "link", "dana@acme.example")
    url = link.stdout.strip()
    assert url.startswith(f"{BASE_URL}/login/link/") and len(url.rsplit("/", 1)[1]) >= 40
    assert "one use, valid until" in link.stderr
    assert "no rep nobody@acme.example" in cli("rep", "link", "nobody@acme.example", code=1).stderr
    units = reps_factory(uow_factory)
    token = url.rsplit("/", 1)[1]
    now = datetime.now(UTC)
    assert accounts.link_is_valid(units, token, now)
    assert not accounts.link_is_valid(units, token, now + timedelta(minutes=31))
    rep = accounts.consume_login_link(units, token, now)
    assert rep is not None and rep.email == "dana@acme.example" and rep.role is Role.REP
    assert accounts.consume_login_link(units, token, now) is None  # one use


def test_passwords_are_checked_hashed_and_upgraded(cli, uow_factory):
    units = reps_factory(uow_factory)
    now = datetime.now(UTC)
    with pytest.raises(accounts.SequencerError, match="too short"):
        accounts.add_rep(units, "eve@acme.example", "Eve", now, password="short", hasher=HASHER)
    old = Argon2Hasher(time_cost=2, memory_cost=8 * 1024, parallelism=1)
    rep = accounts.add_rep(
        units, "eve@acme.example", "Eve", now, password="eve-password-1", hasher=old
    )
    assert rep.password_hash and rep.password_hash.startswith("$argon2id$")
    assert "eve-password-1" not in rep.password_hash
    assert accounts.authenticate(units, HASHER, "eve@acme.example", "wrong-password") is None
    assert accounts.authenticate(units, HASHER, "nobody@acme.example", "eve-password-1") is None
    assert accounts.authenticate(units, HASHER, "not an address", "eve-password-1") is None
    signed = accounts.authenticate(units, HASHER, "EVE@acme.example", "eve-password-1")
    assert signed is not None and signed.id == rep.id
    upgraded = accounts.get_rep(units, rep.id)
    assert upgraded is not None and "t=1" in (upgraded.password_hash or "")  # re-hashed
    # A transparent rehash of the same password keeps the session the sign-in just started
    # (it used to change the version and sign the rep straight out); a new password does not.
    assert accounts.session_version(upgraded) == accounts.session_version(signed)
    changed = accounts.set_password(units, rep.email, "a-new-password-2", HASHER)
    after = accounts.get_rep(units, changed.id)
    assert after is not None
    assert accounts.session_version(after) != accounts.session_version(upgraded)
