"""The consent page in headless Chromium, as an admin uses it (the set-up of test_browser.py:
its own uvicorn server on a free port and SQLite world for this module)."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import ADMIN, DANA
from tests.web.test_browser import Served, browser, flash, page, served, sign_in

__all__ = ["browser", "page", "served"]  # the fixtures, for this module


def _row(page: Any, referrer: str) -> Any:
    return page.locator(f'tr.referrer[data-referrer="{referrer}"]')


def test_an_admin_revokes_and_grants_from_the_consent_page(page: Any, served: Served) -> None:
    sign_in(page, served, ADMIN)
    page.get_by_role("link", name="Consent").click()
    page.wait_for_url(served.url + "/consent")
    assert page.locator("main img").count() == 0  # the markup in a referrer's name is text
    assert "<img src=x onerror=alert(1)>" in _row(page, "lena-fox").inner_text()

    james = _row(page, "james-hervin")
    james.get_by_label("Note").fill("called us")
    james.get_by_role("button", name="Revoke", exact=True).click()
    page.wait_for_url(served.url + "/consent")
    assert "consent to be named revoked" in flash(page) and "held" in flash(page)
    assert "revoked" in _row(page, "james-hervin").locator(".consent-state").inner_text()

    jon = _row(page, "jon-smith")
    prospect = "john.reyes@ledgerline.example"
    jon.get_by_label("Prospect email").fill(prospect)
    jon.get_by_role("button", name="Revoke for prospect").click()
    page.wait_for_url(served.url + "/consent")
    assert f"revoked to {prospect}" in _row(page, "jon-smith").inner_text()

    rows = served.world.cli.json("consent", "list", "--json")
    web = [(r["referrer"], r["prospect"], r["by"], r["via"]) for r in rows if r["via"] == "web"]
    assert web == [("james-hervin", None, ADMIN, "web"), ("jon-smith", prospect, ADMIN, "web")]


def test_a_rep_has_no_consent_link_and_no_page(page: Any, served: Served) -> None:
    sign_in(page, served, DANA)
    assert page.get_by_role("link", name="Consent").count() == 0
    response = page.goto(served.url + "/consent")
    assert response is not None and response.status == 404
