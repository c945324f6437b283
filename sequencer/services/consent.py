"""The live consent ledger and the "I don't know this referrer" flags.

Consent to name a referrer is not a snapshot taken at enrollment: every change (``refseq
consent``, a re-launch whose ``referrers.csv`` changed) is appended to the ledger with who made
it, when and via what, and planning, drafting, sending (at claim time and again right before
DATA) and releasing all ask the ledger. A revocation, or a flag, holds every live enrollment
that names the referrer, in every campaign, in the same transaction: their unsent drafts wait
and cannot go out until a person releases them, which is refused while the referrer may still
not be named.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from sequencer.core.model import Referrer, TemperatureRule
from sequencer.core.naming import (
    BLOCKING_FLAG_STATES,
    ConsentChange,
    FlagRecord,
    FlagState,
    NamingGate,
    Via,
    snapshot_nps,
)
from sequencer.core.ports import EnrollmentRecord, Store, UnitOfWork
from sequencer.core.states import EnrollmentState
from sequencer.errors import NotFound, SequencerError

UowFactory = Callable[[], UnitOfWork]
LIST_LIMIT = 500  # ledger rows `refseq consent list` shows (newest)


def gate_for(repo: Store, referrer_ids: Collection[str]) -> NamingGate:
    """The ledger and blocking flags of these referrers, read now."""
    ids = set(referrer_ids)
    if not ids:
        return NamingGate()
    return NamingGate(tuple(repo.consent_changes(ids)), frozenset(repo.flagged_referrers(ids)))


def enrollment_block(gate: NamingGate, e: EnrollmentRecord, rule: TemperatureRule) -> str | None:
    """Why this enrollment may not name its referrer now (None: it may, or it never names)."""
    if not e.may_name_referrer:
        return None
    r = e.referrer
    return gate.block(
        str(r.get("id", "")),
        snapshot_nps(r),
        bool(r.get("consent", False)),
        e.prospect_key,
        rule,
        str(r.get("name", "")),
    )


def referrer_ids(e: EnrollmentRecord) -> set[str]:
    """The enrollment's referrer and the other referrers its templates may mention."""
    ids = {str(e.referrer.get("id", ""))}
    ids.update(str(o.get("referrer_id", "")) for o in e.other_referrals)
    return ids - {""}


def with_live_others(
    gate: NamingGate, e: EnrollmentRecord, rule: TemperatureRule
) -> EnrollmentRecord:
    """The enrollment with each other referrer's ``may_name`` as the ledger says now (a
    revocation or a flag since launch turns it off; nothing turns it on)."""
    others = []
    changed = False
    for o in e.other_referrals:
        rid = str(o.get("referrer_id", ""))
        named = (
            bool(o.get("may_name")) and gate.block(rid, None, True, e.prospect_key, rule) is None
        )
        changed |= named != bool(o.get("may_name"))
        others.append({**o, "may_name": named})
    return replace(e, other_referrals=others) if changed else e


def live_block(repo: Store, e: EnrollmentRecord, rule: TemperatureRule) -> str | None:
    """``enrollment_block`` against the ledger as it is in this transaction."""
    if not e.may_name_referrer:
        return None
    referrer_id = str(e.referrer.get("id", ""))
    latest, flagged = repo.naming_state(referrer_id, e.prospect_key)
    gate = NamingGate(
        () if latest is None else (latest,), frozenset({referrer_id} if flagged else ())
    )
    return enrollment_block(gate, e, rule)


def hold_enrollment(repo: Store, e: EnrollmentRecord, why: str, now: datetime) -> bool:
    """Hold a live enrollment for a person (its drafts wait); False if it was not live."""
    if e.state not in (EnrollmentState.ACTIVE, EnrollmentState.PAUSED):
        return False
    repo.update_enrollment(
        e.id, now, state=EnrollmentState.HELD, paused_until=None, hold_reason=f"held: {why}"
    )
    return True


def hold_naming(
    repo: Store, referrer_id: str, prospect_key: str | None, why: str, now: datetime
) -> int:
    """Hold every active or paused enrollment, in every campaign, that names the referrer."""
    return sum(
        hold_enrollment(repo, e, why, now) for e in repo.live_naming(referrer_id, prospect_key)
    )


def record_change(repo: Store, change: ConsentChange) -> int:
    """Append a change to the ledger; a revocation holds what names the referrer now.
    Returns how many enrollments were held."""
    repo.add_consent_change(change)
    if change.granted:
        return 0
    whom = f" to {change.prospect_key}" if change.prospect_key else ""
    why = f"referrer {change.referrer_id} revoked consent to be named{whom} ({change.via.value})"
    return hold_naming(repo, change.referrer_id, change.prospect_key, why, change.at)


