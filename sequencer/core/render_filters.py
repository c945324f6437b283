"""Jinja's filters with their arguments checked before they run and their results measured.

See :mod:`sequencer.core.render_limits`: each filter that can multiply size in one step has a
check of its arguments (``indent`` width x lines, ``join`` separator x items, ``wordwrap``'s
wrap string, ``urlize``'s attributes, ``format`` widths, ``replace``, ``sum`` of lists), and
every filter's result is measured by its deep size. While blank CSV cells are tracked
(:mod:`sequencer.core.blanks`), a filter that turns a blank into empty text passes it on,
except a fallback (``fallback``, ``default``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS

from sequencer.core import blanks
from sequencer.core import render_limits as rl


def _est_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    rl.check_width(width)
    size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if isinstance(s, str):
        rl.check_size_of(len(s) + size * (s.count("\n") + 1))


def _est_wordwrap(
    s: Any, width: Any = 79, blw: Any = True, wrapstring: Any = None, *_: Any
) -> None:
    if isinstance(s, str) and isinstance(wrapstring, str):
        rl.check_size_of(len(s) + (len(s) + 1) * len(wrapstring))


def _est_urlize(
    value: Any,
    trim: Any = None,
    nofollow: Any = False,
    target: Any = None,
    rel: Any = None,
    *_: Any,
) -> None:
    if isinstance(value, str):
        extra = sum(len(a) for a in (target, rel) if isinstance(a, str)) + 64
        rl.check_size_of(3 * len(value) + (len(value.split()) + 1) * extra)


def _est_format(value: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str):
        rl.check_percent_format(value)


def _est_replace(s: Any, old: Any = None, new: Any = None, *_: Any) -> None:
    rl.check_replace(s, old, new)


def _est_sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, (int, float)):
        raise SecurityError("sum adds numbers only (use join for text)")


#: Filter -> (a check of its arguments before it runs, which argument is a width or count).
_ESTIMATES: dict[str, tuple[Callable[..., None] | None, str | None]] = {
    "indent": (_est_indent, None),
    "center": (None, "width"),
    "batch": (None, "linecount"),
    "wordwrap": (_est_wordwrap, None),
    "urlize": (_est_urlize, None),
    "format": (_est_format, None),
    "replace": (_est_replace, None),
    "sum": (_est_sum, None),
    "truncate": (None, None),
}


def guarded_filter(name: str, original: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """Filter ``name`` (Jinja's, or ``original``) with its arguments checked before it runs
    and its result measured after."""
    function: Callable[..., Any] = original if original is not None else FILTERS[name]
    offset = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
    estimate, width_name = _ESTIMATES.get(name, (None, None))
    signature = inspect.signature(function) if (estimate or width_name or name == "join") else None
    fallback = name in blanks.FALLBACKS

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if signature is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = list(bound.arguments.values())[offset:]
            if width_name is not None and width_name in bound.arguments:
                rl.check_width(bound.arguments[width_name])
            if name == "join":
                items = rl.materialize(values[0])
                rl.check_join(items, bound.arguments.get("d", ""))
                first = list(bound.arguments)[offset]
                bound.arguments[first] = items
                args, kwargs = bound.args, bound.kwargs
            if estimate is not None:
                estimate(*values)
        result = function(*args, **kwargs)
        rl.check_size(result)
        if result == "" and blanks.active():  # a blank CSV cell stays one (see blanks.py)
            return result.__str__() if fallback else blanks.carry(args, result)
        return result

    return guarded


def guarded_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Every filter of an environment, guarded (those already guarded are left as they are)."""
    return {
        name: function if getattr(function, "_refseq_guarded", False) else _mark(name, function)
        for name, function in filters.items()
    }


def _mark(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    guarded = guarded_filter(name, function)
    guarded._refseq_guarded = True  # type: ignore[attr-defined]
    return guarded
