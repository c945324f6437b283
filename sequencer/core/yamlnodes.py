"""Location-aware reading of a ruamel.yaml round-trip tree.

``load_yaml`` turns text into a ``CommentedMap``/``CommentedSeq`` tree (or reports why it
cannot). ``MapNode`` wraps one mapping together with its dotted path and position, and reads
typed values from it through small *converters*: functions ``Field -> value | None`` that
report a ``Problem`` and return ``None`` when the value is wrong. Readers always return a
value of the right type (the default or a placeholder after an error), so a caller can build
its result unconditionally and throw it away if any error was reported.

Positions are 1-based; ruamel's are 0-based.
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from sequencer.errors import Problem

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_KEY = "<<"
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@dataclass(frozen=True)
class Pos:
    line: int | None = None
    col: int | None = None

    @classmethod
    def of(cls, lc: tuple[int, int] | None) -> Pos:
        return cls() if lc is None else cls(lc[0] + 1, lc[1] + 1)


@dataclass
class Report:
    """Collects errors and warnings for one source file."""

    source: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def error(self, path: str, pos: Pos, message: str, hint: str = "") -> None:
        self.errors.append(self._make(path, pos, message, hint))

    def warn(self, path: str, pos: Pos, message: str, hint: str = "") -> None:
        self.warnings.append(self._make(path, pos, message, hint))

    def _make(self, path: str, pos: Pos, message: str, hint: str) -> Problem:
        return Problem(self.source, message, path, pos.line, pos.col, hint=hint)


@dataclass(frozen=True)
class Field:
    """One YAML value with where it is."""

    value: Any
    path: str
    pos: Pos
    report: Report

    def error(self, message: str, hint: str = "") -> None:
        self.report.error(self.path, self.pos, message, hint)


Conv = Callable[[Field], T | None]


def join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def show(value: object) -> str:
    """A short, quoted rendering of a YAML value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        width = getattr(value, "_width", None)  # ruamel keeps 01234's leading zero this way
        return str(int(value)).zfill(width) if isinstance(width, int) else str(int(value))
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(str(text))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, CommentedMap | dict):
        return "a mapping"
    if isinstance(value, CommentedSeq | list):
        return "a list"
    return f"a {type(value).__name__} value"


def suggest(word: object, options: Iterable[str], cutoff: float = 0.6) -> str:
    """``did you mean 'x'?`` for the closest option, or ``""``."""
    if not isinstance(word, str):
        return ""
    choices = list(options)
    folded = {c.casefold(): c for c in choices}
    if word.casefold() in folded:
        return f"did you mean {folded[word.casefold()]!r}?"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    return f"did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------- loading


def load_yaml(text: str, report: Report) -> tuple[bool, Any]:
    """Parse ``text`` (YAML 1.2, round-trip). Returns ``(ok, data)``; problems go to ``report``.

    Duplicate keys are all reported (with their paths) but do not stop validation.
    """
    if not _flow_depth_ok(text, report):
        return False, None
    try:
        node = YAML(typ="rt").compose(text)
    except MarkedYAMLError as exc:
        _syntax_problem(exc, report)
        return False, None
    except RecursionError:
        report.error("", Pos(), "invalid YAML: nested too deeply", "a campaign needs a few levels")
        return False, None
    except ReaderError as exc:  # a control character such as NUL: say where it is
        at = exc.position if isinstance(exc.position, int) else 0
        pos = Pos(text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at))
        report.error("", pos, f"invalid YAML: {exc.reason} (U+{exc.character:04X})")
        return False, None
    except Exception as exc:  # ruamel raises assorted errors for odd input
        report.error("", Pos(), f"invalid YAML: {exc}")
        return False, None
    if not _tags_and_aliases_ok(node, report):
        return False, None
    bad_dates = _check_nodes(node, "", report)
    loader = YAML(typ="rt")
    loader.allow_duplicate_keys = True
    try:
        return True, _plain_strings(loader.load(text))
    except MarkedYAMLError as exc:
        _syntax_problem(exc, report)
    except Exception as exc:
        if not bad_dates:
            report.error("", Pos(), f"invalid YAML: {exc}")
    return False, None


