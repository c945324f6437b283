"""The web queue over HTTP (Starlette's TestClient), on SQLite and PostgreSQL.

Sign-in, the rate limit, cookie flags, CSRF, no state change on GET, another rep's draft by id,
stale and double approvals, edit validation, and the unsubscribe endpoints.
"""

from __future__ import annotations

import html
import json
import re
import struct
import sys
import types
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from sequencer.adapters.chart import STAGES
from sequencer.adapters.db.reps import reps_factory
from sequencer.adapters.web.app import create_app
from sequencer.core.states import DraftState, EnrollmentState
from sequencer.core.tokens import make_unsubscribe_token
from sequencer.services import accounts, approval, campaigns
from tests.cli_helpers import NOW
from tests.web.conftest import (
    ADMIN,
    DANA,
    EVE,
    EVIL_NAME,
    EVIL_REFERRER,
    HASHER,
    PASSWORDS,
    TUESDAY,
    Clock,
    build_world,
)

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@pytest.fixture
def world(db_url, uow_factory, tmp_path):
    return build_world(db_url, uow_factory, tmp_path)


@pytest.fixture
def app(world, clock):
    return create_app(world.settings, world.uow_factory, hasher=HASHER, clock=clock)


@pytest.fixture
def accounts_only(db_url, uow_factory, tmp_path):
    """The three accounts and no campaign: for the tests about signing in."""
    return build_world(db_url, uow_factory, tmp_path, dana_campaigns=0)


@pytest.fixture
def bare_app(accounts_only, clock):
    return create_app(accounts_only.settings, accounts_only.uow_factory, hasher=HASHER, clock=clock)


def client(app) -> TestClient:
    # https: the session cookie is Secure (base_url is https), so the client must be too.
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def csrf_of(page: str) -> str:
    match = CSRF.search(page)
    assert match, page
    return match.group(1)


def sign_in(app, email: str) -> tuple[TestClient, str]:
    """A client signed in as ``email`` and its session's CSRF token."""
    c = client(app)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"email": email, "password": PASSWORDS[email], "csrf": token})
    assert (r.status_code, r.headers["location"]) == (303, "/"), r.text
    return c, csrf_of(c.get("/").text)


