"""Ports: the Protocols services talk to. Adapters implement them (see ``sequencer.adapters``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from sequencer.core.states import CampaignStatus, EnrollmentState


@dataclass(frozen=True)
class CampaignRecord:
    id: int
    name: str
    status: CampaignStatus
    source: str
    spec_hash: str
    spec: dict[str, Any]  # the normalised spec as JSON (for display and for the workers)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CampaignSummary:
    campaign: CampaignRecord
    by_state: dict[str, int]
    by_temperature: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


@dataclass(frozen=True)
class NewEnrollment:
    """What launch stores for one prospect. JSON-able dicts keep the snapshot that drafts render."""

    prospect_key: str
    prospect_email: str
    prospect: dict[str, str]
    referrer: dict[str, Any]
    referral: dict[str, Any]  # {"strength", "context", "row"}
    other_referrals: list[dict[str, Any]]
    temperature: str
    sequence: str
    may_name_referrer: bool
    reason: str
    state: EnrollmentState
    hold_reason: str | None
    next_due_at: datetime | None


@dataclass(frozen=True)
class EnrollmentRecord:
    id: int
    campaign_id: int
    prospect_key: str
    prospect_email: str
    prospect: dict[str, str]
    referrer: dict[str, Any]
    referral: dict[str, Any]
    other_referrals: list[dict[str, Any]]
    temperature: str
    sequence: str
    may_name_referrer: bool
    reason: str
    state: EnrollmentState
    hold_reason: str | None
    steps_done: int
    next_due_at: datetime | None
    paused_until: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Suppression:
    value: str  # a casefolded address, or "@domain"
    reason: str
    source: str
    created_at: datetime


@dataclass
class Counter:
    added: int = 0
    updated: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Repository(Protocol):
    # suppression list (global, case-insensitive)
    def suppressed_values(self) -> set[str]: ...
    def add_suppression(self, value: str, reason: str, source: str, now: datetime) -> bool: ...
    def remove_suppression(self, value: str) -> bool: ...
    def list_suppressions(self) -> list[Suppression]: ...

    # campaigns
    def get_campaign(self, name: str) -> CampaignRecord | None: ...
    def save_campaign(
        self, name: str, source: str, spec_hash: str, spec: dict[str, Any], now: datetime
    ) -> tuple[CampaignRecord, bool]:
        """Insert or update by name (keeping its status). Returns (record, created)."""
        ...

    def set_campaign_status(
        self, campaign_id: int, status: CampaignStatus, now: datetime
    ) -> None: ...
    def list_campaigns(self) -> list[CampaignSummary]: ...

    # enrollments
    def enrollment_states(self, campaign_id: int) -> dict[str, EnrollmentState]:
        """prospect_key → state for every enrollment of the campaign."""
        ...

    def live_elsewhere(self, campaign_id: int | None) -> dict[str, str]:
        """prospect_key → campaign name, for live enrollments in *other* active/paused campaigns."""
        ...

    def add_enrollments(
        self,
        campaign_id: int,
        rows: Iterable[NewEnrollment],
        now: datetime,
        progress: Callable[[int], None] | None = None,
    ) -> int: ...
    def replace_held(self, campaign_id: int, row: NewEnrollment, now: datetime) -> bool:
        """Re-plan a HELD enrollment of this prospect (consent or data changed). False if not held."""
        ...

    def list_enrollments(
        self, campaign_id: int, states: Iterable[EnrollmentState] | None = None
    ) -> list[EnrollmentRecord]: ...


class UnitOfWork(Protocol):
    repo: Repository

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
