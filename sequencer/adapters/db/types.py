"""Column types that behave the same on SQLite and PostgreSQL.

* :class:`UTCDateTime` refuses naive datetimes, stores UTC and always returns aware UTC.
  (SQLite would otherwise hand back a naive, possibly shifted, wall-clock time.)
* :class:`StrEnumType` stores a ``StrEnum`` by value in a plain ``VARCHAR``.
* :data:`JSONDocument` is ``JSONB`` on PostgreSQL and ``JSON`` (text) elsewhere.

Migrations never import these: ``migrations/env.py`` renders them as plain ``sa`` types.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sqlalchemy import JSON, DateTime, Dialect, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext

E = TypeVar("E", bound=StrEnum)

# JSONB on PostgreSQL (indexable, compact); JSON stored as text on SQLite.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, stored as UTC, returned as aware UTC on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UTCDateTime needs a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} (pass an aware datetime)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite has no time zones: store the UTC wall clock, re-attach UTC on the way out.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"UTCDateTime read a {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StrEnumType(TypeDecorator[E]):
    """A ``StrEnum`` stored by value in a ``VARCHAR(length)``; unknown values fail loudly."""

    impl = String
    cache_ok = True

    def __init__(self, enum_class: type[E], length: int = 20) -> None:
        longest = max(len(member.value) for member in enum_class)
        if longest > length:
            raise ValueError(f"{enum_class.__name__} has a {longest}-char value; length={length}")
        super().__init__(length)
        self.enum_class = enum_class
        self.length = length

    @property
    def python_type(self) -> type[E]:
        return self.enum_class

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return str(self.enum_class(value).value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> E | None:
        if value is None:
            return None
        return self.enum_class(value)


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Alembic ``render_item`` hook: write our types as the plain ``sa`` types they store."""
    if type_ != "type":
        return False
    if isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, StrEnumType):
        return f"sa.String(length={obj.length})"
    if isinstance(obj, JSON) and "postgresql" in obj._variant_mapping:
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return "sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')"
    return False
