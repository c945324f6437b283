"""Turn due enrollment steps into drafts. Safe to run twice: (enrollment, step) is unique."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sequencer.core.drafts import DraftConfig, build_draft, step_of
from sequencer.core.model import CampaignSpec
from sequencer.core.ports import DraftEvent, EnrollmentRecord, UnitOfWork
from sequencer.core.specjson import spec_from_json
from sequencer.core.states import DraftState
from sequencer.errors import RenderError

UowFactory = Callable[[], UnitOfWork]
SYSTEM = "refseq"


@dataclass
class DraftingReport:
    created: int = 0
    auto_approved: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (prospect, problem)


def _draft_one(
    uow: UnitOfWork,
    spec: CampaignSpec,
    enrollment: EnrollmentRecord,
    cfg: DraftConfig,
    now: datetime,
    report: DraftingReport,
    events: list[DraftEvent],
    drafted: list[tuple[int, int]],
) -> None:
    index = enrollment.steps_done
    step = step_of(spec, enrollment, index)
    if step is None:
        return  # the sequence is finished; sending marks it completed
    due = enrollment.next_due_at or now
    # Earlier drafts only matter to thread a follow-up on what was sent: a first step, or a
    # step that starts its own thread, saves the query.
    earlier = uow.repo.drafts_of(enrollment.id) if index and step.thread else []
    try:
        draft = build_draft(spec, enrollment, enrollment.id, index, earlier, cfg, due)
    except (RenderError, ValueError) as exc:
        # Nothing half-rendered is ever stored: report it, retry on the next tick.
        report.errors.append((enrollment.prospect_email, f"step {index + 1}: {exc}"))
        return
    record = uow.repo.add_draft(draft, now, enrollment.campaign_id, clear_due=False)
    drafted.append((enrollment.id, index))
    if record is None:
        return  # another tick drafted it first
    report.created += 1
    if record.state is DraftState.APPROVED:
        report.auto_approved += 1
    after: dict[str, Any] = {"state": record.state.value, "subject": record.subject}
    events.append(DraftEvent(record.id, SYSTEM, "created", {}, after, now))


def draft_due(
    uow_factory: UowFactory, cfg: DraftConfig, now: datetime, batch: int = 200
) -> DraftingReport:
    """Create a draft for every enrollment whose next step is due at ``now``.

    ``approval: auto`` steps are approved at once; ``required`` ones wait in the rep's queue.
    Each batch commits on its own, so a crash loses at most one batch of work (and redoes it).
    """
    report = DraftingReport()
    specs: dict[int, CampaignSpec] = {}
    seen: set[int] = set()
    while True:
        with uow_factory() as uow:
            # Enrollments that failed to render stay due; look past them.
            fetched = uow.repo.due_enrollments(now, batch + len(report.errors))
            due = [e for e in fetched if e.id not in seen]
            if not due:
                return report
            # One statement each per batch, not one per draft: the audit events, and the due
            # times of the drafted steps (after every insert, the order add_draft keeps).
            events: list[DraftEvent] = []
            drafted: list[tuple[int, int]] = []
            for enrollment in due:
                seen.add(enrollment.id)
                if enrollment.campaign_id not in specs:
                    campaign = uow.repo.campaign_by_id(enrollment.campaign_id)
                    assert campaign is not None
                    specs[enrollment.campaign_id] = spec_from_json(campaign.spec)
                spec = specs[enrollment.campaign_id]
                _draft_one(uow, spec, enrollment, cfg, now, report, events, drafted)
            uow.repo.clear_drafted_due(drafted)
            uow.repo.add_draft_events(events)
            uow.commit()
