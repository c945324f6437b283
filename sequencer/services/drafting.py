"""Turn due enrollment steps into drafts. Safe to run twice: (enrollment, step) is unique."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sequencer.core.drafts import DraftConfig, build_draft, step_of
from sequencer.core.model import CampaignSpec
from sequencer.core.ports import DraftEvent, EnrollmentRecord, NewDraft, UnitOfWork
from sequencer.core.specjson import spec_from_json
from sequencer.core.states import DraftState
from sequencer.errors import RenderError
from sequencer.services import consent

UowFactory = Callable[[], UnitOfWork]
SYSTEM = "refseq"


@dataclass
class DraftingReport:
    created: int = 0
    auto_approved: int = 0
    held: int = 0  # enrollments whose referrer may no longer be named (consent, flag)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (prospect, problem)


def _build_one(
    uow: UnitOfWork,
    spec: CampaignSpec,
    enrollment: EnrollmentRecord,
    cfg: DraftConfig,
    now: datetime,
    report: DraftingReport,
) -> NewDraft | None:
    """The draft of the enrollment's current step, rendered and built; None when its sequence
    is finished or the render failed (reported; retried on the next tick)."""
    index = enrollment.steps_done
    step = step_of(spec, enrollment, index)
    if step is None:
        return None  # the sequence is finished; sending marks it completed
    due = enrollment.next_due_at or now
    # Earlier drafts only matter to thread a follow-up on what was sent: a first step, or a
    # step that starts its own thread, saves the query.
    earlier = uow.repo.drafts_of(enrollment.id) if index and step.thread else []
    try:
        return build_draft(spec, enrollment, enrollment.id, index, earlier, cfg, due)
    except (RenderError, ValueError) as exc:
        # Nothing half-rendered is ever stored: report it, retry on the next tick.
        report.errors.append((enrollment.prospect_email, f"step {index + 1}: {exc}"))
        return None


def _store(
    uow: UnitOfWork, built: list[tuple[NewDraft, int]], now: datetime, report: DraftingReport
) -> None:
    """A batch in three statements: the drafts (one multi-row insert; a step another tick
    drafted first is skipped), the drafted steps' due times, the audit events."""
    records = uow.repo.add_drafts(built, now)
    uow.repo.clear_drafted_due([(d.enrollment_id, d.step_index) for d, _ in built])
    events = []
    for record in records:
        report.created += 1
        if record.state is DraftState.APPROVED:
            report.auto_approved += 1
        after: dict[str, Any] = {"state": record.state.value, "subject": record.subject}
        events.append(DraftEvent(record.id, SYSTEM, "created", {}, after, now))
    uow.repo.add_draft_events(events)


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
            built: list[tuple[NewDraft, int]] = []
            gate = consent.gate_for(uow.repo, set().union(*map(consent.referrer_ids, due)))
            for enrollment in due:
                seen.add(enrollment.id)
                if enrollment.campaign_id not in specs:
                    campaign = uow.repo.campaign_by_id(enrollment.campaign_id)
                    assert campaign is not None
                    specs[enrollment.campaign_id] = spec_from_json(campaign.spec)
                spec = specs[enrollment.campaign_id]
                why = consent.enrollment_block(gate, enrollment, spec.temperature)
                if why is not None:  # the live ledger says no: hold it for a person, no draft
                    report.held += consent.hold_enrollment(uow.repo, enrollment, why, now)
                    continue
                live = consent.with_live_others(gate, enrollment, spec.temperature)
                draft = _build_one(uow, spec, live, cfg, now, report)
                if draft is not None:
                    built.append((draft, enrollment.campaign_id))
            _store(uow, built, now, report)
            uow.commit()
