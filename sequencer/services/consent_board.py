"""Each referrer's consent as the ledger has it now, for a person to read and change.

What the web's consent page shows: per referrer, whether they may be named to everyone (the
newest referrer-wide ledger change, or referrers.csv's value while the ledger has none), the
per-prospect changes in force on top of that, the newest change of any kind (who, when, via
what), the flags that keep them unnamed, and how many live enrollments name them. Changes go
through ``services.consent.change_consent``, as from the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

from sequencer.core.naming import BLOCKING_FLAG_STATES, ConsentChange, FlagRecord, Via
from sequencer.services.consent import UowFactory

REFERRER_LIMIT = 200  # referrers on one page (narrow it with a search)
PROSPECT_LIMIT = 20  # per-prospect changes in force shown per referrer (the newest)


@dataclass(frozen=True)
class ReferrerConsent:
    referrer_id: str
    name: str
    consents: bool  # to everyone (a per-prospect change may differ: ``exceptions``)
    source: str  # "ledger" or "referrers.csv"
    latest: ConsentChange | None  # the newest change of any kind
    exceptions: tuple[ConsentChange, ...]  # per-prospect changes in force, newest first
    more_exceptions: int  # in force but not in ``exceptions`` (over PROSPECT_LIMIT)
    flags: tuple[FlagRecord, ...]  # open or confirmed: the referrer is named to nobody
    live: int  # held, active or paused enrollments that may name them
    held: int


@dataclass(frozen=True)
class ConsentBoard:
    referrers: tuple[ReferrerConsent, ...]
    truncated: bool  # more referrers match than REFERRER_LIMIT


def _status(
    entry_id: str,
    name: str,
    csv_consent: bool,
    changes: list[ConsentChange],
    flags: tuple[FlagRecord, ...],
    live: int,
    held: int,
) -> ReferrerConsent:
    wide = [c for c in changes if c.prospect_key is None]
    newest_wide = wide[-1] if wide else None
    since = newest_wide.id if newest_wide else 0
    in_force: dict[str, ConsentChange] = {}
    for c in changes:  # oldest first: the last one per prospect wins
        if c.prospect_key is not None and c.id > since:
            in_force[c.prospect_key] = c
    exceptions = sorted(in_force.values(), key=lambda c: c.id, reverse=True)
    return ReferrerConsent(
        referrer_id=entry_id,
        name=name,
        consents=csv_consent if newest_wide is None else newest_wide.granted,
        source="referrers.csv"
        if newest_wide is None or newest_wide.via is Via.LAUNCH
        else "ledger",
        latest=changes[-1] if changes else None,
        exceptions=tuple(exceptions[:PROSPECT_LIMIT]),
        more_exceptions=max(0, len(exceptions) - PROSPECT_LIMIT),
        flags=flags,
        live=live,
        held=held,
    )


def consent_board(uow_factory: UowFactory, search: str | None = None) -> ConsentBoard:
    """The referrers (whose id or name contains ``search``), by id, at most REFERRER_LIMIT."""
    with uow_factory() as uow:
        entries = uow.repo.referrer_directory(search or None, REFERRER_LIMIT + 1)
        shown = entries[:REFERRER_LIMIT]
        ids = {e.referrer_id for e in shown}
        changes = uow.repo.consent_changes(ids) if ids else []
        flags = [f for f in uow.repo.referrer_flags(BLOCKING_FLAG_STATES) if f.referrer_id in ids]
    by_referrer: dict[str, list[ConsentChange]] = {}
    for c in changes:
        by_referrer.setdefault(c.referrer_id, []).append(c)
    flags_of: dict[str, list[FlagRecord]] = {}
    for f in flags:
        flags_of.setdefault(f.referrer_id, []).append(f)
    return ConsentBoard(
        tuple(
            _status(
                e.referrer_id,
                e.name,
                e.csv_consent,
                by_referrer.get(e.referrer_id, []),
                tuple(flags_of.get(e.referrer_id, ())),
                e.live,
                e.held,
            )
            for e in shown
        ),
        truncated=len(entries) > REFERRER_LIMIT,
    )
