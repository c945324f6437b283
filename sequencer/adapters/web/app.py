"""``create_app(settings)``: the rep's web queue, sign-in and the unsubscribe endpoints.

Routes (HTML; every POST answers 303 → GET, and carries the CSRF token except ``/u/``):

====================================  =========================================================
``GET  /login``, ``POST /login``      password sign-in (5 failures / 5 min per IP+email → 429)
``GET|POST /login/link/<token>``      one-time sign-in link (``refseq rep link``); POST uses it
``POST /logout``                      sign out
``GET  /``                            pending drafts by campaign (``?campaign=&temperature=``)
``POST /drafts/approve``              approve the selected drafts (``ids=ID@REVISION``…)
``GET  /drafts/<id>``                 the email as sent, the referral context, edit/approve/reject
``POST /drafts/<id>/approve|reject|edit``
``GET  /handoffs``                    engaged prospects (``POST /handoffs/<id>/handled``)
``GET  /report``                      funnel, warm vs cold, leaderboard (``?campaign=&by=``)
``GET  /report/chart.png``            the report's chart (same parameters), drawn with Agg
``GET  /consent``                     admins: each referrer's consent, flags (``?q=`` searches)
``POST /consent/grant|revoke``        admins: ``referrer``, optional ``prospect`` and ``note``
``GET|POST /u/<token>``               unsubscribe: confirmation page / RFC 8058 one-click
``GET  /healthz``, ``/static/…``
====================================  =========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sequencer.adapters.db.reps import reps_factory
from sequencer.adapters.web import consent, handoffs, inbound, login, report, unsubscribe, views
from sequencer.adapters.web.auth import (
    CookiePolicy,
    CsrfFailed,
    LoginLimiter,
    LoginRequired,
    SessionCodec,
    SessionMiddleware,
)
from sequencer.adapters.web.deps import UowFactory, WebContext, page, redirect
from sequencer.adapters.web.passwords import Argon2Hasher
from sequencer.config import Settings
from sequencer.errors import NotFound
from sequencer.resources import web_templates_dir
from sequencer.services.accounts import PasswordHasher

TEMPLATES_DIR = web_templates_dir()
# Inline styles are allowed for the email's own HTML in the sandboxed srcdoc frame (it inherits
# this policy); scripts only from our /static, and the sandbox runs none in the frame anyway.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Keeps /u/<token> and /login/link/<token> out of Referer headers.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not str(scope.get("path", "")).startswith("/static/"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: The largest request body read (an edited draft is at most 100,000 characters, which
#: URL-encode to under 1 MiB). A larger one is refused with 413 before anything is done.
MAX_BODY_BYTES = 1 << 20
_TOO_LARGE = f"Request refused: the form is larger than {MAX_BODY_BYTES // 1024} KiB.\n"


class BodyLimit:
    """413 for a request body over ``limit`` bytes: by its Content-Length without reading it,
    or (chunked) as soon as the bytes read pass the limit, before the endpoint acts."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await PlainTextResponse(_TOO_LARGE, 413)(scope, receive, send)
            return
        read = 0

        async def limited() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.limit:
                    raise StarletteHTTPException(413, _TOO_LARGE.strip())
            return message

        await self.app(scope, limited, send)


def _utc(moment: object) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "" if moment is None else str(moment)


def _templates(directory: Path) -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,  # every page: prospect data is text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = _utc
    return Jinja2Templates(env=env)


def _install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path if request.method == "GET" else "/"
        return redirect("/login" if target == "/" else "/login?" + urlencode({"next": target}))

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        return page(
            request,
            "error.html",
            403,
            title="Form expired",
            message="This form was not sent from a refseq page you have open, or it "
            "expired. Go back, reload the page and try again.",
        )

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound) -> Response:
        return page(
            request,
            "error.html",
            404,
            title="Not found",
            message="There is nothing here, or it belongs to another rep.",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = "Not found" if exc.status_code == 404 else "Request refused"
        return page(
            request,
            "error.html",
            exc.status_code,
            title=title,
            message=str(exc.detail)
            if exc.status_code != 404
            else "There is nothing at this address.",
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return page(
            request,
            "error.html",
            400,
            title="Incomplete form",
            message="The form was missing a field or had a malformed value. Go back, "
            "reload the page and try again.",
        )


def create_app(
    settings: Settings,
    uow_factory: UowFactory | None = None,
    *,
    hasher: PasswordHasher | None = None,
    clock: Callable[[], datetime] | None = None,
    limiter: LoginLimiter | None = None,
) -> FastAPI:
    """The ASGI app. ``uow_factory`` defaults to the settings' (migrated) database."""
    if uow_factory is None:
        from sequencer.bootstrap import uow_factory as default_factory

        uow_factory = default_factory(settings)
    now = clock or (lambda: datetime.now(UTC))
    app = FastAPI(title="refseq", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.refseq = WebContext(
        settings=settings,
        uow_factory=uow_factory,
        reps=reps_factory(uow_factory),
        hasher=hasher or Argon2Hasher(),
        clock=now,
        templates=_templates(TEMPLATES_DIR),
        limiter=limiter or LoginLimiter(),
    )
    for module in (login, views, handoffs, report, unsubscribe, inbound, consent):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=TEMPLATES_DIR / "static"), name="static")

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    _install_error_pages(app)
    policy = CookiePolicy(secure=settings.base_url.startswith("https://"))
    app.add_middleware(
        SessionMiddleware, codec=SessionCodec(settings.secret_key), policy=policy, clock=now
    )
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    return app
