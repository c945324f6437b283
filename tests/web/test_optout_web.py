"""The web opt-out ends like every other channel, and the inbox page puts unhandled mail in
front of a person. Over HTTP (Starlette's TestClient), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sequencer.adapters.web.app import create_app
from sequencer.core.states import DraftState, EnrollmentState
from sequencer.services.inbox import InboxConfig, process
from tests.web.conftest import ADMIN, DANA, HASHER, build_world
from tests.web.test_http import _token, client, csrf_of, sign_in, text_of


@pytest.fixture
def world(db_url, uow_factory, tmp_path):
    return build_world(db_url, uow_factory, tmp_path)


@pytest.fixture
def app(world, clock):
    return create_app(world.settings, world.uow_factory, hasher=HASHER, clock=clock)


def _enrollment_of(world, draft_id: int):
    draft = world.draft(draft_id)
    with world.uow_factory() as uow:
        return uow.repo.get_enrollment(draft.enrollment_id), uow.repo.drafts_of(draft.enrollment_id)


def _unsubscribed(world) -> int:
    out = world.cli("report", "--format", "json").stdout
    return int(json.loads(out)["total"]["all"]["unsubscribed"])


ONE_CLICK = b"List-Unsubscribe=One-Click"  # RFC 8058 section 3.1: the whole POST body
MULTIPART = (
    b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b--\r\n'
)
POSTS = {
    "one-click": (ONE_CLICK, "application/x-www-form-urlencoded", 200),
    "one-click-multipart": (MULTIPART, "multipart/form-data; boundary=b", 200),
    "button": (b"confirm=yes", "application/x-www-form-urlencoded", 303),
}


@pytest.mark.parametrize("how", list(POSTS))
def test_a_web_opt_out_stops_the_enrollment_cancels_its_drafts_and_is_counted(app, world, how):
    body, content_type, status = POSTS[how]
    did = world.pending(DANA)[0]
    token = _token(world, did)
    before, _ = _enrollment_of(world, did)
    assert before.state is EnrollmentState.ACTIVE
    # as a mail client sends it: no cookie, no CSRF token
    r = client(app).post(f"/u/{token}", content=body, headers={"Content-Type": content_type})
    assert r.status_code == status
    after, drafts = _enrollment_of(world, did)
    assert after.state is EnrollmentState.UNSUBSCRIBED
    assert drafts and {d.state for d in drafts} == {DraftState.CANCELLED}
    assert _unsubscribed(world) == 1
    assert did not in world.pending(DANA)


def _store_unmatched(world) -> int:
    raw = (
        b"From: someone@elsewhere.example\r\nTo: dana@acme.example\r\nSubject: <b>Hello</b>\r\n"
        b"Message-ID: <x1@elsewhere.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
        b"Who should I talk to about invoices?\r\n"
    )
    now = datetime.now(UTC)
    with world.uow_factory() as uow:
        inbound_id = uow.repo.add_inbound("mid:<x1@elsewhere.example>", "m", 1, raw, now, now)
        uow.commit()
    process(world.uow_factory, InboxConfig(env={}), now)
    assert inbound_id is not None
    return inbound_id


def test_the_inbox_page_shows_unmatched_mail_until_a_person_marks_it(app, world):
    inbound_id = _store_unmatched(world)
    # a rep sees their campaigns' mailboxes only: this one is nobody's, so the admin's
    dana, dana_csrf = sign_in(app, DANA)
    assert "someone@elsewhere.example" not in dana.get("/inbox").text
    r = dana.post(f"/inbox/{inbound_id}/handled", data={"csrf": dana_csrf})
    assert r.status_code == 404
    admin, csrf = sign_in(app, ADMIN)
    page = admin.get("/inbox")
    assert page.status_code == 200
    assert "someone@elsewhere.example" in page.text and "&lt;b&gt;Hello&lt;/b&gt;" in page.text
    assert "unmatched" in text_of(page)
    # a form post needs the session's CSRF token
    assert admin.post(f"/inbox/{inbound_id}/handled", data={"csrf": "wrong"}).status_code == 403
    r = admin.post(f"/inbox/{inbound_id}/handled", data={"csrf": csrf_of(page.text)})
    assert (r.status_code, r.headers["location"]) == (303, "/inbox")
    after = admin.get("/inbox")
    assert "marked as handled" in after.text and "someone@elsewhere.example" not in after.text
    assert world.cli.json("inbox", "--unhandled") == []
    assert admin.post("/inbox/999999/handled", data={"csrf": csrf}).status_code == 404
