"""Rep accounts: add a rep, set a password, sign in with a password or a one-time link.

Pure use cases on two small ports defined here: a rep store (``RepsUnit``, one transaction)
and a ``PasswordHasher`` (the KDF lives in an adapter). Only hashes are stored: the password's
(a memory-hard KDF) and the sign-in token's (SHA-256 of 256 random bits, so a leaked table
signs nobody in).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self

from email_validator import EmailNotValidError, validate_email

from sequencer.errors import NotFound, SequencerError

LINK_TTL = timedelta(minutes=30)
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # a KDF over megabytes of input is a denial-of-service lever


class Role(StrEnum):
    REP = "rep"
    ADMIN = "admin"


@dataclass(frozen=True)
class Rep:
    id: int
    email: str  # casefolded
    name: str
    role: Role
    password_hash: str | None
    created_at: datetime
    session_epoch: int = 0  # moved on by sign-out: every older session cookie stops working

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def scope(self) -> str | None:
        """The ``rep_email`` the approval services filter by: None (everything) for admins."""
        return None if self.is_admin else self.email


class RepStore(Protocol):
    def rep_by_email(self, email: str) -> Rep | None: ...
    def rep_by_id(self, rep_id: int) -> Rep | None: ...
    def add_rep(
        self, email: str, name: str, role: Role, password_hash: str | None, now: datetime
    ) -> Rep: ...
    def set_password_hash(self, rep_id: int, password_hash: str) -> None: ...
    def bump_session_epoch(self, rep_id: int) -> None: ...
    def remove_rep(self, rep_id: int) -> None:
        """Delete the rep and their sign-in links."""
        ...

    def list_reps(self) -> list[Rep]: ...
    def add_login_token(
        self, rep_id: int, token_hash: str, expires_at: datetime, now: datetime
    ) -> None: ...
    def login_token_rep(self, token_hash: str, now: datetime) -> int | None:
        """The rep of an unused, unexpired token (read only)."""
        ...

    def use_login_token(self, token_hash: str, now: datetime) -> int | None:
        """Mark an unused, unexpired token used (compare-and-set); its rep id, else None."""
        ...


class RepsUnit(Protocol):
    reps: RepStore

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...
    def verify(self, password_hash: str, password: str) -> bool:
        """True on a match; False on a mismatch or an unreadable hash (never raises)."""
        ...

    def needs_rehash(self, password_hash: str) -> bool: ...


RepsFactory = Callable[[], RepsUnit]


def normalize_email(value: str) -> str:
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise SequencerError(f"{value!r} is not a valid email address: {exc}") from None
    return checked.normalized.casefold()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise SequencerError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise SequencerError(f"the password is too long (at most {MAX_PASSWORD} characters)")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_rep(
    units: RepsFactory,
    email: str,
    name: str,
    now: datetime,
    role: Role = Role.REP,
    password: str | None = None,
    hasher: PasswordHasher | None = None,
) -> Rep:
    key = normalize_email(email)
    password_hash = None
    if password is not None:
        check_password(password)
        if hasher is None:
            raise ValueError("a password needs a hasher")
        password_hash = hasher.hash(password)
    with units() as unit:
        if unit.reps.rep_by_email(key) is not None:
            raise SequencerError(
                f"rep {key} already exists (refseq rep password / refseq rep link {key})"
            )
        rep = unit.reps.add_rep(key, name.strip() or key, role, password_hash, now)
        unit.commit()
        return rep


def _require(unit: RepsUnit, email: str) -> Rep:
    key = normalize_email(email)
    rep = unit.reps.rep_by_email(key)
    if rep is None:
        raise NotFound(f"no rep {key} (add one with `refseq rep add {key}`)")
    return rep


def set_password(units: RepsFactory, email: str, password: str, hasher: PasswordHasher) -> Rep:
    check_password(password)
    password_hash = hasher.hash(password)
    with units() as unit:
        rep = _require(unit, email)
        unit.reps.set_password_hash(rep.id, password_hash)
        unit.reps.bump_session_epoch(rep.id)
        unit.commit()
    return rep


def sign_out_everywhere(units: RepsFactory, rep_id: int) -> None:
    """Revoke every session of this rep (signing out ends the session server-side too)."""
    with units() as unit:
        unit.reps.bump_session_epoch(rep_id)
        unit.commit()


def revoke_sessions(units: RepsFactory, email: str) -> Rep:
    """`refseq rep signout`: end the rep's sessions in every browser, keeping the account."""
    with units() as unit:
        rep = _require(unit, email)
        unit.reps.bump_session_epoch(rep.id)
        unit.commit()
    return rep


