"""The consent page changes the live ledger as `refseq consent` does, for admins only.

Over HTTP (Starlette's TestClient), on SQLite and PostgreSQL; the ledger is read back through
the `refseq` entry point (`consent list --json`), the enrollments from the database.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest

from sequencer.adapters.web.app import create_app
from sequencer.core.naming import ConsentChange, Via
from sequencer.core.states import EnrollmentState
from sequencer.services.consent_board import REFERRER_LIMIT, consent_board
from tests.web.conftest import ADMIN, DANA, EVIL_REFERRER, HASHER, build_world
from tests.web.test_http import client, csrf_of, sign_in, text_of

JAMES, JON = "james-hervin", "jon-smith"


@pytest.fixture
def world(db_url, uow_factory, tmp_path):
    return build_world(db_url, uow_factory, tmp_path)


@pytest.fixture
def app(world, clock):
    return create_app(world.settings, world.uow_factory, hasher=HASHER, clock=clock)


def ledger(world, referrer: str | None = None) -> list[dict]:
    args = ("consent", "list", "--json") + (("--referrer", referrer) if referrer else ())
    return world.cli.json(*args)


def naming(world, referrer: str) -> dict[int, tuple[EnrollmentState, str | None, str]]:
    """Live enrollments naming ``referrer``: id -> (state, hold reason, prospect)."""
    with world.uow_factory() as uow:
        return {
            e.id: (e.state, e.hold_reason, e.prospect_key)
            for e in uow.repo.live_naming(referrer, None)
        }


def row_of(page: str, referrer: str) -> str:
    """The text of the page's table row for ``referrer`` (tags dropped, spaces collapsed)."""
    start = page.index(f'data-referrer="{referrer}"')
    row = re.sub(r"<[^>]+>", " ", page[start : page.index("</tr>", start)])
    return " ".join(html.unescape(row).split())


def test_an_admin_revokes_on_the_page_and_it_is_the_ledger_change_the_cli_makes(app, world):
    admin, csrf = sign_in(app, ADMIN)
    page = admin.get("/consent")
    assert page.status_code == 200
    assert 'href="/consent"' in page.text  # in the admin's nav
    # referrers.csv said yes: no ledger row yet, granted by the CSV
    assert "granted (referrers.csv)" in row_of(page.text, JAMES)
    # referrers.csv said no (omar-haddad): the launch recorded it
    assert "revoked (referrers.csv)" in row_of(page.text, "omar-haddad")
    before = naming(world, JAMES)
    campaigns = set()
    with world.uow_factory() as uow:
        for eid in before:
            campaigns.add(uow.repo.get_enrollment(eid).campaign_id)
    assert before and len(campaigns) == 2  # both reps' campaigns name him
    assert {s for s, _, _ in before.values()} == {EnrollmentState.ACTIVE}

    r = admin.post(
        "/consent/revoke", data={"csrf": csrf, "referrer": JAMES, "note": "asked us by phone"}
    )
    assert (r.status_code, r.headers["location"]) == (303, "/consent")
    rows = ledger(world, JAMES)
    assert len(rows) == 1
    change = rows[0]
    assert (change["by"], change["via"], change["consent"]) == (ADMIN, "web", "revoked")
    assert (change["prospect"], change["current"], change["note"]) == (
        None,
        True,
        "asked us by phone",
    )
    after = naming(world, JAMES)
    assert set(after) == set(before)  # every campaign's, as `refseq consent revoke` holds
    for state, reason, _ in after.values():
        assert state is EnrollmentState.HELD
        assert reason == f"held: referrer {JAMES} revoked consent to be named (web)"
    held = {h["prospect"] for h in world.cli.json("held")}
    assert {p for _, _, p in after.values()} <= held

    shown = admin.get("/consent")
    assert f"{len(before)} enrollment(s) naming them are held" in text_of(shown)
    row = row_of(shown.text, JAMES)
    assert "revoked (ledger)" in row and f"by {ADMIN}" in row and "via web" in row
    assert f"{len(before)} live, {len(before)} held" in row

    # granting back is recorded too; the held enrollments wait for `refseq release`
    r = admin.post("/consent/grant", data={"csrf": csrf, "referrer": JAMES})
    assert r.status_code == 303
    assert [(c["consent"], c["via"], c["current"]) for c in ledger(world, JAMES)] == [
        ("revoked", "web", False),
        ("granted", "web", True),
    ]
    assert f"{len(before)} held enrollment(s) name them" in text_of(admin.get("/consent"))
    assert {s for s, _, _ in naming(world, JAMES).values()} == {EnrollmentState.HELD}


def test_an_admin_revokes_for_one_prospect_only(app, world):
    admin, csrf = sign_in(app, ADMIN)
    before = naming(world, JON)
    assert len(before) >= 2
    target_id, (_, _, prospect) = sorted(before.items())[0]
    r = admin.post(
        "/consent/revoke",
        data={"csrf": csrf, "referrer": JON, "prospect": f" {prospect.upper()} "},
    )
    assert r.status_code == 303
    [change] = ledger(world, JON)
    assert (change["prospect"], change["via"], change["by"]) == (prospect, "web", ADMIN)
    after = naming(world, JON)
    assert after[target_id][0] is EnrollmentState.HELD
    others = [s for eid, (s, _, p) in after.items() if p != prospect]
    assert others and set(others) == {EnrollmentState.ACTIVE}
    row = row_of(admin.get("/consent").text, JON)
    assert "granted (referrers.csv)" in row and f"revoked to {prospect}" in row


