"""Hostile web requests against the real app (TestClient) on a real database: each is refused
with its status and a clear page, and a snapshot of *every row of every table* is unchanged.

Cases: POSTs without / with a wrong / with another session's CSRF token; another rep's ids;
tampered unsubscribe tokens (GET, button POST and RFC 8058 one-click POST); oversized forms
(declared and chunked). Each case is one row in the reliability report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sequencer.adapters.db.session import SqlUnitOfWorkFactory
from sequencer.adapters.web.app import MAX_BODY_BYTES, create_app
from sequencer.core.tokens import make_unsubscribe_token
from sequencer.services import campaigns
from tests.faults.badinput import snapshot
from tests.reliability import Recorder
from tests.web.conftest import DANA, EVE, HASHER, World, build_world
from tests.web.test_http import client, csrf_of, sign_in

ELENA = "elena.park@northbank.example"
CAMPAIGN = "q4-fintech-intros"


@pytest.fixture
def world(db_url: str, uow_factory: SqlUnitOfWorkFactory, tmp_path: Path) -> World:
    return build_world(db_url, uow_factory, tmp_path)


@pytest.fixture
def app(world: World) -> FastAPI:
    return create_app(world.settings, world.uow_factory, hasher=HASHER)


class Unchanged:
    """Asserts the whole database is as it was, after each refused request."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.before = snapshot(db_url)

    def changed_tables(self) -> list[str]:
        after = snapshot(self.db_url)
        return [t for t in sorted(after) if after[t] != self.before.get(t)]


def _posts(draft_id: int, revision: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"/drafts/{draft_id}/approve", {"revision": revision}),
        (f"/drafts/{draft_id}/reject", {"revision": revision, "reason": "no"}),
        (f"/drafts/{draft_id}/edit", {"revision": revision, "subject": "X", "body": "Y"}),
        ("/drafts/approve", {"ids": [f"{draft_id}@{revision}"]}),
        ("/logout", {}),
    ]


@pytest.mark.reliability
def test_a_post_without_the_sessions_csrf_token_is_403_and_changes_nothing(
    app: FastAPI, world: World, db_url: str, reliability: Recorder
) -> None:
    dana, _ = sign_in(app, DANA)
    _, eves_token = sign_in(app, EVE)
    did = world.pending(DANA)[0]
    revision = world.draft(did).revision
    state = Unchanged(db_url)
    for label, token in (
        ("missing", None),
        ("empty", ""),
        ("forged", "A" * 43),
        ("another session's", eves_token),
    ):
        statuses = []
        for path, data in _posts(did, revision):
            body = data if token is None else {**data, "csrf": token}
            r = dana.post(path, data=body)
            statuses.append(r.status_code)
            assert "Form expired" in r.text, path
        changed = state.changed_tables()
        reliability.record(
            "web",
            f"CSRF token {label} on {len(statuses)} POST routes",
            trials=len(statuses),
            wrong_sends=0,
            outcome=f"statuses {sorted(set(statuses))}; tables changed: {changed or 'none'}",
        )
        assert statuses == [403] * len(statuses) and changed == []
    assert dana.get("/").status_code == 200  # the refused logout left her signed in


@pytest.mark.reliability
def test_another_reps_draft_id_is_404_and_changes_nothing(
    app: FastAPI, world: World, db_url: str, reliability: Recorder
) -> None:
    eve, token = sign_in(app, EVE)
    target = world.pending(DANA)[0]
    draft = world.draft(target)
    state = Unchanged(db_url)
    statuses = [eve.get(f"/drafts/{target}").status_code]
    page = eve.get(f"/drafts/{target}").text
    for path, data in _posts(target, draft.revision)[:3]:
        statuses.append(eve.post(path, data={**data, "csrf": token}).status_code)
    bulk = eve.post("/drafts/approve", data={"ids": [f"{target}@{draft.revision}"], "csrf": token})
    changed = state.changed_tables()
    reliability.record(
        "web",
        "another rep's draft id (view, approve, reject, edit, bulk approve)",
        trials=len(statuses) + 1,
        wrong_sends=0,
        outcome=f"statuses {statuses} + bulk {bulk.status_code}; tables changed: {changed or 'none'}",
    )
    assert statuses == [404] * 4 and bulk.status_code == 303
    assert "belongs to another rep" in page and draft.to_email not in page
    assert changed == []


