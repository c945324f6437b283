"""Plan and launch a campaign: one transaction stores the campaign and its new enrollments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sequencer.core.plan import Plan, build_plan, to_new_enrollment
from sequencer.core.ports import Repository, UnitOfWork
from sequencer.core.specjson import spec_hash, spec_to_json
from sequencer.core.states import CampaignStatus
from sequencer.errors import SequencerError, SpecError
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


def _plan(check: CampaignCheck, repo: Repository, campaign_id: int | None, now: datetime) -> Plan:
    assert check.spec is not None
    assert check.audience is not None
    plan = build_plan(
        check.spec,
        check.audience,
        now=now,
        suppressed=repo.suppressed_values(),
        live_elsewhere=repo.live_elsewhere(campaign_id),
        replied=repo.replied_anywhere(),
        already=repo.enrollment_states(campaign_id) if campaign_id is not None else {},
        prospects_label=check.spec.data.prospects.name,
    )
    return Plan(tuple(plan.enroll), (*check.row_exclusions, *plan.excluded), plan.unchanged)


def _require_launchable(check: CampaignCheck) -> None:
    if not check.launchable:
        raise SpecError([*check.spec_errors, *check.render_errors])


def plan_campaign(uow_factory: UowFactory, check: CampaignCheck, now: datetime) -> Plan:
    """What ``launch`` would do now, without writing anything."""
    _require_launchable(check)
    assert check.spec is not None
    with uow_factory() as uow:
        existing = uow.repo.get_campaign(check.spec.name)
        return _plan(check, uow.repo, existing.id if existing else None, now)


def launch_campaign(
    uow_factory: UowFactory,
    check: CampaignCheck,
    now: datetime,
    progress: Callable[[int], None] | None = None,
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
        plan = _plan(check, repo, existing.id if existing else None, now)
        record, created = repo.save_campaign(spec.name, str(check.path), digest, spec_json, now)
        held_before = {k for k, s in repo.enrollment_states(record.id).items() if s.value == "held"}
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
    )