def text_of(response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


def flashes(c: TestClient, url: str) -> str:
    return text_of(c.get(url))


# -- signing in ------------------------------------------------------------------------------


def test_it_signs_in_with_the_right_password_only(app, world):
    c = client(app)
    assert c.get("/").headers["location"] == "/login"
    token = csrf_of(c.get("/login").text)
    bad = c.post("/login", data={"email": DANA, "password": "nope-nope-nope", "csrf": token})
    assert bad.status_code == 401 and "Wrong email or password." in bad.text
    unknown = c.post(
        "/login", data={"email": "who@acme.example", "password": "x" * 12, "csrf": token}
    )
    assert unknown.status_code == 401 and "Wrong email or password." in unknown.text
    assert c.get("/").status_code == 303

    good = c.post(
        "/login",
        data={
            "email": " DANA@acme.example ",
            "password": PASSWORDS[DANA],
            "csrf": token,
            "next": "/handoffs",
        },
    )
    assert (good.status_code, good.headers["location"]) == (303, "/handoffs")
    queue = c.get("/")
    assert queue.status_code == 200
    assert "q4-fintech-intros" in queue.text and "eve-insurance" not in queue.text
    assert "+eve@" not in queue.text
    assert csrf_of(queue.text) != token  # signing in starts a new session


def test_next_never_leaves_the_site(bare_app, accounts_only):
    c = client(bare_app)
    token = csrf_of(c.get("/login").text)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        r = c.post(
            "/login",
            data={"email": DANA, "password": PASSWORDS[DANA], "csrf": token, "next": target},
        )
        assert r.headers["location"] == "/"
        c.cookies.clear()
        token = csrf_of(c.get("/login").text)


def test_failed_sign_ins_are_rate_limited_per_address_and_client(
    bare_app, accounts_only, clock: Clock
):
    c = client(bare_app)
    token = csrf_of(c.get("/login").text)
    for _ in range(5):
        r = c.post("/login", data={"email": DANA, "password": "wrong-password", "csrf": token})
        assert r.status_code == 401
    blocked = c.post("/login", data={"email": DANA, "password": PASSWORDS[DANA], "csrf": token})
    assert blocked.status_code == 429
    assert "Too many failed sign-ins for dana@acme.example" in text_of(blocked)
    assert 0 < int(blocked.headers["retry-after"]) <= 300
    # Another address from the same client is not locked out by Dana's failures.
    other = c.post("/login", data={"email": EVE, "password": PASSWORDS[EVE], "csrf": token})
    assert other.status_code == 303
    c.cookies.clear()
    token = csrf_of(c.get("/login").text)
    clock.advance(minutes=5, seconds=1)
    ok = c.post("/login", data={"email": DANA, "password": PASSWORDS[DANA], "csrf": token})
    assert ok.status_code == 303


def test_a_one_time_link_signs_in_once_and_a_get_does_not_use_it(bare_app, accounts_only, clock):
    units = reps_factory(accounts_only.uow_factory)
    url, _ = accounts.make_login_link(units, EVE, accounts_only.settings.base_url, clock())
    path = url.removeprefix(accounts_only.settings.base_url)
    c = client(bare_app)
    for _ in range(2):  # mail scanners prefetch links: a GET shows a button only
        page = c.get(path)
        assert page.status_code == 200 and "Sign in to refseq" in page.text
    token = csrf_of(page.text)
    assert c.post(path, data={}).status_code == 403  # the button needs the session's token
    r = c.post(path, data={"csrf": token})
    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert "Eve Stone" in c.get("/").text
    again = client(bare_app)
    assert again.get(path).status_code == 400
    assert again.post(path, data={"csrf": csrf_of(again.get("/login").text)}).status_code == 400

    url, _ = accounts.make_login_link(units, EVE, accounts_only.settings.base_url, clock())
    clock.advance(minutes=31)
    assert (
        client(bare_app).get(url.removeprefix(accounts_only.settings.base_url)).status_code == 400
    )


def test_changing_the_password_signs_out_existing_sessions(bare_app, accounts_only):
    c, _ = sign_in(bare_app, DANA)
    assert c.get("/").status_code == 200
    accounts.set_password(reps_factory(accounts_only.uow_factory), DANA, "a-new-password-9", HASHER)
    assert c.get("/").headers["location"] == "/login"


def test_a_session_ends_12_hours_after_sign_in(bare_app, accounts_only, clock):
    c, _ = sign_in(bare_app, DANA)
    clock.advance(hours=11, minutes=59)
    assert c.get("/").status_code == 200
    clock.advance(minutes=2)
    assert c.get("/").headers["location"] == "/login"
    assert c.get("/drafts/1").headers["location"] == "/login?next=%2Fdrafts%2F1"


def test_sign_out_clears_the_session(bare_app, accounts_only):
    c, token = sign_in(bare_app, DANA)
    r = c.post("/logout", data={"csrf": token})
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert "Max-Age=0" in r.headers["set-cookie"]
    assert c.get("/").status_code == 303


def test_the_session_cookie_is_httponly_lax_and_secure_over_https(accounts_only, clock):
    for base_url in ("https://refseq.acme.example", "http://127.0.0.1:8000"):
        settings = replace(accounts_only.settings, base_url=base_url)
        app = create_app(settings, accounts_only.uow_factory, hasher=HASHER, clock=clock)
        c = TestClient(app, base_url=base_url.replace("refseq.acme.example", "testserver"))
        cookie = c.get("/login").headers["set-cookie"]
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "path", "samesite", "max-age"} <= attributes
        assert "SameSite=Lax" in cookie and "Path=/" in cookie
        if base_url.startswith("https"):
            assert cookie.startswith("__Host-refseq_session=") and "secure" in attributes
        else:
            assert cookie.startswith("refseq_session=") and "secure" not in attributes


def test_a_tampered_session_cookie_is_a_signed_out_visitor(bare_app, accounts_only):
    c, _ = sign_in(bare_app, DANA)
    name, value = next(iter(c.cookies.items()))
    version, payload, mac = value.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    c.cookies.clear()
    c.cookies.set(name, f"{version}.{forged}.{mac}")
    assert c.get("/").headers["location"] == "/login"
    c.cookies.clear()
    c.cookies.set(name, value)  # the genuine cookie still works
    assert c.get("/").status_code == 200