#: Deeper ``[``/``{`` nesting than this is refused before parsing: ruamel's scanner takes time
#: quadratic in the depth (a 10 kB line of brackets takes seconds).
MAX_FLOW_DEPTH = 64
#: Values the document may stand for once every ``*alias`` is expanded ("billion laughs").
MAX_EXPANDED_NODES = 100_000
#: Explicit tags allowed (``!!str 01234`` is a way of quoting); ``!!python/object`` and any
#: application tag are refused.
SAFE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
)


def _flow_depth_ok(text: str, report: Report) -> bool:
    """Refuse ``[[[[...`` nesting deeper than :data:`MAX_FLOW_DEPTH` (brackets in quoted text
    count too: no real campaign comes near the limit)."""
    depth = line = 0
    start = -1
    for match in re.finditer(r"[\[\]{}\n]", text):
        char = match.group()
        if char == "\n":
            line += 1
            start = match.start()
        elif char in "[{":
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                report.error(
                    "",
                    Pos(line + 1, match.start() - start),
                    f"invalid YAML: brackets nested more than {MAX_FLOW_DEPTH} levels deep",
                    "a campaign needs a few levels; is this the right file?",
                )
                return False
        elif depth:
            depth -= 1
    return True


def _tags_and_aliases_ok(root: Any, report: Report) -> bool:
    """Refuse explicit tags other than the plain YAML ones, and aliases that expand to more
    than :data:`MAX_EXPANDED_NODES` values (each node is visited once: shared nodes are
    counted by arithmetic, never expanded)."""
    sizes: dict[int, int] = {}
    order: list[Any] = []
    stack: list[Any] = [root]
    ok = True
    while stack:  # iterative post-order over the node graph (aliases are shared nodes)
        node = stack.pop()
        if node is None or id(node) in sizes:
            continue
        sizes[id(node)] = 0
        order.append(node)
        tag = getattr(node, "tag", None)
        explicit = getattr(getattr(node, "ctag", None), "handle", None) is not None
        if explicit and isinstance(tag, str) and tag not in SAFE_TAGS:
            mark = node.start_mark
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            report.error(
                "",
                Pos(mark.line + 1, mark.column + 1),
                f"the YAML tag {shown!r} is not allowed",
                "a campaign file holds plain values only; remove the tag",
            )
            ok = False
        if node.id == "mapping":
            stack.extend(part for pair in node.value for part in pair)
        elif node.id == "sequence":
            stack.extend(node.value)
    too_big: Any = None  # the first (smallest) node that stands for too many values
    for node in reversed(order):  # children before parents
        if node.id == "mapping":
            children = [part for pair in node.value for part in pair]
        elif node.id == "sequence":
            children = list(node.value)
        else:
            children = []
        sizes[id(node)] = min(1 + sum(sizes.get(id(c), 0) for c in children), 1 << 40)
        if too_big is None and sizes[id(node)] > MAX_EXPANDED_NODES:
            too_big = node
    if ok and too_big is not None:
        mark = too_big.start_mark
        report.error(
            "",
            Pos(mark.line + 1, mark.column + 1),
            f"invalid YAML: the aliases (*name) stand for over {MAX_EXPANDED_NODES:,} values",
            "a campaign file does not need nested &anchors and *aliases; write the values out",
        )
        ok = False
    return ok


