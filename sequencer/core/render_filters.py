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
from collections.abc import Callable, Mapping
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS

from sequencer.core import blanks
from sequencer.core import render_limits as rl

# Each check takes the filter's own parameters (after the context Jinja may pass), by the same
# names, so it is called with exactly the filter's arguments (no signature binding per call).


def _indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    rl.check_width(width)
    size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if isinstance(s, str):
        rl.check_size_of(len(s) + size * (s.count("\n") + 1))


def _center(value: Any, width: Any = 80) -> None:
    rl.check_width(width)


def _batch(value: Any, linecount: Any, fill_with: Any = None) -> None:
    rl.check_width(linecount)


def _wordwrap(s: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None,
              break_on_hyphens: Any = True) -> None:  # fmt: skip
    if isinstance(s, str) and isinstance(wrapstring, str):
        rl.check_size_of(len(s) + (len(s) + 1) * len(wrapstring))


def _urlize(value: Any, trim_url_limit: Any = None, nofollow: Any = False, target: Any = None,
            rel: Any = None, extra_schemes: Any = None) -> None:  # fmt: skip
    if isinstance(value, str):
        extra = sum(len(a) for a in (target, rel) if isinstance(a, str)) + 64
        rl.check_size_of(3 * len(value) + (len(value.split()) + 1) * extra)


def _format(value: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str):
        rl.check_percent_format(value)


def _replace(s: Any, old: Any = None, new: Any = None, count: Any = None) -> None:
    rl.check_replace(s, old, new)


def _sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, (int, float)):
        raise SecurityError("sum adds numbers only (use join for text)")


_CHECKS: dict[str, Callable[..., None]] = {
    "indent": _indent,
    "center": _center,
    "batch": _batch,
    "wordwrap": _wordwrap,
    "urlize": _urlize,
    "format": _format,
    "replace": _replace,
    "sum": _sum,
}


def _join_args(
    offset: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``join``'s arguments with the items read into a list, after checking the size of the
    text it would build (items + separator x count)."""
    values = list(args)
    if len(values) > offset:
        items = values[offset] = rl.materialize(values[offset])
    else:
        items = kwargs["value"] = rl.materialize(kwargs["value"])
    separator = values[offset + 1] if len(values) > offset + 1 else kwargs.get("d", "")
    rl.check_join(items, separator)
    return tuple(values), kwargs


def guarded_filter(name: str, original: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """Filter ``name`` (Jinja's, or ``original``) with its arguments checked before it runs
    and its result measured after."""
    function: Callable[..., Any] = original if original is not None else FILTERS[name]
    offset = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
    check = _CHECKS.get(name)
    join = name == "join"
    fallback = name in blanks.FALLBACKS

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if len(args) > offset and type(args[offset]) is not str:
            rl.check_size(args[offset])  # e.g. nested list literals, before |tojson expands them
        if check is not None:
            check(*args[offset:], **kwargs)
        elif join:
            args, kwargs = _join_args(offset, args, kwargs)
        result = function(*args, **kwargs)
        if type(result) is str:
            if len(result) > rl.max_chars():
                raise rl.TooLong
        else:
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
