"""The real page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

One uvicorn server in a thread and one browser for the module, on SQLite (the HTTP tests cover
PostgreSQL). Each test signs in with a fresh browser context. The first test saves the queue
screenshot the README shows (docs/queue.png).
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sequencer.adapters.db.session import make_uow_factory
from sequencer.adapters.web.app import create_app
from sequencer.core.states import DraftState
from tests.cli_helpers import NOW
from tests.web.conftest import DANA, EVE, HASHER, PASSWORDS, TUESDAY, World, build_world

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "queue.png"

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
uvicorn = pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    url: str
    world: World


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("web")
    shutil.copyfile(sqlite_template, tmp / "refseq.db")
    db_url = f"sqlite:///{tmp / 'refseq.db'}"
    factory = make_uow_factory(db_url)
    world = build_world(db_url, factory, tmp, dana_campaigns=2, days=(NOW, TUESDAY))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(replace(world.settings, base_url=url), factory, hasher=HASHER)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ws="none",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield Served(url, world)
    server.should_exit = True
    thread.join(10)
    factory.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with\n"
            "  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium\n"
            "(never `playwright install`: it downloads a browser build, which fails here).",
            pytrace=False,
        )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(5000)
    tab = context.new_page()
    yield tab
    context.close()


def sign_in(page: Any, served: Served, email: str) -> None:
    page.goto(served.url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORDS[email])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(served.url + "/")


def flash(page: Any) -> str:
    return str(page.locator(".flash").first.inner_text())


def test_it_signs_in_filters_the_queue_and_saves_a_screenshot(page, served):
    sign_in(page, served, DANA)
    sections = page.locator("section.campaign h2")
    assert sections.count() == 2  # Dana's two campaigns, newest first
    rows = page.locator("tr.draft")
    total = rows.count()
    assert total == 12
    assert "eve-insurance" not in page.content()
    page.keyboard.press("j")  # the keyboard focus, as a rep would see it
    page.keyboard.press("j")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=False)

    page.get_by_label("Temperature").select_option("cold")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/?campaign=&temperature=cold")
    temps = page.locator("tr.draft .temp").all_inner_texts()
    assert temps and set(temps) == {"cold"} and len(temps) < total
    page.get_by_label("Campaign").select_option("q1-payments-partners")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("section.campaign h2").all_inner_texts() == [
        f"q1-payments-partners {len(page.locator('tr.draft').all())}"
    ]


def test_it_opens_edits_and_approves_a_draft_with_the_keyboard(page, served):
    sign_in(page, served, DANA)
    page.keyboard.press("j")
    first = page.locator("tr.draft.focus")
    draft_id = int(first.get_attribute("data-id"))
    page.keyboard.press("o")
    page.wait_for_url(f"{served.url}/drafts/{draft_id}")
    headers = page.locator("table.headers").inner_text()
    assert "From\tDana Whitfield <dana@acme.example>" in headers
    frame = page.locator("iframe.html")
    if frame.count():  # the HTML part, sandboxed: no scripts, no same-origin
        assert frame.get_attribute("sandbox") == ""
        assert "unsubscribe here" in page.frame_locator("iframe.html").locator("body").inner_text()

    page.get_by_label("Subject").fill("Coffee next week?")
    page.get_by_label("Body (text)").fill("Hi,\n\nA mutual friend suggested we talk.\n\nDana\n")
    page.get_by_role("button", name="Save changes").click()
    assert "Saved (revision 2)" in flash(page)
    assert "A mutual friend suggested we talk." in page.locator("pre.text").first.inner_text()

    page.keyboard.press("a")  # approve, then on to the next draft
    page.wait_for_url(lambda u: not u.endswith(f"/drafts/{draft_id}"))
    assert "Approved the email to" in flash(page)
    record = served.world.draft(draft_id)
    assert (record.state, record.subject, record.decided_by) == (
        DraftState.APPROVED,
        "Coffee next week?",
        DANA,
    )


def test_it_bulk_approves_and_rejects(page, served):
    sign_in(page, served, DANA)
    section = page.locator("section.campaign", has_text="q1-payments-partners")
    boxes = section.locator("tbody input[type=checkbox]")
    chosen = [int(boxes.nth(i).get_attribute("value").split("@")[0]) for i in range(2)]
    for i in range(2):
        boxes.nth(i).check()
    page.get_by_role("button", name="Approve selected").click()
    page.wait_for_load_state()
    assert flash(page) == "Approved 2 drafts."
    assert {served.world.draft(i).state for i in chosen} == {DraftState.APPROVED}
    assert all(page.locator(f"tr.draft[data-id='{i}']").count() == 0 for i in chosen)

    page.locator("tr.draft a").first.click()
    draft_id = int(page.url.rsplit("/", 1)[1])
    page.get_by_label("Reason").fill("Already talking to our CEO")
    page.get_by_role("button", name="Reject").click()
    page.wait_for_load_state()
    assert "Rejected the email to" in flash(page)
    record = served.world.draft(draft_id)
    assert (record.state, record.reason) == (DraftState.REJECTED, "Already talking to our CEO")


def test_it_shows_a_handoff(page, served, monkeypatch):
    handled: list[int] = []
    routing = types.ModuleType("sequencer.services.routing")
    routing.list_handoffs = lambda uow, rep_email: [  # type: ignore[attr-defined]
        {
            "id": 3,
            "campaign": "q4-fintech-intros",
            "prospect_email": "elena.park@northbank.example",
            "prospect_name": "Elena Park",
            "referrer_name": "James Hervin",
            "reply_text": "Happy to talk <Thursday>!",
            "received_at": datetime.now(UTC),
            "handled_at": None,
            "thread": [],
        }
    ]
    routing.mark_handled = lambda uow, hid, actor, now, rep_email: handled.append(hid)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sequencer.services.routing", routing)
    sign_in(page, served, DANA)
    page.get_by_role("link", name="Handoffs").click()
    card = page.locator("section.handoff")
    assert "Elena Park" in card.inner_text()
    assert card.locator("pre.reply").inner_text() == "Happy to talk <Thursday>!"
    card.get_by_role("button", name="Mark handled").click()
    page.wait_for_load_state()
    assert flash(page) == "Marked as handled." and handled == [3]


def test_a_second_rep_cannot_reach_the_first_reps_draft(page, served):
    danas = served.world.pending(DANA)
    sign_in(page, served, EVE)
    assert page.locator("section.campaign h2").all_inner_texts()[0].startswith("eve-insurance")
    response = page.goto(f"{served.url}/drafts/{danas[0]}")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert served.world.draft(danas[0]).to_email not in page.content()


def test_it_opens_the_report(page, served):
    sign_in(page, served, DANA)
    page.get_by_role("link", name="Report").click()
    page.wait_for_url(served.url + "/report")
    leaders = page.locator("table.leaderboard")
    assert leaders.is_visible()
    assert "James Hervin" in leaders.inner_text()
    chart = page.locator("img.chart")  # the PNG loaded under the page's CSP
    chart.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 1200", arg=chart.element_handle()
    )
