"""Manage launched campaigns and the global suppression list."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from sequencer.core.ports import CampaignRecord, CampaignSummary, Suppression, UnitOfWork
from sequencer.core.schedule import next_slot, send_zone
from sequencer.core.specjson import spec_from_json
from sequencer.core.states import (
    CampaignStatus,
    EnrollmentState,
    campaign_transition,
    enrollment_transition,
)
from sequencer.errors import NotFound, SequencerError
from sequencer.services import consent

UowFactory = Callable[[], UnitOfWork]


def list_campaigns(uow_factory: UowFactory) -> list[CampaignSummary]:
    with uow_factory() as uow:
        return uow.repo.list_campaigns()


def get_campaign(uow_factory: UowFactory, name: str) -> CampaignSummary:
    for summary in list_campaigns(uow_factory):
        if summary.campaign.name == name:
            return summary
    raise NotFound(f"no campaign named {name!r} (see `refseq campaigns`)")


def change_status(uow_factory: UowFactory, name: str, event: str, now: datetime) -> CampaignRecord:
    """Pause, resume or stop a campaign; an impossible move raises InvalidTransition."""
    with uow_factory() as uow:
        record = uow.repo.get_campaign(name)
        if record is None:
            raise NotFound(f"no campaign named {name!r} (see `refseq campaigns`)")
        new = campaign_transition(record.status, event)
        uow.repo.set_campaign_status(record.id, new, now)
        uow.commit()
        updated = uow.repo.get_campaign(name)
        assert updated is not None
        return updated


def normalize_suppression(value: str) -> str:
    """``ana@x.example`` or ``@x.example`` → its casefolded, validated form."""
    raw = value.strip()
    if raw.startswith("@"):
        domain = raw[1:]
        try:
            checked = validate_email(f"postmaster@{domain}", check_deliverability=False)
        except EmailNotValidError as exc:
            raise SequencerError(f"{value!r} is not a valid domain: {exc}") from None
        return "@" + checked.domain.casefold()
    try:
        checked = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise SequencerError(
            f"{value!r} is not a valid address: {exc} (use name@domain or @domain)"
        ) from None
    return checked.normalized.casefold()


def suppress(uow_factory: UowFactory, value: str, reason: str, source: str, now: datetime) -> bool:
    key = normalize_suppression(value)
    with uow_factory() as uow:
        added = uow.repo.add_suppression(key, reason, source, now)
        uow.commit()
        return added


def unsuppress(uow_factory: UowFactory, value: str) -> bool:
    key = normalize_suppression(value)
    with uow_factory() as uow:
        removed = uow.repo.remove_suppression(key)
        uow.commit()
        return removed


def list_suppressions(uow_factory: UowFactory) -> list[Suppression]:
    with uow_factory() as uow:
        return uow.repo.list_suppressions()


__all__ = ["CampaignStatus", "change_status", "get_campaign", "list_campaigns", "suppress"]


def held_enrollments(uow_factory: UowFactory, campaign: str | None = None) -> list[tuple[str, Any]]:
    """(campaign name, enrollment) for every enrollment held for a human decision."""
    out: list[tuple[str, Any]] = []
    with uow_factory() as uow:
        for summary in uow.repo.list_campaigns():
            c = summary.campaign
            if campaign is not None and c.name != campaign:
                continue
            out.extend((c.name, e) for e in uow.repo.list_enrollments(c.id, [EnrollmentState.HELD]))
    return out


def release(uow_factory: UowFactory, enrollment_id: int, now: datetime) -> datetime:
    """A rep releases a held enrollment: its next step is due at the next slot of the window
    (a step already drafted and approved while it was held goes out then)."""
    with uow_factory() as uow:
        e = uow.repo.get_enrollment(enrollment_id)
        if e is None:
            raise NotFound(f"no enrollment {enrollment_id} (see `refseq held`)")
        campaign = uow.repo.campaign_by_id(e.campaign_id)
        assert campaign is not None
        spec = spec_from_json(campaign.spec)
        enrollment_transition(e.state, "release")
        why = consent.live_block(uow.repo, e, spec.temperature)
        if why is not None:
            rid = e.referrer.get("id", "")
            if "flagged" in why:
                fix = f"refseq flags clear {rid}"
            elif "detractor" in why:
                fix = "their NPS in referrers.csv, then launch again"
            else:
                fix = f"refseq consent grant {rid} [--prospect {e.prospect_email}]"
            raise SequencerError(
                f"enrollment {enrollment_id} names its referrer, who may not be named now: {why}; "
                f"it stays held until that changes ({fix}), or a launch plans it again unnamed "
                "if it has not started"
            )
        zone = send_zone(spec.schedule, e.prospect.get("timezone", ""), spec.rep.timezone)
        due = next_slot(now, spec.schedule, zone)
        uow.repo.update_enrollment(
            e.id,
            now,
            state=EnrollmentState.ACTIVE,
            hold_reason=None,
            paused_until=None,
            next_due_at=due,
        )
        uow.commit()
        return due