def csv_changes(
    repo: Store, referrers: Iterable[Referrer], actor: str, now: datetime
) -> list[ConsentChange]:
    """The consent column of ``referrers.csv`` as ledger changes: a referrer whose value differs
    from the last one a launch recorded. A "yes" no launch recorded is the default and is not
    stored (a large file adds rows only for its refusals). Launching the same file again changes
    nothing, so a change made since by a person (``refseq consent``) stands."""
    by_id = {r.id: r for r in referrers}
    last: dict[str, bool] = {}
    for c in repo.consent_changes(set(by_id)):
        if c.via is Via.LAUNCH and c.prospect_key is None:
            last[c.referrer_id] = c.granted
    return [
        ConsentChange(r.id, None, r.consent, actor, Via.LAUNCH, now, "referrers.csv")
        for r in by_id.values()
        if last.get(r.id, True) is not r.consent
    ]


def record_launch_changes(repo: Store, changes: list[ConsentChange], now: datetime) -> int:
    """Store a launch's referrers.csv changes at once; hold what names a referrer it revokes
    (in every campaign). Returns how many enrollments were held."""
    repo.add_consent_changes(changes)
    revoked = {c.referrer_id for c in changes if not c.granted}
    if not revoked:
        return 0
    why = "revoked consent to be named (referrers.csv at a launch)"
    return sum(
        hold_enrollment(repo, e, f"referrer {e.referrer.get('id')} {why}", now)
        for e in repo.live_naming_many(revoked)
    )


@dataclass(frozen=True)
class ChangeResult:
    change: ConsentChange
    held: int  # enrollments held by a revocation
    waiting: int  # held enrollments naming the referrer (a grant: release them to go on)


def change_consent(
    uow_factory: UowFactory,
    referrer_id: str,
    granted: bool,
    actor: str,
    now: datetime,
    *,
    prospect: str | None = None,
    via: Via = Via.CLI,
    note: str = "",
) -> ChangeResult:
    referrer_id = referrer_id.strip()
    key = prospect.strip().casefold() if prospect else None
    if key is not None and ("@" not in key or any(c.isspace() for c in key)):
        raise SequencerError(
            f"--prospect {prospect!r} is not an email address; give the prospect's address"
        )
    with uow_factory() as uow:
        repo = uow.repo
        if not repo.referrer_known(referrer_id):
            raise NotFound(
                f"no referrer {referrer_id!r} in any launched campaign: use the id column of "
                "referrers.csv (see `refseq consent list`)"
            )
        change = ConsentChange(referrer_id, key, granted, actor, via, now, note)
        held = record_change(repo, change)
        waiting = sum(
            1 for e in repo.live_naming(referrer_id, key) if e.state is EnrollmentState.HELD
        )
        uow.commit()
    return ChangeResult(change, held, waiting)


@dataclass(frozen=True)
class ConsentRow:
    change: ConsentChange
    current: bool  # the newest change for its (referrer, prospect): the one in force


def list_consent(uow_factory: UowFactory, referrer_id: str | None = None) -> list[ConsentRow]:
    """The ledger, oldest first (at most ``LIST_LIMIT`` rows, the newest)."""
    with uow_factory() as uow:
        if referrer_id is None:
            changes = uow.repo.consent_changes(None, LIST_LIMIT)
        else:
            changes = uow.repo.consent_changes({referrer_id})[-LIST_LIMIT:]
    newest: dict[tuple[str, str | None], int] = {}
    for c in changes:
        newest[(c.referrer_id, c.prospect_key)] = c.id
    return [ConsentRow(c, newest[(c.referrer_id, c.prospect_key)] == c.id) for c in changes]


# -- flags --------------------------------------------------------------------------------


def list_flags(uow_factory: UowFactory, every: bool = False) -> list[FlagRecord]:
    with uow_factory() as uow:
        return uow.repo.referrer_flags(None if every else BLOCKING_FLAG_STATES)


def resolve_flags(
    uow_factory: UowFactory, target: str, state: FlagState, actor: str, now: datetime
) -> list[FlagRecord]:
    """Clear or confirm the flags ``target`` names: a flag id, or a referrer id (all of its
    flags). Clearing lets the referrer be named again once no flag of theirs blocks; held
    enrollments still wait for `refseq release`."""
    with uow_factory() as uow:
        flags = uow.repo.referrer_flags()
        chosen = [f for f in flags if str(f.id) == target or f.referrer_id == target]
        if not chosen:
            raise NotFound(f"no flag or flagged referrer {target!r} (see `refseq flags`)")
        uow.repo.resolve_flags([f.id for f in chosen], state, actor, now)
        uow.commit()
        return chosen
