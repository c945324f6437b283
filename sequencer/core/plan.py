"""Who gets enrolled, on which referral path, warm or cold, and why. Pure: nothing is stored."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sequencer.core.model import Audience, CampaignSpec, NamePolicy, Prospect, Temperature
from sequencer.core.naming import NamingGate
from sequencer.core.ports import NewEnrollment
from sequencer.core.referral import ReferralPath, choose_path, classify
from sequencer.core.schedule import next_slot, send_zone
from sequencer.core.states import EnrollmentState

UNNAMED = "unnamed"


class ExclusionReason(StrEnum):
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    SUPPRESSED = "suppressed"
    ACTIVE_ELSEWHERE = "active_elsewhere"
    NO_REFERRAL = "no_referral"
    NO_CONSENT = "no_consent"
    ALREADY_ENROLLED = "already_enrolled"
    ALREADY_REPLIED = "already_replied"


@dataclass(frozen=True)
class PlannedEnrollment:
    prospect: Prospect
    path: ReferralPath
    others: tuple[ReferralPath, ...]
    temperature: Temperature
    reason: str
    sequence: str
    may_name_referrer: bool
    first_due: datetime  # UTC
    zone: str
    hold_reason: str | None = None
    others_named: tuple[bool, ...] = ()  # may each of ``others`` be named (same order)

    @property
    def held(self) -> bool:
        return self.hold_reason is not None

    @property
    def state(self) -> EnrollmentState:
        return EnrollmentState.HELD if self.held else EnrollmentState.ACTIVE

    @property
    def first_due_local(self) -> datetime:
        from zoneinfo import ZoneInfo

        return self.first_due.astimezone(ZoneInfo(self.zone))


@dataclass(frozen=True)
class Exclusion:
    email: str
    source: str
    row: int | None
    reason: ExclusionReason
    detail: str


@dataclass(frozen=True)
class Plan:
    enroll: tuple[PlannedEnrollment, ...]  # new enrollments, held ones included
    excluded: tuple[Exclusion, ...]
    unchanged: int  # prospects already enrolled in this campaign

    @property
    def active(self) -> list[PlannedEnrollment]:
        return [p for p in self.enroll if not p.held]

    @property
    def held(self) -> list[PlannedEnrollment]:
        return [p for p in self.enroll if p.held]


def is_suppressed(key: str, suppressed: set[str]) -> bool:
    return key in suppressed or "@" + key.rsplit("@", 1)[-1] in suppressed


def build_plan(
    spec: CampaignSpec,
    audience: Audience,
    *,
    now: datetime,
    suppressed: set[str],
    live_elsewhere: dict[str, str],
    already: dict[str, EnrollmentState],
    prospects_label: str = "prospects.csv",
    replied: dict[str, str] | None = None,
    gate: NamingGate | None = None,
) -> Plan:
    """Plan enrollments for every good prospect row.

    ``already`` maps prospect keys enrolled in *this* campaign to their state: held ones are
    planned again (consent may have arrived), the rest are left alone and counted as unchanged.
    ``gate``: the live consent ledger and flags (``core.naming``); a path whose referrer may be
    named ranks first, and a referrer who may not is never named.
    """
    paths: dict[str, list[ReferralPath]] = defaultdict(list)
    for referral in audience.referrals:
        referrer = audience.referrers.get(referral.referrer_id)
        if referrer is not None:
            paths[referral.prospect_key].append(ReferralPath(referral, referrer))

    enroll: list[PlannedEnrollment] = []
    excluded: list[Exclusion] = []
    unchanged = 0
    for prospect in audience.prospects:
        key = prospect.key
        state = already.get(key)
        if state is not None and state is not EnrollmentState.HELD:
            unchanged += 1
            continue

        def exclude(reason: ExclusionReason, detail: str, p: Prospect = prospect) -> None:
            excluded.append(Exclusion(p.email, prospects_label, p.row, reason, detail))

        if is_suppressed(key, suppressed):
            exclude(ExclusionReason.SUPPRESSED, "address or domain is on the suppression list")
            continue
        if replied and key in replied:
            exclude(
                ExclusionReason.ALREADY_REPLIED,
                f"already replied to campaign {replied[key]!r}: the rep follows up, not a sequence",
            )
            continue
        if key in live_elsewhere:
            exclude(
                ExclusionReason.ACTIVE_ELSEWHERE,
                f"already in active campaign {live_elsewhere[key]!r}",
            )
            continue
        candidates = paths.get(key)
        if not candidates:
            exclude(ExclusionReason.NO_REFERRAL, "no row in referrals.csv names this prospect")
            continue
        planned = _plan_one(spec, prospect, candidates, now, gate or NamingGate())
        enroll.append(planned)
        if planned.hold_reason is not None:
            exclude(ExclusionReason.NO_CONSENT, planned.hold_reason)
    return Plan(tuple(enroll), tuple(excluded), unchanged)


def _plan_one(
    spec: CampaignSpec,
    prospect: Prospect,
    candidates: list[ReferralPath],
    now: datetime,
    gate: NamingGate,
) -> PlannedEnrollment:
    rule = spec.temperature
    blocks = {
        id(p): gate.block(
            p.referrer.id, p.referrer.nps, p.referrer.consent, prospect.key, rule, p.referrer.name
        )
        for p in candidates
    }
    best, others = choose_path(candidates, lambda p: blocks[id(p)] is None)
    verdict = classify(best, rule)
    why_not = blocks[id(best)]
    nameable = why_not is None
    reason = verdict.reason
    strongest, _ = choose_path(candidates)
    if nameable and strongest is not best:
        reason += (
            f"; via {best.referrer.id}, who may be named, not the stronger "
            f"{strongest.referrer.id}: {blocks[id(strongest)]}"
        )
    elif not nameable and rule.name_referrer is not NamePolicy.NEVER:
        reason += f"; not named: {why_not}"
    sequence = verdict.temperature.value
    hold: str | None = None
    if not nameable and rule.name_referrer is not NamePolicy.NEVER:
        if UNNAMED in spec.sequences:
            sequence = UNNAMED
        else:
            hold = (
                f"held: {why_not}; record their consent (refseq consent grant "
                f"{best.referrer.id}) or add an 'unnamed' sequence"
            )
    zone = send_zone(spec.schedule, prospect.timezone, spec.rep.timezone)
    return PlannedEnrollment(
        prospect=prospect,
        path=best,
        others=tuple(others),
        temperature=verdict.temperature,
        reason=reason,
        sequence=sequence,
        may_name_referrer=nameable,
        first_due=next_slot(now, spec.schedule, zone),
        zone=zone.key,
        hold_reason=hold,
        others_named=tuple(blocks[id(o)] is None for o in others),
    )


def _path_json(path: ReferralPath, named: bool) -> dict[str, object]:
    r = path.referrer
    return {
        "may_name": named,
        "title": r.title,
        "referrer_id": r.id,
        "name": r.name,
        "company": r.company,
        "strength": path.referral.strength,
        "our_strength": r.our_strength,
        "context": path.referral.context,
        "row": path.referral.row,
    }


def to_new_enrollment(p: PlannedEnrollment, policy: NamePolicy | None = None) -> NewEnrollment:
    """``policy`` is unused (kept for callers): each path's naming was decided at planning."""
    return NewEnrollment(
        prospect_key=p.prospect.key,
        prospect_email=p.prospect.email,
        prospect=p.prospect.fields(),
        referrer=p.path.referrer.fields(),
        referral={
            "strength": p.path.referral.strength,
            "context": p.path.referral.context,
            "row": p.path.referral.row,
            "zone": p.zone,
        },
        other_referrals=[
            _path_json(o, p.others_named[i] if i < len(p.others_named) else False)
            for i, o in enumerate(p.others)
        ],
        temperature=p.temperature.value,
        sequence=p.sequence,
        may_name_referrer=p.may_name_referrer,
        reason=p.reason,
        state=p.state,
        hold_reason=p.hold_reason,
        next_due_at=None if p.held else p.first_due,
    )
