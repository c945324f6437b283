"""Finding blank CSV cells that a template prints with no fallback (for the pre-launch check).

A blank cell is not a missing field (``StrictUndefined`` does not see it), so
``growing its {{ prospect.industry }} team`` quietly becomes "growing its  team.". While
:func:`tracking` is on, the renderer hands the template each blank cell of ``prospect``,
``referrer`` and ``referral`` as a :class:`Blank` (an empty ``str`` that knows its variable),
and every ``{{ ... }}`` that prints one is recorded with its template file and line. A template
that gives a fallback is not reported: ``|fallback(...)`` or ``|default(...)``, an ``{% if %}``
guard (a Blank is falsy) or ``or``. A filter that turns a Blank into empty text
(``|upper``) passes it on. Rendering itself is unchanged: a Blank renders as "".
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

#: The context mappings whose blank cells are tracked (they come from the campaign's CSVs).
DATA = frozenset({"prospect", "referrer", "referral"})
#: Filters that are a fallback: their result is never a Blank.
FALLBACKS = frozenset({"fallback", "default", "d"})


class Use(NamedTuple):
    """A blank variable printed: ``prospect.industry`` at ``cold_intro/body.txt`` line 3."""

    variable: str
    filename: str
    line: int | None


class Blank(str):
    """An empty cell, as the template sees it while tracking."""

    variable: str

    def __new__(cls, variable: str) -> Blank:
        blank = super().__new__(cls, "")
        blank.variable = variable
        return blank


_FOUND: contextvars.ContextVar[list[Use] | None] = contextvars.ContextVar(
    "refseq_blank_uses", default=None
)


@contextmanager
def tracking() -> Iterator[list[Use]]:
    """Inside the block, renders record each blank variable they print in the list yielded."""
    found: list[Use] = []
    token = _FOUND.set(found)
    try:
        yield found
    finally:
        _FOUND.reset(token)


def active() -> bool:
    return _FOUND.get() is not None


def mark(label: str, items: dict[Any, Any]) -> dict[Any, Any]:
    """``items`` of the context mapping ``label`` with blank text replaced by Blanks (only
    while tracking, and only for the campaign's data)."""
    if label not in DATA or not active():
        return items
    return {
        key: Blank(f"{label}.{key}") if isinstance(v, str) and not v.strip() else v
        for key, v in items.items()
    }


def carry(args: tuple[Any, ...], result: Any) -> Any:
    """A filter's empty result stays a Blank when it was given one."""
    for arg in args:
        if type(arg) is Blank:
            return Blank(arg.variable)
    return result


def printed(value: Blank) -> None:
    """Record that a template prints ``value`` (called from the renderer's ``finalize``), at
    the template line of the innermost compiled-template frame."""
    found = _FOUND.get()
    if found is None:
        return
    frame = sys._getframe(1)
    while frame is not None:
        info = frame.f_globals.get("debug_info")
        if isinstance(info, str) and "environment" in frame.f_globals:
            found.append(Use(value.variable, frame.f_code.co_filename, _line(info, frame.f_lineno)))
            return
        frame = frame.f_back  # type: ignore[assignment]
    found.append(Use(value.variable, "", None))


def _line(debug_info: str, code_line: int) -> int | None:
    """The template line of a line of its compiled code (Jinja's ``debug_info`` string)."""
    pairs = [tuple(map(int, pair.split("="))) for pair in debug_info.split("&") if pair]
    for template_line, line in reversed(pairs):
        if line <= code_line:
            return template_line
    return 1 if pairs else None