def remove_rep(units: RepsFactory, email: str) -> Rep:
    """Delete a rep: their sessions and unused sign-in links stop working at once."""
    with units() as unit:
        rep = _require(unit, email)
        unit.reps.remove_rep(rep.id)
        unit.commit()
    return rep


def list_reps(units: RepsFactory) -> list[Rep]:
    with units() as unit:
        return unit.reps.list_reps()


def get_rep(units: RepsFactory, rep_id: int) -> Rep | None:
    with units() as unit:
        return unit.reps.rep_by_id(rep_id)


def make_login_link(
    units: RepsFactory, email: str, base_url: str, now: datetime, ttl: timedelta = LINK_TTL
) -> tuple[str, datetime]:
    """A one-time sign-in URL for the rep and when it expires. Only its hash is stored."""
    token = secrets.token_urlsafe(32)
    expires_at = now + ttl
    with units() as unit:
        rep = _require(unit, email)
        unit.reps.add_login_token(rep.id, token_hash(token), expires_at, now)
        unit.commit()
    return f"{base_url.rstrip('/')}/login/link/{token}", expires_at


def link_is_valid(units: RepsFactory, token: str, now: datetime) -> bool:
    if not token or len(token) > 200:
        return False
    with units() as unit:
        return unit.reps.login_token_rep(token_hash(token), now) is not None


def consume_login_link(units: RepsFactory, token: str, now: datetime) -> Rep | None:
    """The rep a valid link signs in; the link is used up (a second use returns None)."""
    if not token or len(token) > 200:
        return None
    with units() as unit:
        rep_id = unit.reps.use_login_token(token_hash(token), now)
        if rep_id is None:
            return None
        rep = unit.reps.rep_by_id(rep_id)
        unit.commit()
        return rep


_DUMMY: dict[int, tuple[PasswordHasher, str]] = {}


def _dummy_hash(hasher: PasswordHasher) -> str:
    """A hash to verify against when the rep does not exist, so timing tells nothing."""
    kept = _DUMMY.get(id(hasher))
    if kept is None or kept[0] is not hasher:
        kept = _DUMMY[id(hasher)] = (hasher, hasher.hash(secrets.token_hex(16)))
    return kept[1]


def authenticate(
    units: RepsFactory, hasher: PasswordHasher, email: str, password: str
) -> Rep | None:
    """The rep with this email and password, else None (same cost either way)."""
    if not password or len(password) > MAX_PASSWORD:
        return None
    try:
        key = normalize_email(email)
    except SequencerError:
        key = None
    with units() as unit:
        rep = unit.reps.rep_by_email(key) if key else None
        if rep is None or rep.password_hash is None:
            hasher.verify(_dummy_hash(hasher), password)
            return None
        if not hasher.verify(rep.password_hash, password):
            return None
        if hasher.needs_rehash(rep.password_hash):
            unit.reps.set_password_hash(rep.id, hasher.hash(password))
            unit.commit()
        return rep


def session_version(rep: Rep) -> str:
    """Moves on with ``session_epoch``: on sign-out, a password change (`set_password`) and
    `refseq rep signout`; older session cookies then stop working. A transparent rehash of the
    same password (``authenticate``) does not sign anyone out."""
    return hashlib.sha256(f"{rep.id}:{rep.session_epoch}".encode()).hexdigest()[:16]
