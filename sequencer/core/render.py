"""Render one step's email from templates written by sales ops, safely.

A template is a folder ``<dir>/<name>/`` holding ``subject.txt``, ``body.txt`` and, optionally,
``body.html``. Campaign YAML names a template; it never gives a path. Several template dirs may
be searched (a campaign's override dir first, then the shipped defaults): the first dir that has
the folder wins, and the whole template comes from that folder (files are never mixed).

Rendering runs in Jinja2's immutable sandbox with ``StrictUndefined``, so a typo in a field name
is an error rather than an empty gap in an email. The text parts are not escaped; ``body.html``
is autoescaped. Whitespace works line by line: a line holding only ``{% ... %}`` tags leaves no
trace (``trim_blocks`` + ``lstrip_blocks``), while a tag that ends a line of text keeps that
line's break (it gets an implicit ``+%}``). The text body then has trailing spaces removed and
runs of blank lines collapsed to one.

Limits: a deadline (checked on every attribute/item access, call and loop iteration) and a cap
on the characters each part may produce, and on every value a template builds on the way
(:mod:`sequencer.core.render_limits`). Every failure is a :class:`RenderError` naming the
template file (``warm_intro/body.txt``) and, where known, the line in it.

Filters on top of Jinja's: ``fallback``, ``first_name``, ``possessive``, ``join_names`` and
``capfirst``.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
    select_autoescape,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import Extension
from jinja2.loaders import split_template_path
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sequencer.core import blanks
from sequencer.core import render_limits as rl
from sequencer.core.render_filters import guarded_filters
from sequencer.errors import RenderError
from sequencer.resources import email_templates_dir

__all__ = [
    "HINT_KEY",
    "SHIPPED_TEMPLATES",
    "RenderedEmail",
    "Renderer",
    "available_templates",
    "capfirst",
    "check_template_name",
    "fallback",
    "first_name",
    "join_names",
    "possessive",
    "render_step",
    "template_dirs",
]

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SUBJECT_FILE = "subject.txt"
TEXT_FILE = "body.txt"
HTML_FILE = "body.html"

#: The default templates that ship with refseq (found by sequencer/resources.py).
SHIPPED_TEMPLATES = email_templates_dir()

#: A context mapping may carry this key; its value is appended to "has no attribute" errors for
#: that mapping (e.g. why the referrer's name is missing). The key itself is not rendered.
HINT_KEY = "__hint__"

_TICK_FILTER = "_refseq_deadline_iter"


@dataclass(frozen=True)
class RenderedEmail:
    template: str
    subject: str
    text: str
    html: str | None


# --------------------------------------------------------------------------- names and folders


def check_template_name(name: object) -> None:
    """Raise :class:`RenderError` unless ``name`` is a plain template name (not a path)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise RenderError(
            str(name),
            None,
            "invalid template name: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit",
        )


def template_dirs(shipped: Path, override: Path | None) -> tuple[Path, ...]:
    """The dirs to search, the campaign's override dir first."""
    if override is None or override == shipped:
        return (shipped,)
    return (override, shipped)


def _find_folder(dirs: Iterable[Path], name: str) -> Path | None:
    for directory in dirs:
        folder = directory / name
        if folder.is_dir():
            return folder
    return None


def available_templates(dirs: Iterable[Path]) -> set[str]:
    """Names of the templates that can be rendered from ``dirs`` (first folder wins)."""
    seen: set[str] = set()
    found: set[str] = set()
    for directory in dirs:
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name in seen or not NAME_PATTERN.fullmatch(name) or not entry.is_dir():
                continue
            seen.add(name)
            if (entry / SUBJECT_FILE).is_file() and (entry / TEXT_FILE).is_file():
                found.add(name)
    return found