def _tampered(secret: str) -> Iterator[tuple[str, str]]:
    good = make_unsubscribe_token(secret, ELENA, CAMPAIGN)
    payload, mac = good.split(".")
    other = make_unsubscribe_token(secret, "john.reyes@ledgerline.example", CAMPAIGN)
    yield "payload swapped to another prospect", other.split(".")[0] + "." + mac
    yield "MAC cut short", payload + "." + mac[:-1]
    yield (
        "MAC with one character changed",
        payload + "." + ("A" if mac[0] != "A" else "B") + mac[1:],
    )
    yield "signed with another secret", make_unsubscribe_token(secret + "x", ELENA, CAMPAIGN)
    yield "non-canonical base64 (padding)", payload + "=." + mac
    yield "no MAC", payload
    yield "three parts", good + ".x"
    yield "10 kB token", "A" * 10_000 + "." + mac
    yield "empty payload", "." + mac
    yield (
        "version 2 payload",
        make_unsubscribe_token(secret, ELENA, CAMPAIGN).replace(
            payload, payload.replace(payload[:2], "Mg", 1), 1
        ),
    )


@pytest.mark.reliability
def test_a_tampered_unsubscribe_token_is_refused_and_suppresses_nobody(
    app: FastAPI, world: World, db_url: str, reliability: Recorder
) -> None:
    c = client(app)
    state = Unchanged(db_url)
    for fault, token in _tampered(world.settings.secret_key):
        statuses = [
            c.get(f"/u/{token}").status_code,
            c.post(f"/u/{token}").status_code,
            c.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code,
        ]
        text = c.get(f"/u/{token}").text
        changed = state.changed_tables()
        reliability.record(
            "web",
            f"unsubscribe token: {fault}",
            trials=3,
            wrong_sends=0,
            outcome=f"statuses {statuses}; suppressions written: "
            f"{len(campaigns.list_suppressions(world.uow_factory))}",
        )
        assert statuses == [400, 400, 400], (fault, statuses)
        assert "link" in text.lower() and ELENA not in text
        assert changed == [], (fault, changed)
    # the control: the untampered token does suppress Elena (the route is live)
    good = make_unsubscribe_token(world.settings.secret_key, ELENA, CAMPAIGN)
    assert c.post(f"/u/{good}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert [s.value for s in campaigns.list_suppressions(world.uow_factory)] == [ELENA]


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b"csrf=x&body="
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size


@pytest.mark.reliability
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_oversized_form_is_413_quickly_and_changes_nothing(
    app: FastAPI, world: World, db_url: str, reliability: Recorder
) -> None:
    dana, token = sign_in(app, DANA)
    did = world.pending(DANA)[0]
    revision = world.draft(did).revision
    good = make_unsubscribe_token(world.settings.secret_key, ELENA, CAMPAIGN)
    ten_mb = "x" * (10 << 20)
    form = "application/x-www-form-urlencoded"
    cases: list[tuple[str, Any]] = [
        (
            "10 MB draft edit",
            lambda: dana.post(
                f"/drafts/{did}/edit",
                data={"csrf": token, "revision": revision, "subject": "S", "body": ten_mb},
            ),
        ),
        (
            "10 MB file in a multipart approve",
            lambda: dana.post(
                f"/drafts/{did}/approve",
                data={"csrf": token, "revision": str(revision)},
                files={"f": ("a.bin", b"x" * (10 << 20))},
            ),
        ),
        (
            "10 MB chunked body without Content-Length",
            lambda: dana.post(
                f"/drafts/{did}/edit", content=_chunks(10 << 20), headers={"content-type": form}
            ),
        ),
        (
            "10 MB one-click unsubscribe",
            lambda: TestClient(app, base_url="https://testserver").post(
                f"/u/{good}", data={"List-Unsubscribe": "One-Click", "pad": ten_mb}
            ),
        ),
        (
            "10 MB sign-in",
            lambda: client(app).post("/login", data={"email": DANA, "password": ten_mb}),
        ),
    ]
    state = Unchanged(db_url)
    for fault, send in cases:
        started = time.monotonic()
        r = send()
        seconds = time.monotonic() - started
        changed = state.changed_tables()
        reliability.record(
            "web",
            f"oversized form: {fault}",
            trials=1,
            wrong_sends=0,
            outcome=f"{r.status_code} in {seconds:.2f}s; tables changed: {changed or 'none'}",
        )
        assert r.status_code == 413, (fault, r.status_code)
        assert f"larger than {MAX_BODY_BYTES // 1024} KiB" in r.text
        assert changed == [], (fault, changed)
    # a normal-sized edit still works: the limit is not in the way of real use
    ok = dana.post(
        f"/drafts/{did}/edit",
        data={"csrf": token, "revision": revision, "subject": "Hello", "body": "y" * 90_000},
    )
    assert ok.status_code == 303
    assert csrf_of(dana.get("/").text) == token