# -- CSRF and GET ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    path: str
    data: dict[str, object]


def _posts(draft_id: int, revision: int) -> list[Post]:
    return [
        Post(f"/drafts/{draft_id}/approve", {"revision": revision}),
        Post(f"/drafts/{draft_id}/reject", {"revision": revision, "reason": "no"}),
        Post(f"/drafts/{draft_id}/edit", {"revision": revision, "subject": "S", "body": "B"}),
        Post("/drafts/approve", {"ids": [f"{draft_id}@{revision}"]}),
        Post("/handoffs/1/handled", {}),
        Post("/logout", {}),
    ]


def test_every_form_post_needs_the_sessions_csrf_token(app, world):
    dana, _ = sign_in(app, DANA)
    _, eves_token = sign_in(app, EVE)
    did = world.pending(DANA)[0]
    before = world.draft(did)
    for post in _posts(did, before.revision):
        for token in (None, "", "forged", eves_token):
            data = dict(post.data) if token is None else {**post.data, "csrf": token}
            r = dana.post(post.path, data=data)
            assert r.status_code == 403, (post.path, token, r.status_code)
            assert "Form expired" in r.text
    login = client(app)
    r = login.post("/login", data={"email": DANA, "password": PASSWORDS[DANA]})
    assert r.status_code == 403  # sign-in forms too (login CSRF)
    assert world.draft(did) == before
    assert dana.get("/").status_code == 200  # still signed in: logout was refused too


def test_gets_change_nothing(app, world, monkeypatch):
    monkeypatch.setitem(sys.modules, "sequencer.services.routing", None)
    c, _ = sign_in(app, ADMIN)
    ids = world.pending(None)
    before = {i: world.draft(i) for i in ids}
    token = make_unsubscribe_token(
        world.settings.secret_key, "elena.park@northbank.example", "q4-fintech-intros"
    )
    for path in [
        "/",
        "/?campaign=q4-fintech-intros&temperature=warm",
        "/handoffs",
        "/report?campaign=q4-fintech-intros&by=step",
        "/report/chart.png",
        f"/u/{token}",
        *(f"/drafts/{i}" for i in ids),
    ]:
        assert c.get(path).status_code == 200, path
    for path in [f"/drafts/{ids[0]}/approve", f"/drafts/{ids[0]}/reject", "/drafts/approve"]:
        assert c.get(path).status_code == 405, path
    assert {i: world.draft(i) for i in ids} == before
    assert campaigns.list_suppressions(world.uow_factory) == []


# -- another rep's draft ---------------------------------------------------------------------


def test_a_rep_cannot_open_or_act_on_another_reps_draft_by_its_id(app, world):
    eve, token = sign_in(app, EVE)
    danas = world.pending(DANA)
    assert danas and not set(danas) & set(world.pending(EVE))
    target = danas[0]
    before = world.draft(target)
    page = eve.get(f"/drafts/{target}")
    assert page.status_code == 404 and "belongs to another rep" in page.text
    assert before.to_email not in page.text and before.subject not in page.text
    rev = before.revision
    for path, data in [
        (f"/drafts/{target}/approve", {"revision": rev}),
        (f"/drafts/{target}/reject", {"revision": rev, "reason": "mine now"}),
        (f"/drafts/{target}/edit", {"revision": rev, "subject": "Hijacked", "body": "Hi"}),
    ]:
        assert eve.post(path, data={**data, "csrf": token}).status_code == 404, path
    bulk = eve.post("/drafts/approve", data={"ids": [f"{target}@{rev}"], "csrf": token})
    assert bulk.status_code == 303
    assert f"Draft {target} not approved: no draft {target}" in flashes(eve, "/")
    assert world.draft(target) == before
    assert eve.get("/drafts/999999").status_code == 404  # same answer as a missing draft

    admin, _ = sign_in(app, ADMIN)
    assert admin.get(f"/drafts/{target}").status_code == 200
    queue = admin.get("/").text
    assert "q4-fintech-intros" in queue and "eve-insurance" in queue


# -- approving, editing, rejecting ------------------------------------------------------------


