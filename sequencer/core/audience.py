"""Load the audience CSVs (prospects, referrers, referrals) into an :class:`Audience`.

Every bad row or cell becomes a :class:`Problem` with its CSV line number and the row is left
out; good rows are always returned. Cross-file checks (referral -> referrer / prospect) run in
:func:`load_audience` once all three files are parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TypeVar
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)

from sequencer.core.csvlimits import CappedProblems, listed
from sequencer.core.csvlimits import active as active_limits
from sequencer.core.csvrows import (
    Closest,
    Row,
    Sheet,
    first_or_duplicate,
    open_sheet,
    read_lines,
    source_label,
)
from sequencer.core.model import Audience, Prospect, Referral, Referrer
from sequencer.errors import Problem

__all__ = [
    "AudienceResult",
    "Excluded",
    "InvalidEmail",
    "load_audience",
    "normalize_email",
    "parse_prospects",
    "parse_referrals",
    "parse_referrers",
]

Excluded = tuple[str, int, str, str]
"""(email or id as written, CSV row, source label, reason: "invalid" | "duplicate")."""
Progress = Callable[[int], None]
T = TypeVar("T")

_LOWERED = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)  # the library lowercases these
PROSPECT_FIELDS = ("email", "first_name", "last_name", "title", "company", "timezone")


class InvalidEmail(ValueError):
    """An email address that cannot be used; ``str()`` is a human sentence."""


@lru_cache(maxsize=65536)
def _domain(domain: str) -> tuple[str, str] | None:
    """(normalised, IDNA ASCII) form of a valid domain; None sends the caller the slow way."""
    try:
        checked = validate_email("a@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain, checked.ascii_domain


def normalize_email(raw: str) -> str:
    """The normalised address (domain lowercased, local part kept) or :class:`InvalidEmail`.

    Same result as ``email_validator.validate_email(raw.strip(), check_deliverability=False)``,
    but a plain ASCII local part is checked with the library's own regex and the domain check
    (the slow part, shared by many rows) is cached; anything unusual takes the full path.
    """
    value = raw.strip()
    if not value:
        raise InvalidEmail("The email address is empty.")
    local, at, domain = value.rpartition("@")
    if at and value.isascii() and DOT_ATOM_TEXT.match(local) and local.lower() not in _LOWERED:
        parts = _domain(domain)
        if parts is not None:
            normalized = f"{local}@{parts[0]}"
            longest = max(len(value), len(normalized.encode()), len(local) + 1 + len(parts[1]))
            if longest <= EMAIL_MAX_LENGTH:
                return normalized
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None


@dataclass(frozen=True)
class AudienceResult:
    audience: Audience  # only good rows
    problems: list[Problem]  # every bad row/cell
    excluded: list[Excluded]  # every dropped row
    unreadable: tuple[str, ...] = ()  # files that could not be read at all (by label)


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


@cache
def _closest_zone() -> Closest:
    return Closest(sorted(_zones()))


def _zone_hint(name: str) -> str:
    guess = _closest_zone()(name.replace(" ", "_"))
    if guess:
        return f"did you mean {guess}?"
    return "use an IANA name such as America/New_York, or leave it empty"


def _email(row: Row, column: str, *, required: bool, hint: str) -> str:
    before = len(row.problems)
    value = row.text(column, required=required)
    if not value or len(row.problems) > before:
        return ""
    try:
        address = normalize_email(value)
    except InvalidEmail as exc:
        row.problem(column, str(exc), hint)
        return ""
    if not address.rpartition("@")[0].isascii():  # every send to it would fail (no SMTPUTF8)
        message = "the part before the @-sign has non-ASCII characters, which we cannot send to"
        row.problem(column, message, hint)
        return ""
    return address


def _drop(sheet: Sheet, row: Row, excluded: list[Excluded], key: str, reason: str) -> None:
    sheet.problems.extend(row.problems)
    excluded.append((row.cells.get(key, ""), row.line, sheet.source, reason))


def _prospects(
    lines: Iterable[str], source: str, progress: Progress | None
) -> tuple[Sheet, list[Prospect], list[Excluded]]:
    sheet = open_sheet(lines, source, ("email", "first_name"))
    extra = [c for c in sheet.columns if c and c not in PROSPECT_FIELDS]
    zones = _zones()
    kept: list[Prospect] = []
    excluded: list[Excluded] = []
    first: dict[object, int] = {}
    for row in sheet.rows(progress):
        email = _email(row, "email", required=True, hint="fix the address or remove the row")
        first_name = row.text("first_name", required=True)
        last_name, title, company = row.text("last_name"), row.text("title"), row.text("company")
        zone = row.cells.get("timezone", "")
        if zone and zone not in zones:
            row.problem("timezone", f"{zone!r} is not a known IANA time zone", _zone_hint(zone))
        custom = {name: row.text(name) for name in extra}
        dup = not row.problems and first_or_duplicate(row, "email", email.casefold(), first)
        if row.problems:
            _drop(sheet, row, excluded, "email", "duplicate" if dup else "invalid")
            continue
        kept.append(
            Prospect(email, first_name, last_name, title, company, zone, custom, row=row.line)
        )
    return sheet, kept, excluded


def _referrers(
    lines: Iterable[str], source: str, progress: Progress | None
) -> tuple[Sheet, list[Referrer], list[Excluded]]:
    sheet = open_sheet(lines, source, ("id", "name", "our_strength"))
    zones = _zones()
    kept: list[Referrer] = []
    excluded: list[Excluded] = []
    first: dict[object, int] = {}
    for row in sheet.rows(progress):
        referrer = Referrer(
            id=row.text("id", required=True),
            name=row.text("name", required=True),
            email=_email(row, "email", required=False, hint="fix the address or leave it empty"),
            title=row.text("title"),
            company=row.text("company"),
            is_customer=row.flag("is_customer"),
            nps=row.number("nps", 0, 10, required=False),
            our_strength=row.number("our_strength", 1, 5, required=True) or 0,
            our_context=row.text("our_context", header=False),
            consent=row.flag("consent"),
            row=row.line,
            timezone=row.cells.get("timezone", ""),
        )
        if referrer.timezone and referrer.timezone not in zones:
            zone = referrer.timezone
            row.problem("timezone", f"{zone!r} is not a known IANA time zone", _zone_hint(zone))
        dup = not row.problems and first_or_duplicate(row, "id", referrer.id, first)
        if row.problems:
            _drop(sheet, row, excluded, "id", "duplicate" if dup else "invalid")
            continue
        kept.append(referrer)
    return sheet, kept, excluded


def _referrals(
    lines: Iterable[str], source: str, progress: Progress | None
) -> tuple[Sheet, list[tuple[Referral, str]], list[Excluded]]:
    """Referrals paired with the prospect_email as written (for ``excluded``)."""
    sheet = open_sheet(lines, source, ("referrer_id", "prospect_email", "strength"))
    kept: list[tuple[Referral, str]] = []
    excluded: list[Excluded] = []
    first: dict[object, int] = {}
    for row in sheet.rows(progress):
        referral = Referral(
            referrer_id=row.text("referrer_id", required=True),
            prospect_email=_email(
                row, "prospect_email", required=True, hint="fix the address or remove the row"
            ),
            strength=row.number("strength", 1, 5, required=True) or 0,
            context=row.text("context", header=False),
            row=row.line,
        )
        pair = (referral.referrer_id, referral.prospect_key)
        dup = not row.problems and first_or_duplicate(row, "prospect_email", pair, first)
        if row.problems:
            _drop(sheet, row, excluded, "prospect_email", "duplicate" if dup else "invalid")
            continue
        kept.append((referral, row.cells["prospect_email"]))
    return sheet, kept, excluded


def parse_prospects(
    lines: Iterable[str], source: str, *, progress: Progress | None = None
) -> tuple[list[Prospect], list[Problem], list[Excluded]]:
    sheet, kept, excluded = _prospects(lines, source, progress)
    return kept, sheet.problems, excluded


def parse_referrers(
    lines: Iterable[str], source: str, *, progress: Progress | None = None
) -> tuple[list[Referrer], list[Problem], list[Excluded]]:
    sheet, kept, excluded = _referrers(lines, source, progress)
    return kept, sheet.problems, excluded


def parse_referrals(
    lines: Iterable[str], source: str, *, progress: Progress | None = None
) -> tuple[list[Referral], list[Problem], list[Excluded]]:
    """Within-file checks only; :func:`load_audience` adds the cross-file ones."""
    sheet, kept, excluded = _referrals(lines, source, progress)
    return [referral for referral, _ in kept], sheet.problems, excluded


def _dropped_prospects(excluded: list[Excluded]) -> dict[str, int]:
    """Prospect key -> row, for rows left out as invalid whose address itself is usable."""
    rows: dict[str, int] = {}
    for value, row, _, reason in excluded:
        if reason == "invalid" and value:
            with suppress(InvalidEmail):
                rows.setdefault(normalize_email(value).casefold(), row)
    return rows


def _load(
    path: Path,
    label: str,
    parse: Callable[[Iterable[str], str, Progress | None], tuple[Sheet, list[T], list[Excluded]]],
    progress: Progress | None,
) -> tuple[Sheet, list[T], list[Excluded]]:
    lines, problem = read_lines(path, label)
    if problem is not None:
        problems = CappedProblems(label, 1)
        problems.force(problem)
        return Sheet(label, False, [], problems, iter(())), [], []
    return parse(lines, label, progress)


def _cross_check(
    pairs: list[tuple[Referral, str]],
    source: str,
    prospects: tuple[Sheet, list[Prospect], list[Excluded]],
    referrers: tuple[Sheet, list[Referrer], list[Excluded]],
) -> tuple[list[Referral], list[Problem], list[Excluded]]:
    """Keep referrals whose referrer and prospect were loaded and are different people."""
    (p_sheet, p_kept, p_excl), (r_sheet, r_kept, r_excl) = prospects, referrers
    problems = CappedProblems(source, active_limits().max_problems)
    excluded: list[Excluded] = []
    unreadable = [s.source for s in (p_sheet, r_sheet) if not s.ok]
    if unreadable:
        if pairs:
            names = " and ".join(unreadable)
            message = f"{len(pairs)} referral(s) left out because {names} could not be read"
            problems.append(Problem(source, message, hint="fix that file first"))
            excluded = [(raw, r.row, source, "invalid") for r, raw in pairs]
        return [], problems, excluded
    known = {p.key for p in p_kept}
    by_id = {r.id: r for r in r_kept}
    left_out_prospects = _dropped_prospects(p_excl)
    left_out_ids: dict[str, int] = {}
    for value, line, _, reason in r_excl:
        if reason == "invalid" and value:
            left_out_ids.setdefault(value, line)
    closest_id = Closest(by_id)
    kept: list[Referral] = []
    for referral, raw in pairs:
        row = Row(source, referral.row, {})
        rid, key = referral.referrer_id, referral.prospect_key
        referrer = by_id.get(rid)
        if referrer is None and rid in left_out_ids:
            where = f"{r_sheet.source} row {left_out_ids[rid]}"
            row.problem(
                "referrer_id",
                f"referrer {rid!r} was left out: {where} has problems",
                "fix that row first",
            )
        elif referrer is None:
            guess = closest_id(rid)
            hint = f"did you mean {guess!r}?" if guess else "add the referrer or fix the id"
            row.problem("referrer_id", f"no referrer with id {rid!r} in {r_sheet.source}", hint)
        if key not in known and key in left_out_prospects:
            where = f"{p_sheet.source} row {left_out_prospects[key]}"
            row.problem(
                "prospect_email",
                f"the prospect was left out: {where} has problems",
                "fix that row first",
            )
        elif key not in known:
            row.problem(
                "prospect_email",
                f"no prospect with this email in {p_sheet.source}",
                f"add the prospect to {p_sheet.source} or fix the address",
            )
        if referrer is not None and referrer.email.casefold() == key:
            row.problem(
                "prospect_email",
                "the referrer is the prospect",
                "a person cannot refer themselves; remove the row",
            )
        if row.problems:
            problems.extend(row.problems)
            excluded.append((raw, referral.row, source, "invalid"))
        else:
            kept.append(referral)
    return kept, problems, excluded


def load_audience(
    prospects: Path,
    referrers: Path,
    referrals: Path,
    *,
    label_base: Path | None = None,
    progress: Progress | None = None,
) -> AudienceResult:
    """Parse and cross-check the three CSVs. ``progress(n)`` gets rows read so far (all files)."""
    p_label, r_label, f_label = (
        source_label(p, label_base) for p in (prospects, referrers, referrals)
    )
    done = 0

    def step(n: int) -> None:
        if progress is not None:
            progress(done + n)

    p = _load(prospects, p_label, _prospects, step)
    done += p[0].count
    r = _load(referrers, r_label, _referrers, step)
    done += r[0].count
    f_sheet, pairs, f_excl = _load(referrals, f_label, _referrals, step)
    done += f_sheet.count
    kept, cross, f_cross = _cross_check(pairs, f_label, p, r)
    f_problems = listed(f_label, f_sheet.problems, cross)  # by row, capped
    f_excluded = sorted(f_excl + f_cross, key=lambda x: x[1])
    if progress is not None:
        progress(done)
    audience = Audience(tuple(p[1]), {x.id: x for x in r[1]}, tuple(kept))
    return AudienceResult(
        audience,
        [*listed(p_label, p[0].problems), *listed(r_label, r[0].problems), *f_problems],
        [*p[2], *r[2], *f_excluded],
        tuple(sheet.source for sheet in (p[0], r[0], f_sheet) if not sheet.ok),
    )