def _plain_strings(data: Any) -> Any:
    """``!!str 01234`` is loaded as a ``TaggedScalar``: make it the string it says it is."""
    if isinstance(data, TaggedScalar):
        return str(data.value) if data.tag.value == _STR_TAG else data
    seen: set[int] = set()
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        slots: Iterable[Any] = ()
        if isinstance(node, CommentedMap):
            slots = list(node.keys())
        elif isinstance(node, CommentedSeq):
            slots = range(len(node))
        for slot in slots:
            value = node[slot]
            if isinstance(value, TaggedScalar) and value.tag.value == _STR_TAG:
                node[slot] = str(value.value)
            elif isinstance(value, CommentedMap | CommentedSeq):
                stack.append(value)
    return data


def _syntax_problem(exc: MarkedYAMLError, report: Report) -> None:
    mark = exc.problem_mark or exc.context_mark
    pos = Pos(mark.line + 1, mark.column + 1) if mark is not None else Pos()
    problem = exc.problem or exc.context or "cannot be parsed"
    hint = ""
    if exc.context and problem.startswith("but "):  # "expected X" + "but found Y"
        problem = f"{exc.context}, {problem}"
    elif "'\\t'" in problem:
        hint = "indent with spaces, not tabs"
    elif exc.context and exc.context_mark is not None and exc.problem:
        cm = exc.context_mark
        hint = f"{exc.context} that starts at line {cm.line + 1}, column {cm.column + 1}"
    report.error("", pos, f"invalid YAML: {problem}", hint)


def _check_nodes(root: Any, root_path: str, report: Report) -> int:
    """Report duplicate keys and impossible dates in the composed node tree."""
    bad_dates = 0
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(root, root_path)]
    while stack:
        node, path = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.id == "mapping":
            first_line: dict[str, int] = {}
            for key, value in node.value:
                name = key.value if key.id == "scalar" else None
                if isinstance(name, str) and name != _MERGE_KEY:
                    if name in first_line:
                        mark = key.start_mark
                        report.error(
                            join(path, name),
                            Pos(mark.line + 1, mark.column + 1),
                            f"duplicate key {name!r}",
                            f"{name!r} is already set on line {first_line[name]}",
                        )
                    else:
                        first_line[name] = key.start_mark.line + 1
                stack.append((value, join(path, name if name is not None else "?")))
        elif node.id == "sequence":
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
        elif node.tag == _TIMESTAMP_TAG and not _is_real_timestamp(node.value):
            mark = node.start_mark
            report.error(path, Pos(mark.line + 1, mark.column + 1), f"no such date: {node.value}")
            bad_dates += 1
    return bad_dates


def _is_real_timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text.strip().replace(" ", "T", 1).rstrip("Zz"))
    except ValueError:
        # Forms ruamel accepts that fromisoformat does not are left to ruamel.
        m = re.match(r"(\d{4})-(\d{1,2})-(\d{1,2})", text)
        if m is None:
            return True
        try:
            date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return False
    return True


def walk_keys(data: Any, path: str = "") -> Iterable[tuple[CommentedMap, Any, str]]:
    """Every ``(mapping, key, path of key)`` in the tree; aliases are visited once."""
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(data, path)]
    while stack:
        node, here = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, CommentedMap):
            for key, value in node.items():
                yield node, key, join(here, key)
                stack.append((value, join(here, key)))
        elif isinstance(node, CommentedSeq):
            stack.extend((v, f"{here}[{i}]") for i, v in enumerate(node))


def key_pos(data: Any, key: object) -> Pos:
    try:
        return Pos.of(data.lc.key(key))
    except (AttributeError, KeyError, TypeError):
        return node_pos(data)


def node_pos(data: Any) -> Pos:
    lc = getattr(data, "lc", None)
    if lc is None or lc.line is None:
        return Pos()
    return Pos(lc.line + 1, lc.col + 1)


# --------------------------------------------------------------------------- mappings