def test_a_draft_changed_since_it_was_loaded_is_not_approved(app, world, clock):
    c, token = sign_in(app, DANA)
    did = world.pending(DANA)[0]
    shown = world.draft(did).revision
    approval.edit(world.uow_factory, did, "dana (other tab)", clock(), subject="Changed meanwhile")
    r = c.post(f"/drafts/{did}/approve", data={"revision": shown, "csrf": token})
    assert (r.status_code, r.headers["location"]) == (303, f"/drafts/{did}")
    page = flashes(c, f"/drafts/{did}")
    assert (
        f"Not approved: this draft changed since you opened it (you saw revision {shown}, "
        f"it is now revision {shown + 1})"
    ) in page
    assert world.draft(did).state is DraftState.PENDING_APPROVAL


def test_approving_twice_is_harmless(app, world):
    c, token = sign_in(app, DANA)
    first, second = world.pending(DANA)[:2]
    rev = world.draft(first).revision
    r = c.post(
        f"/drafts/{first}/approve", data={"revision": rev, "csrf": token, "next": str(second)}
    )
    assert r.headers["location"] == f"/drafts/{second}"  # on to the next draft
    again = c.post(
        f"/drafts/{first}/approve", data={"revision": rev, "csrf": token, "next": str(second)}
    )
    assert again.headers["location"] == f"/drafts/{first}"
    assert "was already approved" in flashes(c, f"/drafts/{first}")
    _, events = approval.show(world.uow_factory, first)
    assert [e.action for e in events].count("approve") == 1
    assert world.draft(first).state is DraftState.APPROVED


def test_bulk_approve_takes_the_revisions_that_were_shown(app, world, clock):
    c, token = sign_in(app, DANA)
    a, b, stale = world.pending(DANA)[:3]
    revs = {i: world.draft(i).revision for i in (a, b, stale)}
    approval.edit(world.uow_factory, stale, "someone", clock(), subject="Edited elsewhere")
    r = c.post(
        "/drafts/approve",
        data={
            "ids": [f"{i}@{revs[i]}" for i in (a, b, stale)],
            "csrf": token,
            "back": "/?temperature=warm",
        },
    )
    assert r.headers["location"] == "/?temperature=warm"
    page = flashes(c, "/")
    assert "Approved 2 drafts." in page
    assert f"Draft {stale} not approved: draft {stale} changed since you saw it" in page
    assert [world.draft(i).state for i in (a, b, stale)] == [
        DraftState.APPROVED,
        DraftState.APPROVED,
        DraftState.PENDING_APPROVAL,
    ]


def test_edits_are_validated_like_the_cli(app, world):
    c, token = sign_in(app, DANA)
    did = next(i for i in world.pending(DANA) if world.draft(i).html)
    before = world.draft(did)
    base = {"revision": before.revision, "csrf": token, "subject": before.subject}
    r = c.post(f"/drafts/{did}/edit", data={**base, "body": "Hi {{ x }},\r\nsee you"})
    assert r.status_code == 422
    assert "Not saved: body line 1: a template placeholder '{{' is left in" in text_of(r)
    assert "Hi {{ x }}," in text_of(r)  # the rep's text is kept for fixing
    r = c.post(
        f"/drafts/{did}/edit",
        data={**base, "subject": "Hi\r\nBcc: x@evil.example", "body": before.text},
    )
    assert r.status_code == 422 and "the subject contains a line break" in text_of(r)
    assert world.draft(did) == before

    body = "Hi Elena,\r\n\r\nJames suggested we talk. Coffee next week?\r\n\r\nDana\r\n"
    r = c.post(f"/drafts/{did}/edit", data={**base, "subject": "Coffee?", "body": body})
    assert (r.status_code, r.headers["location"]) == (303, f"/drafts/{did}")
    after = world.draft(did)
    assert (after.subject, after.text, after.html) == ("Coffee?", body.replace("\r\n", "\n"), None)
    assert after.revision == before.revision + 1
    page = flashes(c, f"/drafts/{did}")
    assert f"Saved (revision {after.revision}). It will go out as plain text." in page
    stale = c.post(f"/drafts/{did}/edit", data={**base, "body": "Hello again\n"})
    assert stale.status_code == 409 and "changed since you saw it" in text_of(stale)


