"""What a template may spend: a deadline and a size cap, checked while it renders.

A template must not be able to build a value that is huge before anything measures it: an
``indent(99999)`` of a long text in a loop, a ``join`` with a 99,999-character separator, a list
repeated until its ``tojson`` is gigabytes. So, besides the running count of what a file outputs
(``render.py``), every value a template makes is measured as it is made:

* every filter's result, every call's result and arguments, the result of ``*``, ``**``, ``%``
  and ``+``, and each text read from a namespace or mapping, by its *deep size* (characters of
  text plus items of containers, counted through nested containers, stopping as soon as the
  cap is passed), so ``['x' * 99999] * 99999`` is refused before its ``tojson`` exists;
* the text built by a macro, a ``{% set %}`` / ``{% filter %}`` block or ``caller()`` as it
  is collected (``CappedBuffer``) and joined (``capped_concat``);
* *before* the work, the arguments of everything that multiplies size in one step: widths and
  counts (``center``, ``indent``, ``ljust``, ``format`` and ``%`` widths, ``batch``), the separator
  of ``join`` and ``str.join``, the wrap string of ``wordwrap``, ``urlize``'s attributes,
  ``replace``, ``translate``, ``str * n``, ``list * n``, big ``int * int`` and ``**``, and ``sum``
  over lists (quadratic).

Every refusal is an exception raised inside the template, so the error names its line.
"""

from __future__ import annotations

import contextvars
import itertools
import re
import string
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import runtime
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.utils import pass_context

DEFAULT_MAX_CHARS = 100_000
#: A template file larger than this is refused before it is read or compiled.
MAX_TEMPLATE_BYTES = 1 << 20
MAX_INT_BITS = 10_000


class Timeout(Exception):
    """The render deadline passed (internal; becomes a RenderError)."""


class TooLong(Exception):
    """Output (or a value being built) exceeds the character cap (internal)."""


@dataclass(frozen=True)
class Limits:
    now: Callable[[], float]
    deadline: float
    time_limit: float
    max_chars: int

    def check_time(self) -> None:
        if self.now() > self.deadline:
            raise Timeout


LIMITS: contextvars.ContextVar[Limits | None] = contextvars.ContextVar(
    "refseq_render_limits", default=None
)


def tick() -> None:
    limits = LIMITS.get()
    if limits is not None:
        limits.check_time()


def max_chars() -> int:
    limits = LIMITS.get()
    return limits.max_chars if limits is not None else DEFAULT_MAX_CHARS


# --------------------------------------------------------------------------- measuring

_CONTAINERS = (list, tuple, set, frozenset)


def deep_size(value: object, budget: int) -> int:
    """Characters of text plus items of containers in ``value``, through nested containers (a
    shared item counts each time it appears: that is what serialising it costs). Stops as soon
    as the count passes ``budget``, so measuring something huge is cheap."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, _CONTAINERS):
            total += len(item)
            if total <= budget:
                stack.extend(item)
        elif isinstance(item, Mapping):
            total += len(item)
            if total <= budget:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, int):
            total += item.bit_length() // 64
        else:
            total += 1
        if total > budget:
            break
    return total


def check_size(value: object) -> None:
    """Refuse a value whose deep size is over the cap (fast for the usual short text)."""
    if type(value) is str:
        if len(value) > max_chars():
            raise TooLong
    elif value is not None and not isinstance(value, (bool, float)):
        cap = max_chars()
        if deep_size(value, cap) > cap:
            raise TooLong


def check_size_of(size: int) -> None:
    if size > max_chars():
        raise TooLong


def accessed(value: object) -> None:
    """After each attribute/item access: the deadline, then the size of text read (this stops
    text built up in a namespace, ``ns.s = ns.s ~ ns.s``, before it gets huge). It runs for
    every ``{{ a.b }}``, so it looks the limits up once."""
    limits = LIMITS.get()
    if limits is None:
        cap = DEFAULT_MAX_CHARS
    else:
        if limits.now() > limits.deadline:
            raise Timeout
        cap = limits.max_chars
    if isinstance(value, str) and len(value) > cap:
        raise TooLong


def capped_concat(parts: Iterable[str]) -> str:
    """``"".join`` for the text a macro, a block or ``caller()`` builds, refused past the cap
    before the join allocates it (the parts may be many references to one long text)."""
    pieces = parts if isinstance(parts, list) else list(parts)
    cap = max_chars()
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > cap:
            raise TooLong
    return "".join(pieces)


def _measured(seq: Iterable[Any]) -> list[Any]:
    """The items of a ``~`` concatenation, each refused when its deep size is over the cap
    (before ``str()`` turns a nested list into text), and their total checked too."""
    items = list(seq)
    cap = max_chars()
    total = 0
    for item in items:
        total += len(item) if type(item) is str else deep_size(item, cap)
        if total > cap:
            raise TooLong
    return items


def checked_str_join(seq: Iterable[Any]) -> str:
    """Jinja's ``str_join`` (``a ~ b``), measured first."""
    return runtime.str_join(_measured(seq))