class _FolderLoader(BaseLoader):
    """Loads ``<name>/<file>`` from the first dir that has the folder ``<name>``."""

    def __init__(self, dirs: tuple[Path, ...]) -> None:
        self.dirs = dirs

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        pieces = split_template_path(template)  # rejects "..", absolute paths
        if len(pieces) < 2 or not NAME_PATTERN.fullmatch(pieces[0]):
            raise TemplateNotFound(template)
        folder = _find_folder(self.dirs, pieces[0])
        if folder is None:
            raise TemplateNotFound(template)
        path = folder.joinpath(*pieces[1:])
        try:
            stat = path.stat()
            if stat.st_size > rl.MAX_TEMPLATE_BYTES:
                raise TemplateError(
                    f"the file is {stat.st_size:,} bytes; a template file may have at most "
                    f"{rl.MAX_TEMPLATE_BYTES:,}"
                )
            mtime = stat.st_mtime_ns
            with path.open("rb") as fh:
                raw = fh.read(rl.MAX_TEMPLATE_BYTES + 1)  # it may have grown since
        except OSError:
            raise TemplateNotFound(template) from None
        if len(raw) > rl.MAX_TEMPLATE_BYTES:
            raise TemplateError(f"the file has more than {rl.MAX_TEMPLATE_BYTES:,} bytes")
        source = raw.decode("utf-8-sig")  # a UnicodeDecodeError is reported by render_step

        def uptodate() -> bool:
            try:
                same_folder = _find_folder(self.dirs, pieces[0]) == folder
                return same_folder and path.stat().st_mtime_ns == mtime
            except OSError:
                return False

        return source, str(path), uptodate

    def list_templates(self) -> list[str]:
        names: list[str] = []
        for name in sorted(available_templates(self.dirs)):
            folder = _find_folder(self.dirs, name)
            if folder is not None:
                names += [f"{name}/{p.name}" for p in sorted(folder.iterdir()) if p.is_file()]
        return names


# --------------------------------------------------------------------------- context wrapping


class _Record(dict[Any, Any]):
    """A context mapping that knows its path (``prospect``) for clear "undefined" messages.

    Its keys win over dict methods in attribute syntax, so a CSV column called ``items`` or
    ``values`` still works as ``prospect.items``.
    """

    __slots__ = ("_rs_hint", "_rs_label")

    def __init__(self, label: str, hint: str, items: dict[Any, Any]) -> None:
        super().__init__(items)
        self._rs_label = label
        self._rs_hint = hint


#: Values ``_wrap`` returns as they are, without any further check (by exact type).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _wrap(value: Any, label: str) -> Any:
    if type(value) in _PLAIN or isinstance(value, _Record):
        return value
    if isinstance(value, Mapping):
        hint = value.get(HINT_KEY) or ""
        items = {
            k: v if type(v) in _PLAIN else _wrap(v, f"{label}.{k}")
            for k, v in value.items()
            if k != HINT_KEY
        }
        return _Record(label, str(hint), blanks.mark(label, items))
    if isinstance(value, list):
        return [v if type(v) in _PLAIN else _wrap(v, f"{label}[{i}]") for i, v in enumerate(value)]
    if type(value) is tuple:
        return tuple(
            v if type(v) in _PLAIN else _wrap(v, f"{label}[{i}]") for i, v in enumerate(value)
        )
    return value


class _Undefined(StrictUndefined):
    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if not self._undefined_hint and isinstance(obj, _Record):
            message = f"{obj._rs_label!r} has no attribute {self._undefined_name!r}"
            return f"{message} ({obj._rs_hint})" if obj._rs_hint else message
        return super()._undefined_message


# --------------------------------------------------------------------------- filters


def fallback(value: Any, default: Any = "") -> Any:
    """``default`` when ``value`` is None, empty or only whitespace; otherwise ``value``.

    A missing field is still an error (StrictUndefined): use ``fallback`` for blank CSV cells.
    """
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises here
        return default
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return value


