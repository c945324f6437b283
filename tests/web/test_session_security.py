"""Attacks on the session, through the real HTTP app, on SQLite and PostgreSQL.

* A cookie signed with the public development key (what `refseq web` used when
  REFSEQ_SECRET_KEY was unset) is refused by the real `refseq web` process.
* Signing out, a password change, `refseq rep signout` and `refseq rep remove` end the
  session server-side: a copy of the cookie taken before stops working.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sequencer.adapters.cli.main import app as cli_app
from sequencer.adapters.db.reps import reps_factory
from sequencer.adapters.web.app import create_app
from sequencer.adapters.web.auth import SessionCodec
from sequencer.services import accounts
from sequencer.services.accounts import Role
from tests.smtp_sink import free_port
from tests.web.conftest import ADMIN, DANA, EVE, HASHER, PASSWORDS, build_world

OLD_DEV_KEY = "refseq-development-key-change-me"
LINK_ONLY = "ops-link@acme.example"  # an admin without a password: signs in by link only


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _get(url: str, cookie: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


@pytest.fixture
def web_process(db_url: str, uow_factory, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`refseq web --port N` as its user starts it: no REFSEQ_SECRET_KEY, a data directory (N
    comes from ``free_port``, so the port guard knows this test opened it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFSEQ_")}
    env.update({"REFSEQ_DATABASE_URL": db_url, "REFSEQ_DATA_DIR": str(tmp_path / "data")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "sequencer.adapters.cli.main", "web", "--port", str(free_port())],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:  # uvicorn says when it listens
            lines.append(line)
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                yield found.group(1), tmp_path / "data"
                break
        else:
            pytest.fail("refseq web did not start:\n" + "".join(lines))
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()


def test_a_cookie_forged_with_the_public_dev_key_does_not_get_in(web_process, uow_factory):
    url, data_dir = web_process
    now = datetime.now(UTC)
    rep = accounts.add_rep(reps_factory(uow_factory), LINK_ONLY, "Ops", now, Role.ADMIN)
    claims = {"rep": rep.id, "sv": accounts.session_version(rep), "iat": int(now.timestamp())}
    forged = SessionCodec(OLD_DEV_KEY).dumps({**claims, "csrf": "x"}, now)
    status, location = _get(f"{url}/", f"refseq_session={forged}")
    assert (status, location) == (303, "/login")
    # The same claims signed with the key `refseq web` generated do get in: the attack above
    # failed because of the key, nothing else.
    key = (data_dir / "secret.key").read_text().strip()
    assert oct((data_dir / "secret.key").stat().st_mode & 0o777) == "0o600"
    genuine = SessionCodec(key).dumps({**claims, "csrf": "x"}, now)
    assert _get(f"{url}/", f"refseq_session={genuine}")[0] == 200


def test_a_cookie_copied_before_sign_out_is_refused_by_the_real_server(web_process, uow_factory):
    url, _ = web_process
    now = datetime.now(UTC)
    accounts.add_rep(
        reps_factory(uow_factory), DANA, "Dana", now, Role.REP, PASSWORDS[DANA], HASHER
    )
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPCookieProcessor(jar))

    def csrf(path: str) -> str:
        with browser.open(f"{url}{path}", timeout=10) as page:
            found = re.search(r'name="csrf" value="([^"]*)"', page.read().decode())
        assert found
        return found[1]

    def post(path: str, fields: dict[str, str]) -> int:
        data = urllib.parse.urlencode(fields).encode()
        try:
            with browser.open(f"{url}{path}", data=data, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert (
        post("/login", {"email": DANA, "password": PASSWORDS[DANA], "csrf": csrf("/login")}) == 303
    )
    (copy,) = [c.value for c in jar if c.name == "refseq_session"]
    # The password was hashed with the tests' cheap parameters, so this sign-in rehashed it
    # with the server's: that must not invalidate the session it just started.
    assert _get(f"{url}/", f"refseq_session={copy}")[0] == 200
    assert post("/logout", {"csrf": csrf("/")}) == 303
    assert _get(f"{url}/", f"refseq_session={copy}") == (303, "/login")


# -- revocation (TestClient on the real ASGI app) ---------------------------------------------


@pytest.fixture
def world(db_url, uow_factory, tmp_path):
    return build_world(db_url, uow_factory, tmp_path, dana_campaigns=0)


@pytest.fixture
def app(world, clock):
    return create_app(world.settings, world.uow_factory, hasher=HASHER, clock=clock)


def _signed_in(app, email: str) -> tuple[TestClient, str, str]:
    """A browser signed in as ``email``, its CSRF token and a copy of its session cookie."""
    c = TestClient(app, base_url="https://testserver", follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]*)"', c.get("/login").text)
    assert token
    r = c.post("/login", data={"email": email, "password": PASSWORDS[email], "csrf": token[1]})
    assert r.status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]*)"', c.get("/").text)
    assert csrf
    return c, csrf[1], c.cookies["__Host-refseq_session"]


def _with_cookie(app, cookie: str) -> int:
    c = TestClient(app, base_url="https://testserver", follow_redirects=False)
    c.cookies.set("__Host-refseq_session", cookie)
    return c.get("/").status_code


def test_a_cookie_kept_from_before_sign_out_no_longer_works(app):
    browser, csrf, copy = _signed_in(app, DANA)
    _, _, other_copy = _signed_in(app, DANA)  # a second browser
    _, _, eve_copy = _signed_in(app, EVE)
    assert _with_cookie(app, copy) == 200
    assert browser.post("/logout", data={"csrf": csrf}).status_code == 303
    assert _with_cookie(app, copy) == 303  # replaying the old cookie: back to /login
    assert _with_cookie(app, other_copy) == 303  # signing out signs out everywhere
    assert _with_cookie(app, eve_copy) == 200  # only Dana's sessions
    _, _, fresh = _signed_in(app, DANA)
    assert _with_cookie(app, fresh) == 200 and _with_cookie(app, copy) == 303


def test_a_stale_cookie_cannot_sign_the_rep_out_again(app):
    _, csrf, stale = _signed_in(app, DANA)
    browser, _, _ = _signed_in(app, DANA)
    page = re.search(r'name="csrf" value="([^"]*)"', browser.get("/").text)
    assert page
    browser.post("/logout", data={"csrf": page[1]})
    _, _, fresh = _signed_in(app, DANA)
    replay = TestClient(app, base_url="https://testserver", follow_redirects=False)
    replay.cookies.set("__Host-refseq_session", stale)
    replay.post("/logout", data={"csrf": csrf})
    assert _with_cookie(app, fresh) == 200  # the revoked cookie could not revoke the new one


def test_password_change_signout_and_removal_from_the_cli_end_sessions(app, world):
    _, _, dana = _signed_in(app, DANA)
    _, _, eve = _signed_in(app, EVE)
    _, _, admin = _signed_in(app, ADMIN)
    world.cli("rep", "signout", DANA)
    assert _with_cookie(app, dana) == 303 and _with_cookie(app, eve) == 200
    world.cli("rep", "remove", EVE)
    assert _with_cookie(app, eve) == 303
    assert [r["email"] for r in world.cli.json("rep", "list")] == [DANA, ADMIN]
    result = world.cli.runner.invoke(
        cli_app,
        ["rep", "password", ADMIN, "--password-stdin"],
        input="another-password-7\n",
        env=world.cli.env,
    )
    assert result.exit_code == 0, result.stderr
    assert _with_cookie(app, admin) == 303