def test_reject_needs_a_reason_and_is_kept(app, world):
    c, token = sign_in(app, DANA)
    did = world.pending(DANA)[0]
    rev = world.draft(did).revision
    c.post(f"/drafts/{did}/reject", data={"revision": rev, "csrf": token, "reason": "  "})
    assert "give a reason" in flashes(c, f"/drafts/{did}")
    r = c.post(
        f"/drafts/{did}/reject",
        data={"revision": rev, "csrf": token, "reason": "talking to our CEO"},
    )
    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert (world.draft(did).state, world.draft(did).reason) == (
        DraftState.REJECTED,
        "talking to our CEO",
    )
    c.post(f"/drafts/{did}/reject", data={"revision": rev, "csrf": token, "reason": "again"})
    assert "was already rejected" in flashes(c, f"/drafts/{did}")
    c.post(f"/drafts/{did}/approve", data={"revision": rev + 1, "csrf": token})
    assert "cannot 'approve' from state 'rejected'" in flashes(c, f"/drafts/{did}")


def test_prospect_data_is_shown_as_text(app, world):
    c, _ = sign_in(app, EVE)
    queue = c.get("/").text
    assert "<script>alert" not in queue
    assert html.escape(EVIL_NAME, quote=False).split("&gt;")[0] in queue
    evil = next(i for i in world.pending(EVE) if world.draft(i).to_email.startswith("elena"))
    page = c.get(f"/drafts/{evil}").text
    assert "<script>alert" not in page
    # The HTML part lives only in the sandboxed frame's escaped srcdoc, without allow-scripts.
    frame = re.search(r"<iframe[^>]*>", page).group(0)
    assert " sandbox " in frame and "allow-scripts" not in frame and 'srcdoc="&lt;p&gt;' in frame


@dataclass(frozen=True)
class FakeHandoff:
    """Shaped like routing's HandoffRecord: ids only, the page looks the rest up."""

    id: int
    campaign_id: int
    enrollment_id: int
    rep_email: str
    intent: str
    reply_text: str
    redirect_to: str | None
    created_at: datetime
    handled_at: datetime | None = None


def test_the_handoffs_page_reads_the_routing_service_when_there_is_one(
    app, world, monkeypatch, clock
):
    c, token = sign_in(app, DANA)
    monkeypatch.setitem(sys.modules, "sequencer.services.routing", None)  # not built yet
    assert "No handoffs yet" in c.get("/handoffs").text

    view, _ = approval.show(world.uow_factory, world.pending(DANA)[0])
    with world.uow_factory() as uow:  # what the sender records once step 1 has gone out
        uow.repo.update_draft(view.draft.id, view.draft.revision, clock(), state=DraftState.SENT)
        uow.commit()
    handoff = FakeHandoff(
        7,
        view.draft.campaign_id,
        view.enrollment.id,
        DANA,
        "interested",
        "Yes <b>please</b>, Thursday works",
        None,
        clock(),
    )
    handled: list[tuple[int, str, str | None]] = []
    routing = types.ModuleType("sequencer.services.routing")
    routing.list_handoffs = lambda uow, rep_email: [handoff] if rep_email == DANA else []  # type: ignore[attr-defined]
    routing.mark_handled = lambda uow, hid, actor, now, rep_email: handled.append(  # type: ignore[attr-defined]
        (hid, actor, rep_email)
    )
    monkeypatch.setitem(sys.modules, "sequencer.services.routing", routing)
    page = c.get("/handoffs")
    text = text_of(page)
    assert "Yes &lt;b&gt;please&lt;/b&gt;, Thursday works" in page.text
    prospect = view.enrollment.prospect
    assert f"{prospect['first_name']} {prospect['last_name']}" in text
    assert view.draft.to_email in text and "q4-fintech-intros" in text
    assert f"referred by {view.enrollment.referrer['name']}" in text
    assert view.draft.subject in text  # the thread: what we sent
    r = c.post("/handoffs/7/handled", data={"csrf": token})
    assert (r.status_code, r.headers["location"]) == (303, "/handoffs")
    assert handled == [(7, DANA, DANA)]
    eve, _ = sign_in(app, EVE)
    assert "No handoffs yet" in eve.get("/handoffs").text


# -- unsubscribe -----------------------------------------------------------------------------


def _token(world, did: int) -> str:
    view, _ = approval.show(world.uow_factory, did)
    message = approval.rendered_message(world.uow_factory, view)
    header = str(message["List-Unsubscribe"])
    url = re.search(r"<(https://[^>]+)>", header).group(1)
    assert url.startswith(world.settings.base_url + "/u/")
    return url.rsplit("/", 1)[1]