_HONORIFICS = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "lord",
        "lady", "rev", "fr", "hon", "capt", "col", "gen", "herr", "frau", "mme", "mlle",
    }
)  # fmt: skip
_SUFFIXES = frozenset(
    {
        "jr", "sr", "ii", "iii", "iv", "phd", "md", "mba", "cpa", "esq", "dds", "jd", "pe",
        "cfa", "msc", "bsc", "ma", "ba", "cissp",
    }
)  # fmt: skip


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return " ".join(str(value).split())  # StrictUndefined raises in str()


def first_name(full_name: Any) -> str:
    """First name for a greeting: "Dr. Jane Smith" -> "Jane", "Smith, Jane" -> "Jane".

    A title plus a single name is kept whole ("Dr. Smith" -> "Dr. Smith"); empty -> "".
    """
    text = _as_text(full_name)
    if "," in text:
        head, _, tail = text.partition(",")
        tail_words = [
            w for w in tail.replace(",", " ").split() if w.strip(".").casefold() not in _SUFFIXES
        ]
        text = " ".join(tail_words) if tail_words and len(head.split()) == 1 else head
    words = text.split()
    rest = list(words)
    while len(rest) > 1 and rest[0].strip(".").casefold() in _HONORIFICS:
        rest.pop(0)
    if len(rest) == 1 and len(words) > 1:
        return " ".join(words)  # "Dr. Smith": no first name to use
    return rest[0] if rest else ""


def possessive(name: Any) -> str:
    """ "James" -> "James'", "Elena" -> "Elena's", "" -> ""."""
    text = _as_text(name)
    if not text:
        return ""
    return f"{text}'" if text[-1] in "sS" else f"{text}'s"


def join_names(names: Any, conjunction: str = "and") -> str:
    """["A"] -> "A", ["A", "B"] -> "A and B", ["A", "B", "C"] -> "A, B and C" (blanks skipped)."""
    if isinstance(names, str):
        names = [names]
    items = [text for text in (_as_text(n) for n in names) if text]
    if len(items) <= 1:
        return items[0] if items else ""
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def capfirst(value: Any) -> str:
    """Upper-case the first character only ("your former colleague" -> "Your former colleague")."""
    text = _as_text(value)
    return text[:1].upper() + text[1:]


_BLOCK_TAG = re.compile(r"\{%.*?%\}|\{#.*?#\}")


class _KeepInlineBreaks(Extension):
    """``trim_blocks`` only for tag-only lines: ``text{% endif %}`` keeps its line break."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        lines = source.split("\n")
        for i, line in enumerate(lines):
            stripped = line.rstrip()
            tags = list(_BLOCK_TAG.finditer(stripped))
            if not tags or tags[-1].end() != len(stripped) or stripped[-3:-2] in ("-", "+"):
                continue  # the line does not end with a tag, or the tag says what it wants
            if not _BLOCK_TAG.sub("", stripped).strip():
                continue  # only tags on this line: let trim_blocks remove it entirely
            lines[i] = f"{stripped[:-2]}+{stripped[-2:]}{line[len(stripped) :]}"
        return "\n".join(lines)


def _finalize(value: Any) -> Any:
    cls = value.__class__
    if cls is not str:
        if cls is blanks.Blank:
            blanks.printed(value)
        else:
            rl.check_size(value)  # a nested list is measured before str() makes it text
    return "" if value is None else value


# --------------------------------------------------------------------------- environment


class _CodeGenerator(CodeGenerator):
    def buffer(self, frame: Frame) -> None:
        """A macro's, a block's or caller()'s text is collected in a capped list."""
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.new_buffer()")