class MapNode:
    """One YAML mapping. ``pos`` is where it is named (its key in the parent).

    A *quiet* node stands in for a section that is missing or not a mapping (already reported):
    reading from it yields defaults without reporting missing keys again.
    """

    def __init__(self, data: Any, path: str, pos: Pos, report: Report, quiet: bool = False) -> None:
        self.data: Any = data if isinstance(data, CommentedMap) else CommentedMap()
        self.path = path
        self.pos = pos
        self.report = report
        self.quiet = quiet

    def has(self, key: str) -> bool:
        """True if ``key`` is present with a non-null value."""
        return self.data.get(key) is not None

    def key_pos(self, key: object) -> Pos:
        return key_pos(self.data, key) if key in self.data else self.pos

    def value_pos(self, key: str) -> Pos:
        if self.data.get(key) is None:
            return self.key_pos(key)
        try:
            return Pos.of(self.data.lc.value(key))
        except (AttributeError, KeyError, TypeError):
            return self.key_pos(key)

    def field(self, key: str, *, required: bool = False) -> Field | None:
        """The value at ``key``, or ``None`` if absent or null (reported if ``required``)."""
        if not self.has(key):
            if required and not self.quiet and key in self.data:
                path = join(self.path, key)
                self.report.error(path, self.key_pos(key), "needs a value")
            elif required and not self.quiet:
                self.missing(key)
            return None
        return Field(self.data[key], join(self.path, key), self.value_pos(key), self.report)

    def missing(self, key: str, hint: str = "") -> None:
        self.report.error(join(self.path, key), self.pos, f"missing required key {key!r}", hint)

    def check_keys(self, known: Collection[str], skip: Collection[str] = ()) -> None:
        """Report every key not in ``known`` (keys in ``skip`` are reported elsewhere)."""
        for key in self.data:
            if key in known or (isinstance(key, str) and key.lower() in skip):
                continue
            hint = suggest(key, known) or "known keys: " + ", ".join(known)
            self.report.error(
                join(self.path, key), self.key_pos(key), f"unknown key {show(key)}", hint
            )

    def get(self, key: str, conv: Conv[T], default: T, *, required: bool = False) -> T:
        f = self.field(key, required=required)
        value = conv(f) if f is not None else None
        return default if value is None else value

    def opt(self, key: str, conv: Conv[T]) -> T | None:
        f = self.field(key)
        return conv(f) if f is not None else None

    def child(self, key: str, *, required: bool = False) -> MapNode:
        """The mapping at ``key``; a quiet empty node if absent or not a mapping."""
        f = self.field(key, required=required)
        if f is None:
            return MapNode(None, join(self.path, key), self.key_pos(key), self.report, True)
        node = as_map(f)
        if node is None:
            return MapNode(None, f.path, f.pos, self.report, True)
        return MapNode(node.data, f.path, self.key_pos(key), self.report)

    def items(self, key: str, *, required: bool = False, nonempty: bool = False) -> list[Field]:
        """The list at ``key`` as one ``Field`` per item; ``[]`` if absent or invalid."""
        f = self.field(key, required=required)
        if f is None:
            return []
        if not isinstance(f.value, CommentedSeq):
            f.error(f"expected a list, got {show(f.value)}")
            return []
        if nonempty and not f.value:
            f.error("expected at least one item, got an empty list")
        return [
            Field(v, f"{f.path}[{i}]", _item_pos(f.value, i), self.report)
            for i, v in enumerate(f.value)
        ]


def is_mapping(value: object) -> bool:
    return isinstance(value, CommentedMap)


def is_collection(value: object) -> bool:
    return isinstance(value, CommentedMap | CommentedSeq)


def _item_pos(seq: Any, index: int) -> Pos:
    try:
        return Pos.of(seq.lc.item(index))
    except (AttributeError, KeyError, IndexError, TypeError):
        return node_pos(seq)


# --------------------------------------------------------------------------- converters


def as_map(f: Field) -> MapNode | None:
    if not isinstance(f.value, CommentedMap):
        f.error(f"expected a mapping (key: value lines), got {show(f.value)}")
        return None
    return MapNode(f.value, f.path, f.pos, f.report)


