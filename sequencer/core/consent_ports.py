"""What the consent ledger and the referrer flags need from storage (see ``core.naming``)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Protocol

from sequencer.core.naming import ConsentChange, FlagRecord, FlagState, ReferrerEntry
from sequencer.core.ports import EnrollmentRecord


class ConsentRepository(Protocol):
    def add_consent_change(self, change: ConsentChange) -> None: ...
    def add_consent_changes(self, changes: list[ConsentChange]) -> None: ...
    def consent_changes(
        self, referrer_ids: Collection[str] | None = None, limit: int | None = None
    ) -> list[ConsentChange]:
        """Oldest first; ``referrer_ids`` None: every referrer; ``limit``: the newest ones."""
        ...

    def flagged_referrers(self, referrer_ids: Collection[str] | None = None) -> set[str]:
        """The referrers with an open or confirmed flag (among ``referrer_ids``)."""
        ...

    def referrer_flags(self, states: Iterable[FlagState] | None = None) -> list[FlagRecord]: ...
    def resolve_flags(
        self, flag_ids: Collection[int], state: FlagState, by: str, now: datetime
    ) -> int: ...
    def live_naming(self, referrer_id: str, prospect_key: str | None) -> list[EnrollmentRecord]:
        """Held, active or paused enrollments, in every campaign, that name ``referrer_id``
        (to ``prospect_key`` only, when given)."""
        ...

    def live_naming_many(self, referrer_ids: Collection[str]) -> list[EnrollmentRecord]:
        """``live_naming`` (every prospect) for many referrers at once."""
        ...

    def referrer_known(self, referrer_id: str) -> bool:
        """Some enrollment was ever planned on this referrer, or the ledger names them."""
        ...

    def started_held(self, campaign_id: int) -> set[str]:
        """Prospect keys of the campaign's held enrollments that already drafted a step."""
        ...

    def naming_state(
        self, referrer_id: str, prospect_key: str | None
    ) -> tuple[ConsentChange | None, bool]:
        """The newest ledger change that applies to naming the referrer to this prospect, and
        whether an open or confirmed flag blocks the referrer."""
        ...

    def referrer_directory(self, contains: str | None, limit: int) -> list[ReferrerEntry]:
        """Referrers by id (at most ``limit``): every one some enrollment or the ledger
        names, whose id or name contains ``contains`` (any case) when given."""
        ...