class _SandboxEnv(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator
    new_buffer = staticmethod(rl.CappedBuffer)
    concat = staticmethod(rl.capped_concat)  # blocks, macros, caller(): see _generate
    str_join = staticmethod(rl.checked_str_join)
    markup_join = staticmethod(rl.checked_markup_join)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, _Record) and attribute in obj:
            value = obj[attribute]
        else:
            value = super().getattr(obj, attribute)
        rl.accessed(value)
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        rl.accessed(value)
        return value

    def call(
        __self,  # the dunder names mirror SandboxedEnvironment.call
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        rl.tick()
        args = rl.checked_call_args(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        rl.tick()
        rl.check_size(result)
        return result

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        shown = "dict" if isinstance(obj, _Record) else type(obj).__name__
        return self.undefined(
            f"access to attribute {attribute!r} of {shown!r} object is unsafe.",
            name=attribute,
            obj=obj,
            exc=SecurityError,
        )

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        rl.check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        rl.check_size(result)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = cast(str, value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            rl.check_brace_format(fmt)
            result = wrapped(*args, **kwargs)
            rl.check_size(result)
            return result

        return checked

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        # Make every loop check the deadline: {% for x in xs %} becomes xs|_refseq_deadline_iter.
        for loop in source.find_all(nodes.For):
            iterable = cast(nodes.Expr, loop.iter)
            loop.iter = nodes.Filter(
                iterable, _TICK_FILTER, [], [], None, None, lineno=iterable.lineno
            )
        source.set_environment(self)
        code = super()._generate(source, name, filename, defer_init=defer_init)
        # The text of a macro, a {% set %} or {% filter %} block and caller() is joined with the
        # module's ``concat``: make it the capped one (it runs before the join allocates).
        # The same for ``a ~ b``: its parts are measured before they are made text.
        return (
            f"{code}\nconcat = environment.concat\nstr_join = environment.str_join\n"
            "markup_join = environment.markup_join\n"
        )


@functools.lru_cache(maxsize=32)
def _environment(dirs: tuple[Path, ...]) -> _SandboxEnv:
    env = _SandboxEnv(
        loader=_FolderLoader(dirs),
        undefined=_Undefined,
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm"), default_for_string=False, default=False
        ),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
        auto_reload=True,
        cache_size=2000,
        extensions=[_KeepInlineBreaks],
    )
    env.globals.pop("lipsum", None)  # can build huge text without any check
    env.filters.update(
        {
            "fallback": fallback,
            "first_name": first_name,
            "possessive": possessive,
            "join_names": join_names,
            "capfirst": capfirst,
            _TICK_FILTER: rl.deadline_iter,
        }
    )
    env.filters.update(guarded_filters(env.filters))  # every filter's result is measured
    return env


# --------------------------------------------------------------------------- rendering


def _template_file(filename: str, dirs: Sequence[Path]) -> str | None:
    """``warm_intro/body.txt`` for a template file path under one of ``dirs``, else None."""
    path = Path(filename)
    for directory in dirs:
        try:
            relative = path.relative_to(directory)
        except ValueError:
            continue
        if len(relative.parts) >= 2 and NAME_PATTERN.fullmatch(relative.parts[0]):
            return relative.as_posix()
    return None


def _locate(exc: BaseException, dirs: Sequence[Path]) -> tuple[str | None, int | None]:
    """The innermost template frame of the (Jinja-rewritten) traceback: (file, line)."""
    found: tuple[str | None, int | None] = (None, None)
    tb = exc.__traceback__
    while tb is not None:
        file = _template_file(tb.tb_frame.f_code.co_filename, dirs)
        if file is not None:
            found = (file, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _render_error(
    exc: Exception, file: str, dirs: Sequence[Path], limits: rl.Limits
) -> RenderError:
    if isinstance(exc, TemplateSyntaxError):  # includes TemplateAssertionError
        return RenderError(exc.name or file, exc.lineno, f"syntax error: {exc.message}")
    where, line = _locate(exc, dirs)
    where = where or file
    message: str
    if isinstance(exc, rl.Timeout):
        message = f"rendering took longer than {limits.time_limit}s"
    elif isinstance(exc, rl.TooLong):
        message = f"output is longer than {limits.max_chars} characters"
    elif isinstance(exc, SecurityError):
        message = f"sandbox violation: {exc}"
    elif isinstance(exc, UndefinedError):
        message = f"undefined variable: {exc}"
    elif isinstance(exc, TemplateNotFound):
        message = f"template not found: {exc.name}"
    elif isinstance(exc, UnicodeDecodeError):
        message = "the file is not UTF-8 text"
    elif isinstance(exc, MemoryError):
        message = "ran out of memory (the template builds something too large)"
    elif isinstance(exc, RecursionError):
        message = "too deeply nested (recursion limit reached)"
    elif isinstance(exc, TemplateError):
        message = str(exc)
    else:
        message = f"{exc} ({type(exc).__name__})"
    return RenderError(where, line, message)


def _generate(template: Template, parent: dict[str, Any]) -> Generator[str, None, None]:
    """``template.generate(context)`` when ``parent`` is ``dict(template.globals, **context)``.

    Jinja's ``generate`` builds that dict again for each file (most of the cost of rendering a
    short file); this lets the files of one step share it. Jinja never modifies a context's
    parent dict (it shares it itself, with ``{% include %}``).
    """
    context = template.new_context(parent, shared=True)
    try:
        yield from template.root_render_func(context)
    except Exception:
        # As in Template.generate: re-raised with a traceback that points at template lines.
        yield template.environment.handle_exception()


def _render_file(stream: Generator[str, None, None], limits: rl.Limits) -> str:
    """Collect one file's output; raises the original exception (see ``_render_error``)."""
    parts: list[str] = []
    size = 0
    now, deadline, max_chars = limits.now, limits.deadline, limits.max_chars
    for chunk in stream:
        size += len(chunk)
        if size > max_chars or now() > deadline:
            problem = rl.TooLong() if size > max_chars else rl.Timeout()
            # Raise it inside the template so the traceback points at the line.
            stream.throw(problem)
            raise problem
        parts.append(chunk)
    return "".join(parts)


_BLANK_RUNS = re.compile(r"\n{3,}")


def _tidy_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
    text = _BLANK_RUNS.sub("\n\n", text)
    return f"{text}\n" if text else ""


class Renderer:
    """Renders steps from one list of template dirs (the campaign's override dir first).

    ``reload=True`` (what :func:`render_step` uses, so a long-running worker notices edited
    templates): every render looks the template folder up again and asks Jinja whether each
    file changed on disk.

    ``reload=False`` is for one batch, such as the pre-launch check that renders every step
    for every prospect: each template's folder, its files and their compiled form are looked up
    on first use and then reused, with no further ``stat()``; a file that fails to load (a
    syntax error, say) fails the same way for every render without being parsed again. Edits
    made while the batch runs are not seen: make a new ``Renderer`` for each batch.

    Either way the output and every :class:`RenderError` are exactly those of
    :func:`render_step`.
    """

    def __init__(self, dirs: Iterable[Path], *, reload: bool = True) -> None:
        self.dirs = tuple(Path(d) for d in dirs)
        self.reload = reload
        self._env = _environment(self.dirs)
        # batch mode only: template name -> (folder, has body.html); file -> compiled (and
        # whether its globals are the environment's) or the error loading it gave
        self._folders: dict[str, tuple[Path, bool]] = {}
        self._files: dict[str, tuple[Template, bool] | RenderError] = {}
        self._globals = dict(self._env.globals)

    def _folder(self, name: str) -> tuple[Path, bool]:
        found = self._folders.get(name)
        if found is not None:
            return found
        check_template_name(name)
        folder = _find_folder(self.dirs, name)
        if folder is None:
            looked = ", ".join(str(d) for d in self.dirs) or "no template dirs"
            raise RenderError(name, None, f"no template named {name!r} (looked in: {looked})")
        for required in (SUBJECT_FILE, TEXT_FILE):
            if not (folder / required).is_file():
                raise RenderError(
                    f"{name}/{required}", None, f"missing file (the template folder is {folder})"
                )
        found = (folder, (folder / HTML_FILE).is_file())
        if not self.reload:
            self._folders[name] = found
        return found

    def _template(self, file: str, limits: rl.Limits) -> tuple[Template, bool]:
        """The compiled file, and whether its globals are ``self._globals`` (then the files of a
        step can share one parent dict)."""
        if self.reload:
            try:
                return self._env.get_template(file), False
            except Exception as exc:
                raise _render_error(exc, file, self.dirs, limits) from exc
        loaded = self._files.get(file)
        if loaded is None:
            try:
                template = self._env.get_template(file)
                loaded = (template, dict(template.globals) == self._globals)
            except Exception as exc:
                # Loading does not run the template, so the error depends on the file alone.
                loaded = _render_error(exc, file, self.dirs, limits)
            self._files[file] = loaded
        if isinstance(loaded, RenderError):
            raise RenderError(loaded.template, loaded.line, loaded.message)
        return loaded

    def _render_file(
        self,
        file: str,
        context: dict[str, Any],
        limits: rl.Limits,
        parent: list[dict[str, Any]],
    ) -> str:
        """``parent``: empty, or the step's ``dict(self._globals, **context)`` (made here)."""
        template, shared = self._template(file, limits)
        try:
            if shared:
                if not parent:
                    parent.append(dict(self._globals, **context))
                stream = _generate(template, parent[0])
            else:
                stream = cast(Generator[str, None, None], template.generate(context))
            return _render_file(stream, limits)
        except Exception as exc:
            raise _render_error(exc, file, self.dirs, limits) from exc

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        time_limit: float = 2.0,
        max_chars: int = 100_000,
        now: Callable[[], float] = time.monotonic,
    ) -> RenderedEmail:
        """Render template ``name`` (subject, text body, optional HTML body) with ``context``.

        ``time_limit`` covers the whole step; ``max_chars`` applies to each part.
        """
        _folder, has_html = self._folder(name)
        wrapped = {key: _wrap(value, str(key)) for key, value in context.items() if key != HINT_KEY}
        limits = rl.Limits(
            now=now, deadline=now() + time_limit, time_limit=time_limit, max_chars=max_chars
        )
        parent: list[dict[str, Any]] = []
        token = rl.LIMITS.set(limits)
        try:
            subject_file = f"{name}/{SUBJECT_FILE}"
            raw_subject = self._render_file(subject_file, wrapped, limits, parent)
            text = self._render_file(f"{name}/{TEXT_FILE}", wrapped, limits, parent)
            html = (
                self._render_file(f"{name}/{HTML_FILE}", wrapped, limits, parent)
                if has_html
                else None
            )
        finally:
            rl.LIMITS.reset(token)

        subject = raw_subject.strip()
        if len(subject.splitlines()) > 1:
            raise RenderError(subject_file, 1, "the subject contains a line break")
        subject = " ".join(subject.split())
        if not subject:
            raise RenderError(subject_file, 1, "the subject is empty")
        text = _tidy_text(text)
        if not text:
            raise RenderError(f"{name}/{TEXT_FILE}", None, "the body is empty")
        if html is not None and not html.strip():
            raise RenderError(f"{name}/{HTML_FILE}", None, "the HTML body is empty")
        return RenderedEmail(template=name, subject=subject, text=text, html=html)


def render_step(
    name: str,
    context: Mapping[str, Any],
    dirs: Sequence[Path],
    *,
    time_limit: float = 2.0,
    max_chars: int = 100_000,
    now: Callable[[], float] = time.monotonic,
) -> RenderedEmail:
    """Render template ``name`` (subject, text body, optional HTML body) with ``context``.

    ``time_limit`` covers the whole step; ``max_chars`` applies to each part. Every call looks
    for edited templates (see :class:`Renderer` for rendering a batch without that cost).
    """
    return Renderer(dirs).render(name, context, time_limit=time_limit, max_chars=max_chars, now=now)
