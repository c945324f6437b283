"""What every handler needs: the app's context, the signed-in rep, and page rendering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from sequencer.adapters.web.auth import LoginLimiter, LoginRequired, get_session
from sequencer.config import Settings
from sequencer.core.ports import UnitOfWork
from sequencer.services import accounts
from sequencer.services.accounts import PasswordHasher, Rep, RepsFactory

UowFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    uow_factory: UowFactory
    reps: RepsFactory
    hasher: PasswordHasher
    clock: Callable[[], datetime]
    templates: Jinja2Templates
    limiter: LoginLimiter


def ctx(request: Request) -> WebContext:
    context = request.app.state.refseq
    assert isinstance(context, WebContext)
    return context


def current_rep(request: Request) -> Rep:
    """The signed-in rep (FastAPI dependency); anyone else is sent to the sign-in page."""
    session = get_session(request)
    rep_id = session.rep_id
    if rep_id is None:
        raise LoginRequired
    rep = accounts.get_rep(ctx(request).reps, rep_id)
    if rep is None or session.data.get("sv") != accounts.session_version(rep):
        session.sign_out()  # deleted rep or changed password
        raise LoginRequired
    return rep


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go to after a form (never another site: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def redirect(url: str) -> RedirectResponse:
    """POST → 303 → GET: a reload never repeats the action."""
    return RedirectResponse(url, status_code=303)


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    rep: Rep | None = None,
    headers: dict[str, str] | None = None,
    with_csrf: bool = False,
    **context: Any,
) -> HTMLResponse:
    """A page with the session's flash messages and CSRF token (for its forms)."""
    session = get_session(request)
    values = {
        "rep": rep,
        "flashes": session.pop_flashes(),
        "csrf": session.csrf_token() if rep is not None or with_csrf else "",
        **context,
    }
    return ctx(request).templates.TemplateResponse(
        request, template, values, status_code=status_code, headers=headers
    )


def page(request: Request, template: str, status_code: int, **context: Any) -> HTMLResponse:
    """A page for someone who may not be signed in (no session cookie is created)."""
    return ctx(request).templates.TemplateResponse(
        request,
        template,
        {"rep": None, "flashes": [], "csrf": "", **context},
        status_code=status_code,
    )
