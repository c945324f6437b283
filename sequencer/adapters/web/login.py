"""Sign in (password or one-time link) and sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from sequencer.adapters.web.auth import LoginRequired, client_ip, get_session, require_csrf
from sequencer.adapters.web.deps import ctx, current_rep, redirect, render, safe_next
from sequencer.services import accounts

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", with_csrf=True, email="", next=safe_next(next))


@router.post("/login", dependencies=[Depends(require_csrf)])
def login(
    request: Request,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    c = ctx(request)
    now = c.clock()
    key = (client_ip(request), email.strip().casefold()[:320])
    wait = c.limiter.retry_after(key, now)
    if wait is not None:
        minutes = max(1, round(wait / 60))
        return render(
            request,
            "login.html",
            status_code=429,
            with_csrf=True,
            headers={"Retry-After": str(wait)},
            email=email,
            next=safe_next(next),
            error=(
                f"Too many failed sign-ins for {email.strip() or 'this address'} from your "
                f"network. Wait about {minutes} minute{'s' if minutes != 1 else ''} and try "
                "again, or ask an admin for a sign-in link (refseq rep link EMAIL)."
            ),
        )
    rep = accounts.authenticate(c.reps, c.hasher, email, password)
    if rep is None:
        c.limiter.fail(key, now)
        return render(
            request,
            "login.html",
            status_code=401,
            with_csrf=True,
            email=email,
            next=safe_next(next),
            error="Wrong email or password.",
        )
    c.limiter.reset(key)
    get_session(request).sign_in(rep, now)
    return redirect(safe_next(next))


@router.get("/login/link/{token}", response_class=HTMLResponse)
def link_page(request: Request, token: str) -> Response:
    """Shows a button: mail scanners open links, and a GET must not use the link up."""
    c = ctx(request)
    if not accounts.link_is_valid(c.reps, token, c.clock()):
        return render(request, "link.html", status_code=400, with_csrf=True, valid=False)
    return render(request, "link.html", with_csrf=True, valid=True, token=token)


@router.post("/login/link/{token}", dependencies=[Depends(require_csrf)])
def use_link(request: Request, token: str) -> Response:
    c = ctx(request)
    now = c.clock()
    rep = accounts.consume_login_link(c.reps, token, now)
    if rep is None:
        return render(request, "link.html", status_code=400, with_csrf=True, valid=False)
    session = get_session(request)
    session.sign_in(rep, now)
    if rep.password_hash is None:
        session.flash(
            "Signed in with a one-time link. Ask an admin to set a password "
            "(refseq rep password) if you want to sign in without one.",
            "info",
        )
    return redirect("/")


@router.post("/logout", dependencies=[Depends(require_csrf)])
def logout(request: Request) -> Response:
    """Ends the session server-side: every cookie of this rep, copies included, stops working."""
    try:
        rep = current_rep(request)  # only a live session revokes (a stale one is just cleared)
    except LoginRequired:
        rep = None
    if rep is not None:
        accounts.sign_out_everywhere(ctx(request).reps, rep.id)
    get_session(request).sign_out()
    return redirect("/login")
