"""``services.accounts.RepStore`` on SQLAlchemy, and a unit of work that carries it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Self, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from sequencer.adapters.db.session import SqlUnitOfWork
from sequencer.adapters.db.tables import LoginToken, RepEntry
from sequencer.core.ports import UnitOfWork
from sequencer.services.accounts import Rep, RepStore, Role

REPS = cast(Table, RepEntry.__table__)
TOKENS = cast(Table, LoginToken.__table__)


def _rep(row: RepEntry) -> Rep:
    return Rep(
        row.id,
        row.email,
        row.name,
        row.role,
        row.password_hash,
        row.created_at,
        row.session_epoch or 0,
    )


class SqlReps:
    def __init__(self, session: Session) -> None:
        self.session = session

    def rep_by_email(self, email: str) -> Rep | None:
        row = self.session.scalars(select(RepEntry).where(RepEntry.email == email)).one_or_none()
        return None if row is None else _rep(row)

    def rep_by_id(self, rep_id: int) -> Rep | None:
        row = self.session.get(RepEntry, rep_id)
        return None if row is None else _rep(row)

    def add_rep(
        self, email: str, name: str, role: Role, password_hash: str | None, now: datetime
    ) -> Rep:
        row = RepEntry(
            email=email, name=name, role=role, password_hash=password_hash, created_at=now
        )
        self.session.add(row)
        self.session.flush()
        return _rep(row)

    def set_password_hash(self, rep_id: int, password_hash: str) -> None:
        self.session.execute(
            update(REPS).where(REPS.c.id == rep_id).values(password_hash=password_hash)
        )

    def bump_session_epoch(self, rep_id: int) -> None:
        self.session.execute(
            update(REPS).where(REPS.c.id == rep_id).values(session_epoch=REPS.c.session_epoch + 1)
        )

    def remove_rep(self, rep_id: int) -> None:
        # login_tokens first: SQLite enforces ON DELETE CASCADE only with PRAGMA foreign_keys.
        self.session.execute(delete(TOKENS).where(TOKENS.c.rep_id == rep_id))
        self.session.execute(delete(REPS).where(REPS.c.id == rep_id))

    def list_reps(self) -> list[Rep]:
        return [_rep(r) for r in self.session.scalars(select(RepEntry).order_by(RepEntry.email))]

    def add_login_token(
        self, rep_id: int, token_hash: str, expires_at: datetime, now: datetime
    ) -> None:
        self.session.execute(
            insert(TOKENS).values(
                token_hash=token_hash, rep_id=rep_id, created_at=now, expires_at=expires_at
            )
        )

    def login_token_rep(self, token_hash: str, now: datetime) -> int | None:
        stmt = select(TOKENS.c.rep_id).where(
            TOKENS.c.token_hash == token_hash,
            TOKENS.c.used_at.is_(None),
            TOKENS.c.expires_at > now,
        )
        return self.session.execute(stmt).scalar_one_or_none()

    def use_login_token(self, token_hash: str, now: datetime) -> int | None:
        """One ``UPDATE ... WHERE used_at IS NULL``: two clicks race, one wins."""
        stmt = (
            update(TOKENS)
            .where(
                TOKENS.c.token_hash == token_hash,
                TOKENS.c.used_at.is_(None),
                TOKENS.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(TOKENS.c.rep_id)
        )
        return self.session.execute(stmt).scalar_one_or_none()


class SqlRepsUnit:
    """``with unit: unit.reps...; unit.commit()`` on a session of the given unit of work."""

    reps: RepStore  # the Protocol: a settable attribute is invariant (see SqlUnitOfWork.repo)

    def __init__(self, uow: UnitOfWork) -> None:
        if not isinstance(uow, SqlUnitOfWork):
            raise TypeError(f"rep accounts need the SQL unit of work, not {type(uow).__name__}")
        self._uow = uow

    def __enter__(self) -> Self:
        self._uow.__enter__()
        self.reps = SqlReps(self._uow.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._uow.__exit__(exc_type, exc, tb)

    def commit(self) -> None:
        self._uow.commit()


def reps_factory(uow_factory: Callable[[], UnitOfWork]) -> Callable[[], SqlRepsUnit]:
    """The ``RepsFactory`` the accounts service takes, on the app's unit-of-work factory."""
    return lambda: SqlRepsUnit(uow_factory())