def test_unsubscribe_get_only_shows_a_button(app, world):
    did = world.pending(DANA)[0]
    token = _token(world, did)
    c = client(app)
    r = c.get(f"/u/{token}")
    assert r.status_code == 200
    assert "Unsubscribe?" in r.text and world.draft(did).to_email in r.text
    assert f'<form method="post" action="/u/{token}">' in r.text
    assert "set-cookie" not in r.headers  # no session for prospects
    assert campaigns.list_suppressions(world.uow_factory) == []


def test_one_click_post_suppresses_everywhere_and_is_idempotent(app, world):
    did = world.pending(DANA)[0]
    email = world.draft(did).to_email
    token = _token(world, did)
    c = client(app)
    for _ in range(2):
        r = c.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})  # RFC 8058, no cookie
        assert r.status_code == 200 and "is unsubscribed" in r.text
        assert "set-cookie" not in r.headers
    (entry,) = campaigns.list_suppressions(world.uow_factory)
    assert (entry.value, entry.reason, entry.source) == (
        email,
        "unsubscribe link",
        "campaign q4-fintech-intros",
    )
    page = c.get(f"/u/{token}")
    assert "You are unsubscribed" in page.text and "<form" not in page.text


def test_the_unsubscribe_button_redirects_to_the_done_page(app, world):
    did = world.pending(EVE)[0]
    token = _token(world, did)
    c = client(app)
    r = c.post(f"/u/{token}", data={"confirm": "yes"})
    assert (r.status_code, r.headers["location"]) == (303, f"/u/{token}")
    assert "You are unsubscribed" in c.get(f"/u/{token}").text
    (entry,) = campaigns.list_suppressions(world.uow_factory)
    assert entry.source == "campaign eve-insurance"


def test_a_tampered_unsubscribe_token_gets_a_friendly_400(app, world):
    good = _token(world, world.pending(DANA)[0])
    other_secret = make_unsubscribe_token("another-secret-0123456789", "a@b.example", "c")
    c = client(app)
    for token in (
        good[:-1] + ("A" if good[-1] != "A" else "B"),  # the MAC
        "x" + good,  # the payload
        other_secret,
        "nonsense",
        "a.b.c",
        "%00%ff" + good,
        "x" * 3000,
    ):
        for r in (
            c.get(f"/u/{token}"),
            c.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}),
        ):
            assert r.status_code == 400, token
            assert "This unsubscribe link does not work" in r.text
    assert campaigns.list_suppressions(world.uow_factory) == []


# -- the report -------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"
ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
CELL = re.compile(r"<t[hd][^>]*>(.*?)</t[hd]>", re.S)


def send_some(world, count: int, at: datetime) -> list[int]:
    """Approve Dana's first ``count`` drafts and record them sent, as the sender does; the
    first prospect then replies, interested."""
    ids = sorted(world.pending(DANA))[:count]
    assert all(r.ok for r in approval.approve(world.uow_factory, ids, DANA, at))
    with world.uow_factory() as uow:
        for did in ids:
            draft = uow.repo.get_draft(did).draft
            uow.repo.update_draft(did, draft.revision, at, state=DraftState.SENT, sent_at=at)
        replied = uow.repo.get_draft(ids[0]).enrollment.id
        reply_at = at + timedelta(hours=5)
        inbound = uow.repo.add_inbound(
            "<reply-1@mail.example>", "dana@127.0.0.1:1143/INBOX", None,
            b"Subject: re\r\n\r\nyes\r\n", reply_at, reply_at,
        )  # fmt: skip
        uow.repo.update_inbound(
            inbound, status="handled", klass="human_reply", intent="interested",
            enrollment_id=replied, handled_at=reply_at,
        )  # fmt: skip
        uow.repo.update_enrollment(replied, reply_at, state=EnrollmentState.REPLIED)
        uow.commit()
    return ids


def cli_report(world, *args: str) -> dict:
    return json.loads(world.cli("report", *args, "--format", "json").stdout)


def table_rows(page: str, table: str) -> list[list[str]]:
    """The body rows of ``<table class="report {table}">`` as the cells' text."""
    found = re.search(rf'<table class="report {table}">(.*?)</table>', page, re.S)
    assert found, table
    body = found.group(1).split("<tbody>", 1)[1]
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in CELL.findall(row)]
        for row in ROW.findall(body)
    ]


def pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def expected_funnel(total: dict) -> list[list[str]]:
    rows = []
    for label, count, rate in STAGES:
        cells = [
            str(total[t][count]) + ("" if rate is None else f" ({pct(total[t][rate])})")
            for t in ("warm", "cold", "all")
        ]
        rows.append([label, *cells])
    return rows


def expected_leaders(referrers: list[dict]) -> list[list[str]]:
    return [
        [str(i), r["referrer_name"], r["referrer_id"]]
        + [str(r[k]) for k in ("enrolled", "intros", "replies", "interested", "handoffs")]
        + [pct(r["conversion_rate"])]
        for i, r in enumerate(referrers, 1)
    ]


@pytest.fixture
def drafted_twice(db_url, uow_factory, tmp_path):
    """Drafts on Monday and Tuesday: by then the cold prospects' first steps are drafted too."""
    return build_world(db_url, uow_factory, tmp_path, days=(NOW, TUESDAY))


def test_the_report_page_shows_the_clis_figures(drafted_twice, clock):
    world = drafted_twice
    app = create_app(world.settings, world.uow_factory, hasher=HASHER, clock=clock)
    sent = send_some(world, 5, clock())
    dana, _ = sign_in(app, DANA)
    page = dana.get("/report?campaign=q4-fintech-intros&by=step")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert 'aria-current="page">Report</a>' in page.text
    want = cli_report(world, "q4-fintech-intros", "--by", "step")
    funnel = table_rows(page.text, "funnel")
    assert funnel[:-1] == expected_funnel(want["total"])
    assert want["total"]["all"]["sent"] == len(sent) == 5 and want["total"]["all"]["replied"] == 1
    assert want["total"]["cold"]["sent"] > 0
    assert [r[:9] for r in table_rows(page.text, "groups")] == [
        [r["label"], *(str(r["all"][c]) for _, c, _ in STAGES)] for r in want["rows"]
    ]
    leaders = table_rows(page.text, "leaderboard")
    assert leaders == expected_leaders(want["referrers"]) and leaders
    assert 'src="/report/chart.png?campaign=q4-fintech-intros&amp;by=step"' in page.text

    # No campaign chosen: Dana's campaigns combined (only hers), and no table grouped by step.
    mine = dana.get("/report").text
    assert table_rows(mine, "funnel")[:-1] == expected_funnel(want["total"])
    assert "eve-insurance" not in mine and 'class="report groups"' not in mine
    admin, _ = sign_in(app, ADMIN)
    every = admin.get("/report?by=referrer").text
    want_all = cli_report(world, "--by", "referrer")
    assert table_rows(every, "funnel")[:-1] == expected_funnel(want_all["total"])
    assert table_rows(every, "leaderboard") == expected_leaders(want_all["referrers"])
    assert '<option value="eve-insurance"' in every


def test_a_rep_cannot_see_another_reps_report(app, world):
    eve, _ = sign_in(app, EVE)
    for path in (
        "/report?campaign=q4-fintech-intros",
        "/report/chart.png?campaign=q4-fintech-intros",
        "/report?campaign=no-such-campaign",
    ):
        r = eve.get(path)
        assert r.status_code == 404 and "belongs to another rep" in r.text, path
    page = eve.get("/report")
    assert page.status_code == 200 and "q4-fintech-intros" not in page.text
    assert "<img src=x" not in page.text  # the referrer's name is text
    assert html.escape(EVIL_REFERRER, quote=False) in page.text
    assert eve.get("/report?by=mood").status_code == 400
    assert client(app).get("/report").headers["location"] == "/login?next=%2Freport"


def test_the_report_chart_is_a_png(app, world, clock):
    send_some(world, 2, clock())
    c, _ = sign_in(app, EVE)  # a referrer name with "$" and markup is drawn as plain text
    r = c.get("/report/chart.png?campaign=eve-insurance&by=temperature")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png" and r.headers["cache-control"] == "no-store"
    assert r.content[:8] == PNG and len(r.content) > 10_000
    assert struct.unpack(">II", r.content[16:24]) == (1200, 550)  # the IHDR chunk
