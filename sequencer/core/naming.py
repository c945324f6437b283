"""May this referrer be named to this prospect *now*? Pure: the caller loads the ledger.

Three things decide it, whatever the enrollment's snapshot says:

* the **consent ledger**: every grant or revocation (``refseq consent``, a re-launch whose
  ``referrers.csv`` changed, …), referrer-wide or for one prospect; the latest change that
  applies wins, and the CSV's value counts only until the ledger has an entry;
* a **flag**: a prospect said they do not know the referrer; until a person clears it the
  referrer is named to nobody, in any campaign;
* the referrer's **NPS**: a detractor is never named. A detractor scores below the campaign's
  ``min_nps`` or, when the campaign sets none, 6 or less (the NPS scale's detractors, 0-6).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sequencer.core.model import NamePolicy, TemperatureRule

DETRACTOR_MAX = 6  # NPS 0-6: detractors; 7-8 passives; 9-10 promoters


class Via(StrEnum):
    """Where a consent change came from (the audit's "via what")."""

    CLI = "cli"
    LAUNCH = "launch"  # referrers.csv changed at a (re-)launch
    WEB = "web"


class FlagState(StrEnum):
    OPEN = "open"  # nobody has looked yet: the referrer is not named
    CONFIRMED = "confirmed"  # a person checked: the prospect is right; still not named
    CLEARED = "cleared"  # a person checked: the data is right; naming may resume


BLOCKING_FLAG_STATES = frozenset({FlagState.OPEN, FlagState.CONFIRMED})


@dataclass(frozen=True)
class ConsentChange:
    """One row of the ledger. ``prospect_key`` None: the change covers every prospect."""

    referrer_id: str
    prospect_key: str | None
    granted: bool
    actor: str
    via: Via
    at: datetime
    note: str = ""
    id: int = 0


@dataclass(frozen=True)
class FlagRecord:
    id: int
    campaign_id: int
    referrer_id: str
    prospect_email: str
    reason: str
    created_at: datetime
    state: FlagState
    resolved_by: str | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class ReferrerEntry:
    """A referrer as the enrollments (and the ledger) know them, for the consent page."""

    referrer_id: str
    name: str  # in the newest enrollment on them ("" when only the ledger knows them)
    csv_consent: bool  # referrers.csv's consent column in that enrollment's snapshot
    live: int  # held, active or paused enrollments that may name them
    held: int  # of which held


@dataclass(frozen=True)
class NamingGate:
    """The ledger entries and blocking flags of the referrers concerned, oldest change first."""

    ledger: tuple[ConsentChange, ...] = ()
    flagged: frozenset[str] = field(default_factory=frozenset)
    # referrer id -> its changes, oldest first: a plan of 100k prospects asks per path
    _index: dict[str, list[ConsentChange]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for c in self.ledger:
            self._index.setdefault(c.referrer_id, []).append(c)

    def with_changes(self, changes: Iterable[ConsentChange]) -> NamingGate:
        return NamingGate((*self.ledger, *changes), self.flagged)

    def latest(self, referrer_id: str, prospect_key: str | None) -> ConsentChange | None:
        """The newest change that applies to naming ``referrer_id`` to ``prospect_key``."""
        for c in reversed(self._index.get(referrer_id, ())):
            if c.prospect_key is None or c.prospect_key == prospect_key:
                return c
        return None

    def consents(self, referrer_id: str, prospect_key: str | None, csv_consent: bool) -> bool:
        change = self.latest(referrer_id, prospect_key)
        return csv_consent if change is None else change.granted

    def block(
        self,
        referrer_id: str,
        nps: int | None,
        csv_consent: bool,
        prospect_key: str | None,
        rule: TemperatureRule,
        name: str = "",
    ) -> str | None:
        """Why the referrer may not be named to this prospect now, or None when they may."""
        who = f"{name} ({referrer_id})" if name else referrer_id
        if rule.name_referrer is NamePolicy.NEVER:
            return "the campaign never names referrers"
        if referrer_id in self.flagged:
            return f"referrer {who} is flagged: a prospect said they do not know them"
        if is_detractor(nps, rule):
            return f"referrer {who} is a detractor (NPS {nps} < {detractor_bar(rule)})"
        if rule.name_referrer is NamePolicy.ALWAYS:
            return None
        if not self.consents(referrer_id, prospect_key, csv_consent):
            change = self.latest(referrer_id, prospect_key)
            if change is None or change.via is Via.LAUNCH:
                return f"referrer {who} has not consented to be named (referrers.csv)"
            return (
                f"referrer {who} revoked consent (by {change.actor} via {change.via.value}, "
                f"{change.at:%Y-%m-%d %H:%M} UTC)"
            )
        return None


def detractor_bar(rule: TemperatureRule) -> int:
    """The lowest NPS that is not a detractor."""
    return rule.min_nps if rule.min_nps is not None else DETRACTOR_MAX + 1


def is_detractor(nps: int | None, rule: TemperatureRule) -> bool:
    return nps is not None and nps < detractor_bar(rule)


def snapshot_nps(referrer: dict[str, object]) -> int | None:
    value = referrer.get("nps")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