def checked_markup_join(seq: Iterable[Any]) -> str:
    """Jinja's ``markup_join`` (``a ~ b`` with autoescape), measured first."""
    return runtime.markup_join(_measured(seq))


class CappedBuffer(list[str]):
    """The list a macro, a block or ``caller()`` collects its text in (see ``render.py``'s code
    generator): refused as soon as its text passes the cap, not after a loop has filled it."""

    __slots__ = ("cap", "size")

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self.cap = max_chars()

    def append(self, item: str) -> None:
        self.size += len(item)
        if self.size > self.cap:
            raise TooLong
        super().append(item)

    def extend(self, items: Iterable[str]) -> None:
        pieces = tuple(items)
        self.size += sum(map(len, pieces))
        if self.size > self.cap:
            raise TooLong
        super().extend(pieces)


def check_width(value: object) -> None:
    if isinstance(value, str):
        value = len(value)
    if isinstance(value, int) and value > max_chars():
        raise SecurityError(f"a width or count of {value} is too large")


def check_power(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise SecurityError("the result of ** would be too large")


# --------------------------------------------------------------------------- formats

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_percent_format(fmt: str) -> None:
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for number in (width, precision):
            if number == "*":
                raise SecurityError("'*' widths are not allowed in % formatting")
            if number:
                check_width(int(number))


def check_brace_format(fmt: str) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format itself reports the malformed string
    for _literal, _field, spec, _conversion in fields:
        if not spec:
            continue
        if "{" in spec:
            raise SecurityError("nested format fields are not allowed")
        for number in re.findall(r"\d+", spec):
            check_width(int(number))


def check_replace(value: object, old: object, new: object) -> None:
    if isinstance(value, str) and isinstance(old, str) and isinstance(new, str):
        count = len(value) + 1 if not old else value.count(old)
        check_size_of(len(value) + count * (len(new) - len(old)))


def materialize(items: Any) -> list[Any]:
    """An iterable as a list, refused when it has more items than the cap."""
    if isinstance(items, list):
        return items
    cap = max_chars()
    out = list(itertools.islice(items, cap + 1))
    if len(out) > cap:
        raise TooLong
    return out


def check_join(items: list[Any], separator: object) -> None:
    cap = max_chars()
    sep = len(separator) if isinstance(separator, str) else 1
    check_size_of(deep_size(items, cap) + sep * max(len(items) - 1, 0))


# --------------------------------------------------------------------------- calls and operators

_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def checked_call_args(
    obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[Any, ...]:
    """Check a call's arguments before it runs; returns the arguments to call with (an
    iterable given to ``str.join`` is read into a list, to be measured)."""
    for arg in itertools.chain(args, kwargs.values()):
        check_size(arg)
    if not isinstance(obj, types.BuiltinMethodType) or not isinstance(obj.__self__, str):
        return args
    text: str = obj.__self__
    name = obj.__name__
    if name in _WIDTH_METHODS:
        for arg in (*args, *kwargs.values()):
            if name == "expandtabs" and isinstance(arg, int):
                arg = arg * text.count("\t")
            check_width(arg)
    elif name == "replace" and len(args) >= 2:
        check_replace(text, args[0], args[1])
    elif name == "join" and args:
        items = materialize(args[0])
        check_join(items, text)
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((deep_size(v, max_chars()) for v in args[0].values()), default=1)
        check_size_of(len(text) * max(longest, 1))
    return args


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*``, ``**`` and ``%`` that would build something huge before it exists."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                check_size_of(len(seq) * count)
        ints = isinstance(left, int) and isinstance(right, int)
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("the result of * would be too large")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            check_power(abs(left).bit_length() * right)
    elif operator == "%" and isinstance(left, str):
        check_percent_format(left)


# --------------------------------------------------------------------------- loops


@pass_context
def deadline_iter(context: Context, iterable: Any) -> Any:
    """Wraps every ``{% for %}`` iterable so that loops check the deadline on each item."""
    limits = LIMITS.get()
    if limits is None:
        return iterable
    return _ticking(iter(iterable), limits)


def _ticking(iterator: Iterator[Any], limits: Limits) -> Iterator[Any]:
    for item in iterator:
        limits.check_time()
        yield item
