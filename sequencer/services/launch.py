"""Plan and launch a campaign: one transaction stores the campaign and its new enrollments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sequencer.core.naming import ConsentChange
from sequencer.core.plan import Plan, build_plan, to_new_enrollment
from sequencer.core.ports import Store, UnitOfWork
from sequencer.core.specjson import spec_hash, spec_to_json
from sequencer.core.states import CampaignStatus, EnrollmentState
from sequencer.errors import SequencerError, SpecError
from sequencer.services import consent
from sequencer.services.checking import CampaignCheck

UowFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True)
class LaunchReport:
    campaign: str
    created: bool
    spec_changed: bool
    plan: Plan
    enrolled: int
    released: int  # previously held enrollments re-planned
    consent_changes: int = 0  # referrers.csv consent values recorded in the ledger
    held_by_revocation: int = 0  # live enrollments held because referrers.csv revoked consent


def _plan(
    check: CampaignCheck,
    repo: Store,
    campaign_id: int | None,
    now: datetime,
    pending: list[ConsentChange] | None = None,
) -> Plan:
    """``pending``: consent changes from referrers.csv not recorded yet (``plan`` shows what
    ``launch`` would do with them)."""
    assert check.spec is not None
    assert check.audience is not None
    gate = consent.gate_for(repo, set(check.audience.referrers)).with_changes(pending or ())
    plan = build_plan(
        check.spec,
        check.audience,
        now=now,
        suppressed=repo.suppressed_values(),
        live_elsewhere=repo.live_elsewhere(campaign_id),
        replied=repo.replied_anywhere(),
        already=_already(repo, campaign_id),
        prospects_label=check.spec.data.prospects.name,
        gate=gate,
    )
    return Plan(tuple(plan.enroll), (*check.row_exclusions, *plan.excluded), plan.unchanged)


def _already(repo: Store, campaign_id: int | None) -> dict[str, EnrollmentState]:
    """The campaign's enrollments by prospect; a held one that already drafted a step (held
    mid-sequence, e.g. a revoked consent) counts as in flight: only ``release`` moves it on."""
    if campaign_id is None:
        return {}
    states = repo.enrollment_states(campaign_id)
    for key in repo.started_held(campaign_id):
        states[key] = EnrollmentState.ACTIVE
    return states


def _require_launchable(check: CampaignCheck) -> None:
    if not check.launchable:
        raise SpecError([*check.spec_errors, *check.render_errors])


def plan_campaign(uow_factory: UowFactory, check: CampaignCheck, now: datetime) -> Plan:
    """What ``launch`` would do now, without writing anything."""
    _require_launchable(check)
    assert check.spec is not None
    with uow_factory() as uow:
        existing = uow.repo.get_campaign(check.spec.name)
        assert check.audience is not None
        pending = consent.csv_changes(uow.repo, check.audience.referrers.values(), "", now)
        return _plan(check, uow.repo, existing.id if existing else None, now, pending)


def launch_campaign(
    uow_factory: UowFactory,
    check: CampaignCheck,
    now: datetime,
    progress: Callable[[int], None] | None = None,
    actor: str = "refseq",
) -> LaunchReport:
    """Store the campaign and enroll every new, eligible prospect, all in one transaction.

    Launching the same file again changes nothing; an edited file updates the campaign and
    enrolls only prospects it has never enrolled (held ones are planned again).
    """
    _require_launchable(check)
    spec = check.spec
    assert spec is not None
    spec_json = spec_to_json(spec)
    digest = spec_hash(spec_json, check.data_digests)
    with uow_factory() as uow:
        repo = uow.repo
        existing = repo.get_campaign(spec.name)
        if existing is not None and existing.status is CampaignStatus.STOPPED:
            raise SequencerError(
                f"campaign {spec.name!r} was stopped and cannot be launched again; "
                "give the campaign a new name in the YAML file"
            )
        assert check.audience is not None
        # referrers.csv's consent column, where it changed, is a change to the live ledger: a
        # revocation holds what names the referrer in every campaign before anything is planned.
        changes = consent.csv_changes(repo, check.audience.referrers.values(), actor, now)
        held_now = consent.record_launch_changes(repo, changes, now)
        plan = _plan(check, repo, existing.id if existing else None, now)
        record, created = repo.save_campaign(spec.name, str(check.path), digest, spec_json, now)
        held_before = {k for k, s in _already(repo, record.id).items() if s.value == "held"}
        policy = spec.temperature.name_referrer
        # A generator: each row is built as add_enrollments inserts its chunk, so 100k prospects
        # never hold 100k NewEnrollment snapshots (dicts) at once.
        fresh = (
            to_new_enrollment(p, policy) for p in plan.enroll if p.prospect.key not in held_before
        )
        released = 0
        for p in plan.enroll:
            if p.prospect.key in held_before and repo.replace_held(
                record.id, to_new_enrollment(p, policy), now
            ):
                released += 1
        enrolled = repo.add_enrollments(record.id, fresh, now, progress)
        uow.commit()
    return LaunchReport(
        campaign=spec.name,
        created=created,
        spec_changed=existing is None or existing.spec_hash != digest,
        plan=plan,
        enrolled=enrolled,
        released=released,
        consent_changes=len(changes),
        held_by_revocation=held_now,
    )