def test_bad_input_is_refused_with_a_message_and_changes_nothing(app, world):
    admin, csrf = sign_in(app, ADMIN)
    cases = [
        ({"referrer": "nobody-here"}, "no referrer 'nobody-here' in any launched campaign"),
        ({"referrer": JAMES, "prospect": "not an address"}, "is not an email address"),
        ({"referrer": JAMES, "note": "x" * 1001}, "the note is longer than 1000 characters"),
    ]
    for fields, message in cases:
        r = admin.post("/consent/revoke", data={"csrf": csrf, **fields})
        assert r.status_code == 303
        assert message in text_of(admin.get("/consent"))
    assert ledger(world, JAMES) == []
    assert {s for s, _, _ in naming(world, JAMES).values()} == {EnrollmentState.ACTIVE}


def test_a_rep_can_neither_see_nor_change_consent(app, world):
    anonymous = client(app)
    r = anonymous.get("/consent")
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=%2Fconsent")
    dana, csrf = sign_in(app, DANA)
    assert 'href="/consent"' not in dana.get("/").text  # not in a rep's nav
    assert dana.get("/consent").status_code == 404
    for action in ("revoke", "grant"):
        r = dana.post(f"/consent/{action}", data={"csrf": csrf, "referrer": JAMES})
        assert r.status_code == 404
    r = anonymous.post("/consent/revoke", data={"referrer": JAMES})
    assert r.status_code in (303, 403)
    assert ledger(world, JAMES) == []
    assert {s for s, _, _ in naming(world, JAMES).values()} == {EnrollmentState.ACTIVE}


def test_a_post_without_the_sessions_csrf_token_is_refused(app, world):
    admin, _ = sign_in(app, ADMIN)
    assert admin.post("/consent/revoke", data={"referrer": JAMES}).status_code == 403
    r = admin.post("/consent/revoke", data={"referrer": JAMES, "csrf": "forged"})
    assert r.status_code == 403 and "Form expired" in r.text
    assert ledger(world, JAMES) == []
    assert {s for s, _, _ in naming(world, JAMES).values()} == {EnrollmentState.ACTIVE}


def test_markup_in_a_referrer_name_and_the_search_is_shown_as_text(app, world):
    admin, csrf = sign_in(app, ADMIN)
    page = admin.get("/consent", params={"q": "lena"})
    assert page.status_code == 200
    assert "<img" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert EVIL_REFERRER in row_of(page.text, "lena-fox")
    assert "james-hervin" not in page.text  # the search narrowed the list
    evil = '"><script>alert(1)</script>'
    r = admin.get("/consent", params={"q": evil})
    assert r.status_code == 200 and "<script>alert" not in r.text
    assert "No referrer matches" in text_of(r) and evil in text_of(r)
    # a note with markup, shown as the latest change
    admin.post(
        "/consent/revoke",
        data={"csrf": csrf_of(page.text), "referrer": "lena-fox", "note": "<b>asked</b>"},
    )
    shown = admin.get("/consent", params={"q": "lena"})
    assert "<b>asked" not in shown.text and "&lt;b&gt;asked&lt;/b&gt;" in shown.text
    assert csrf == csrf_of(shown.text)


def test_open_flags_show_until_a_person_clears_them(app, world):
    enrollment_id, (_, _, prospect) = next(iter(naming(world, JON).items()))
    now = datetime.now(UTC)
    with world.uow_factory() as uow:
        inbound_id = uow.repo.add_inbound("mid:<f1@x.example>", "m", 1, b"x", now, now)
        assert inbound_id is not None
        campaign_id = uow.repo.get_enrollment(enrollment_id).campaign_id
        uow.repo.add_referrer_flag(
            campaign_id, JON, prospect, inbound_id, "<i>who is Jon?</i>", now
        )
        uow.commit()
    admin, _ = sign_in(app, ADMIN)
    page = admin.get("/consent")
    assert "<i>who" not in page.text
    assert f"open: {prospect} (<i>who is Jon?</i>)" in row_of(page.text, JON)
    assert "none" in row_of(page.text, JAMES).split("via")[-1]
    world.cli("flags", "clear", JON)
    assert "open:" not in row_of(admin.get("/consent").text, JON)


def test_the_page_shows_at_most_200_referrers_and_says_so(app, world):
    now = datetime.now(UTC)
    changes = [ConsentChange(f"zz-{i:03}", None, False, "ops", Via.CLI, now) for i in range(205)]
    with world.uow_factory() as uow:
        uow.repo.add_consent_changes(changes)
        uow.commit()
    board = consent_board(world.uow_factory)
    assert len(board.referrers) == REFERRER_LIMIT == 200 and board.truncated
    assert board.referrers[0].referrer_id == JAMES  # by id: the enrollments' come first
    admin, _ = sign_in(app, ADMIN)
    page = admin.get("/consent")
    assert page.text.count('class="referrer"') == 200
    assert "Showing the first 200 referrers by id" in text_of(page)
    narrowed = consent_board(world.uow_factory, "ZZ-20")
    assert [r.referrer_id for r in narrowed.referrers] == [
        "zz-200",
        "zz-201",
        "zz-202",
        "zz-203",
        "zz-204",
    ]
    assert not narrowed.truncated and not narrowed.referrers[0].consents
    # LIKE wildcards in the search are literal
    assert consent_board(world.uow_factory, "zz_%").referrers == ()
