"""Sessions, CSRF and the sign-in rate limit.

* The session is a signed cookie (HMAC-SHA256 with a key derived from ``REFSEQ_SECRET_KEY``):
  ``v1.<payload>.<mac>``, payload = base64url JSON. It holds the rep id, the rep's session
  version (``accounts.session_version``: a fingerprint of the password hash and the rep's
  ``session_epoch``, checked against the database on every request, so signing out, a password
  change and removing the rep revoke every older cookie server-side), the sign-in time (12 h
  lifetime), the CSRF token and flash messages. The key is never a public one (see
  ``sequencer.secretkey``). HttpOnly, SameSite=Lax, Path=/, and Secure with
  the ``__Host-`` prefix when ``REFSEQ_BASE_URL`` is https.
* Every POST except the signed-token unsubscribe endpoint carries the session's CSRF token in a
  ``csrf`` form field (:func:`require_csrf`); a missing or wrong one is a 403.
* :class:`LoginLimiter` allows 5 failed sign-ins per (client IP, email) in 5 minutes, then 429.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sequencer.services.accounts import Rep, session_version

SESSION_LIFETIME = timedelta(hours=12)
SCOPE_KEY = "refseq.session"
_PURPOSE = b"refseq/session\x00"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


class LoginRequired(Exception):
    """No valid signed-in session: the app redirects to /login."""


class CsrfFailed(Exception):
    """A POST without the session's CSRF token: the app answers 403."""


@dataclass
class Session:
    data: dict[str, Any] = field(default_factory=dict)
    modified: bool = False

    def csrf_token(self) -> str:
        token = self.data.get("csrf")
        if not isinstance(token, str):
            token = self.data["csrf"] = secrets.token_urlsafe(32)
            self.modified = True
        return token

    @property
    def rep_id(self) -> int | None:
        value = self.data.get("rep")
        return value if isinstance(value, int) else None

    def sign_in(self, rep: Rep, now: datetime) -> None:
        """A new session (new CSRF token too): nothing from before sign-in carries over."""
        self.data = {
            "csrf": secrets.token_urlsafe(32),
            "rep": rep.id,
            "sv": session_version(rep),
            "iat": int(now.timestamp()),
        }
        self.modified = True

    def sign_out(self) -> None:
        self.data = {}
        self.modified = True

    def flash(self, text: str, level: str = "ok") -> None:
        flashes = list(self.data.get("flash", []))[-4:]
        flashes.append([level, text[:400]])
        self.data["flash"] = flashes
        self.modified = True

    def pop_flashes(self) -> list[tuple[str, str]]:
        flashes = self.data.pop("flash", None)
        if not flashes:
            return []
        self.modified = True
        return [(str(level), str(text)) for level, text in flashes]


class SessionCodec:
    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode("utf-8"), _PURPOSE, hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def dumps(self, data: dict[str, Any], now: datetime) -> str:
        payload = json.dumps({**data, "t": int(now.timestamp())}, separators=(",", ":"))
        raw = payload.encode("utf-8")
        return f"v1.{_b64(raw)}.{_b64(self._mac(raw))}"

    def loads(self, cookie: str | None, now: datetime) -> dict[str, Any]:
        """The session data, or {} for a missing, tampered, foreign or expired cookie."""
        if not cookie or len(cookie) > 4096 or cookie.count(".") != 2:
            return {}
        version, payload_text, mac_text = cookie.split(".")
        raw, mac = _unb64(payload_text), _unb64(mac_text)
        if version != "v1" or raw is None or mac is None:
            return {}
        if not hmac.compare_digest(mac, self._mac(raw)):
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        stamp = now.timestamp()
        issued = data.pop("t", 0)
        signed_in = data.get("iat", issued)
        if not isinstance(issued, int) or not isinstance(signed_in, int):
            return {}
        if stamp - min(issued, signed_in) > SESSION_LIFETIME.total_seconds():
            return {}
        return data


@dataclass(frozen=True)
class CookiePolicy:
    secure: bool

    @property
    def name(self) -> str:
        # __Host-: the browser only accepts it Secure, Path=/ and without Domain.
        return "__Host-refseq_session" if self.secure else "refseq_session"

    def header(self, value: str | None) -> str:
        parts = [f"{self.name}={value or ''}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if value is None:
            parts.append("Max-Age=0")
        else:
            parts.append(f"Max-Age={int(SESSION_LIFETIME.total_seconds())}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)


class SessionMiddleware:
    """Decodes the cookie into ``scope[SCOPE_KEY]``; sets it again only when it changed."""

    def __init__(
        self,
        app: ASGIApp,
        codec: SessionCodec,
        policy: CookiePolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self.app, self.codec, self.policy, self.clock = app, codec, policy, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        had_cookie = self.policy.name in conn.cookies
        session = Session(self.codec.loads(conn.cookies.get(self.policy.name), self.clock()))
        scope[SCOPE_KEY] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.modified:
                headers = MutableHeaders(scope=message)
                if session.data:
                    value = self.codec.dumps(session.data, self.clock())
                    headers.append("Set-Cookie", self.policy.header(value))
                elif had_cookie:
                    headers.append("Set-Cookie", self.policy.header(None))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def get_session(request: HTTPConnection) -> Session:
    session = request.scope.get(SCOPE_KEY)
    assert isinstance(session, Session), "SessionMiddleware is not installed"
    return session


async def require_csrf(request: Request) -> None:
    """FastAPI dependency on every state-changing route (the unsubscribe POST excepted)."""
    form = await request.form()
    sent = form.get("csrf")
    expected = get_session(request).data.get("csrf")
    if not (
        isinstance(sent, str)
        and isinstance(expected, str)
        and hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))
    ):
        raise CsrfFailed


def client_ip(request: HTTPConnection) -> str:
    return request.client.host if request.client else "unknown"


class LoginLimiter:
    """Failed sign-ins per key within a sliding window (in memory: per web process)."""

    def __init__(
        self,
        max_failures: int = 5,
        window: timedelta = timedelta(minutes=5),
        max_keys: int = 10_000,
    ) -> None:
        self.max_failures, self.window, self.max_keys = max_failures, window, max_keys
        self._failures: dict[tuple[str, str], deque[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: datetime) -> deque[datetime]:
        times = self._failures.get(key, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def retry_after(self, key: tuple[str, str], now: datetime) -> int | None:
        """Seconds until the next attempt is allowed, or None when it is allowed now."""
        with self._lock:
            times = self._recent(key, now)
            if len(times) < self.max_failures:
                return None
            return max(1, math.ceil((times[0] + self.window - now).total_seconds()))

    def fail(self, key: tuple[str, str], now: datetime) -> None:
        with self._lock:
            if key not in self._failures and len(self._failures) >= self.max_keys:
                for stale in [k for k in self._failures if not self._recent(k, now)]:
                    del self._failures[stale]
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times

    def reset(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)