def text(f: Field) -> str | None:
    """Non-empty text; surrounding spaces are dropped."""
    if not isinstance(f.value, str):
        hint = "put it in quotes" if _is_scalar(f.value) else ""
        f.error(f"expected text, got {show(f.value)}", hint)
        return None
    if not f.value.strip():
        f.error("must not be empty")
        return None
    return str(f.value).strip()


def any_text(f: Field) -> str | None:
    """Text that may be empty."""
    if not isinstance(f.value, str):
        f.error(f"expected text, got {show(f.value)}", "put it in quotes")
        return None
    return str(f.value).strip()


def ints(lo: int, hi: int) -> Conv[int]:
    def conv(f: Field) -> int | None:
        v = f.value
        if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi:
            return int(v)
        hint = "write the number without quotes" if isinstance(v, str) and v.isdigit() else ""
        f.error(f"expected an integer from {lo} to {hi}, got {show(v)}", hint)
        return None

    return conv


def boolean(f: Field) -> bool | None:
    if isinstance(f.value, bool):
        return f.value
    f.error(f"expected a boolean, got {show(f.value)}", "use true or false")
    return None


def choice(enum: type[E]) -> Conv[E]:
    options = [e.value for e in enum]

    def conv(f: Field) -> E | None:
        if isinstance(f.value, str):
            for member in enum:
                if f.value.strip().casefold() == member.value:
                    return member
        hint = suggest(f.value, options)
        f.error(f"expected one of {', '.join(options)}, got {show(f.value)}", hint)
        return None

    return conv


def iso_date(f: Field) -> date | None:
    v = f.value
    if isinstance(v, date) and not isinstance(v, datetime):
        return v
    if isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v.strip()):
        try:
            return date.fromisoformat(v.strip())
        except ValueError:
            pass
    f.error(f"expected a date as YYYY-MM-DD, got {show(v)}")
    return None


def hhmm(f: Field) -> time | None:
    v = f.value
    if not isinstance(v, str):
        f.error(f'expected a time as "HH:MM" in quotes, got {show(v)}', 'e.g. "09:30"')
        return None
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", v.strip())
    if m is None or int(m[1]) > 23 or int(m[2]) > 59:
        f.error(f'expected a 24-hour time as "HH:MM", got {show(v)}', 'e.g. "09:30" or "17:00"')
        return None
    return time(int(m[1]), int(m[2]))


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(lo: int, hi: int) -> Conv[int]:
    """Seconds, from ``"90s"``, ``"2m"``, ``"1h"`` or a bare integer of seconds."""

    def conv(f: Field) -> int | None:
        v = f.value
        seconds: int | None = None
        if isinstance(v, int) and not isinstance(v, bool):
            seconds = int(v)
        elif isinstance(v, str):
            m = re.fullmatch(r"(\d+)\s*([smh])", v.strip().lower())
            if m is not None:
                seconds = int(m[1]) * _DURATION_UNITS[m[2]]
        if seconds is None:
            f.error(
                f"expected a duration such as 90s, 2m or 1h, got {show(v)}",
                "a bare number counts seconds",
            )
            return None
        if not lo <= seconds <= hi:
            f.error(f"expected a duration from {lo} to {hi} seconds, got {show(v)}")
            return None
        return seconds

    return conv


def timezone(f: Field, hint: str = "use an IANA name such as America/New_York") -> str | None:
    v = f.value
    if not isinstance(v, str):
        f.error(f"expected a time zone name, got {show(v)}", hint)
        return None
    name = v.strip()
    if not is_zone(name):
        f.error(f"unknown time zone {show(v)}", suggest(name, _all_zones(), 0.8) or hint)
        return None
    return name


def is_zone(name: str) -> bool:
    if not name or name in _NOT_ZONES or name.startswith(("/", ".")) or "\\" in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


@functools.cache
def _all_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones() - _NOT_ZONES))


def _is_scalar(value: object) -> bool:
    return isinstance(value, int | float | date)
