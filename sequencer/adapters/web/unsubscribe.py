"""``/u/<token>``: the unsubscribe link in every email (no sign-in, no cookie, no CSRF token).

The signed token names the address and campaign; the HMAC is the authentication. A GET only
shows a page with a button, because mail scanners fetch links; a POST unsubscribes, both for
the button and for RFC 8058 one-click (``List-Unsubscribe=One-Click``, sent by mail clients).
Both end in ``services.optout.opt_out``, like every other opt-out channel: the address is
suppressed globally, its live enrollments stop as ``unsubscribed`` and their unsent drafts are
cancelled. Idempotent.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from sequencer.adapters.web.deps import ctx, page, redirect
from sequencer.core.tokens import verify_unsubscribe_token
from sequencer.errors import SequencerError
from sequencer.services import campaigns
from sequencer.services.optout import opt_out_address

router = APIRouter()
REASON = "unsubscribe link"


def _bad_link(request: Request) -> Response:
    return page(request, "unsubscribe.html", 400, state="invalid")


def _is_suppressed(request: Request, email: str) -> bool:
    key = email.strip().casefold()
    domain = "@" + key.rpartition("@")[2]
    values = {s.value for s in campaigns.list_suppressions(ctx(request).uow_factory)}
    return key in values or domain in values


@router.get("/u/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str) -> Response:
    found = verify_unsubscribe_token(ctx(request).settings.secret_key, token)
    if found is None:
        return _bad_link(request)
    email, _ = found
    state = "done" if _is_suppressed(request, email) else "confirm"
    return page(request, "unsubscribe.html", 200, state=state, email=email, token=token)


@router.post("/u/{token}")
def unsubscribe(
    request: Request,
    token: str,
    one_click: Annotated[str | None, Form(alias="List-Unsubscribe")] = None,
) -> Response:
    c = ctx(request)
    found = verify_unsubscribe_token(c.settings.secret_key, token)
    if found is None:
        return _bad_link(request)
    email, campaign = found
    try:
        opt_out_address(c.uow_factory, email, REASON, f"campaign {campaign}", c.clock())
    except SequencerError:  # an address the validator refuses: nothing could be sent to it
        return _bad_link(request)
    if one_click == "One-Click":  # RFC 8058: a mail client's background POST, no page wanted
        return PlainTextResponse(f"{email} is unsubscribed.\n")
    return redirect(f"/u/{token}")  # the button: 303 to the page that now says "done"
