"""Campaign reports: the funnel, warm versus cold, and referrer attribution. Pure.

Input is plain rows (``*Fact``) read by an adapter; output is frozen values a CLI, a web page or
a chart can show. Definitions, so the figures can be checked by hand:

* **enrolled**: enrollments (any state). **sent**: enrollments with at least one sent message;
  grouped by step or template, the sent *messages* of that step/template. Only the prospect's
  sequence steps are messages here: a thank-you note to the referrer (``kind`` ``note``) is
  neither a step nor a message to the prospect, and nothing is attributed to it.
* **bounced** / **replied** / **unsubscribed**: the enrollment's state says so, or an inbound
  message matched to it is a ``hard_bounce`` / ``human_reply`` / ``unsubscribe``.
  **auto_replied**: an ``auto_reply`` was matched to it. **interested**: a human reply with intent
  ``interested``. **handed_off**: at least one handoff to the rep, dated by the reply it came
  from (so, by step, it counts against the same message as that reply).
* Rates divide by **sent** (``send_rate`` by enrolled); an empty denominator gives 0.0.
* **Time to first reply**: from the enrollment's first sent message to its first human reply
  (replies that arrived before any send are left out); the median over the group, in seconds.
* Grouped by step or template, an outcome belongs to the message it answers: the last message
  sent to that enrollment at or before the outcome (the first one if the outcome is earlier, the
  last one if it has no time, i.e. it is known only from the enrollment's state).
* **Referrer leaderboard**: an *intro* is an enrollment that named the referrer and was sent;
  replies, interested and handoffs count those intros only; conversion = handoffs / intros.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

By = Literal["temperature", "step", "referrer", "template", "campaign"]
BY_CHOICES: tuple[str, ...] = get_args(By)
TEMPERATURES = ("warm", "cold")

# Outcomes known from an enrollment's state and from the class of a matched inbound message.
_STATE_OUTCOME = {"bounced": "bounced", "replied": "replied", "unsubscribed": "unsubscribed"}
_KLASS_OUTCOME = {
    "hard_bounce": "bounced",
    "human_reply": "replied",
    "unsubscribe": "unsubscribed",
    "auto_reply": "auto_replied",
}
OUTCOMES = ("bounced", "auto_replied", "replied", "interested", "unsubscribed", "handed_off")


@dataclass(frozen=True)
class EnrollmentFact:
    enrollment_id: int
    campaign: str
    temperature: str  # warm | cold
    sequence: str
    referrer_id: str
    referrer_name: str
    named: bool  # the enrollment may name its referrer (consent and campaign policy)
    prospect_email: str
    state: str
    enrolled_at: datetime


@dataclass(frozen=True)
class SendFact:
    enrollment_id: int
    step_number: int  # 1-based
    template: str
    sent_at: datetime


@dataclass(frozen=True)
class InboundFact:
    enrollment_id: int
    klass: str  # human_reply | auto_reply | hard_bounce | soft_bounce | unsubscribe | unknown
    intent: str | None  # interested | not_interested | question | redirect | …
    received_at: datetime


@dataclass(frozen=True)
class HandoffFact:
    enrollment_id: int
    created_at: datetime
    reply_at: datetime | None = None  # when the reply it came from arrived


@dataclass(frozen=True)
class Facts:
    enrollments: Sequence[EnrollmentFact] = ()
    sends: Sequence[SendFact] = ()
    inbound: Sequence[InboundFact] = ()
    handoffs: Sequence[HandoffFact] = ()


def rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class Funnel:
    enrolled: int = 0
    sent: int = 0
    bounced: int = 0
    auto_replied: int = 0
    replied: int = 0
    interested: int = 0
    unsubscribed: int = 0
    handed_off: int = 0
    median_first_reply_seconds: float | None = None

    @property
    def send_rate(self) -> float:
        return rate(self.sent, self.enrolled)

    @property
    def bounce_rate(self) -> float:
        return rate(self.bounced, self.sent)

    @property
    def auto_reply_rate(self) -> float:
        return rate(self.auto_replied, self.sent)

    @property
    def reply_rate(self) -> float:
        return rate(self.replied, self.sent)

    @property
    def interested_rate(self) -> float:
        return rate(self.interested, self.sent)

    @property
    def unsubscribe_rate(self) -> float:
        return rate(self.unsubscribed, self.sent)

    @property
    def handoff_rate(self) -> float:
        return rate(self.handed_off, self.sent)

    def counts(self) -> dict[str, int]:
        return {
            "enrolled": self.enrolled,
            "sent": self.sent,
            "bounced": self.bounced,
            "auto_replied": self.auto_replied,
            "replied": self.replied,
            "interested": self.interested,
            "unsubscribed": self.unsubscribed,
            "handed_off": self.handed_off,
        }

    def rates(self) -> dict[str, float]:
        return {
            "send_rate": self.send_rate,
            "bounce_rate": self.bounce_rate,
            "auto_reply_rate": self.auto_reply_rate,
            "reply_rate": self.reply_rate,
            "interested_rate": self.interested_rate,
            "unsubscribe_rate": self.unsubscribe_rate,
            "handoff_rate": self.handoff_rate,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.counts(),
            **self.rates(),
            "median_first_reply_seconds": self.median_first_reply_seconds,
        }


COUNT_COLUMNS: tuple[str, ...] = tuple(Funnel().counts())
RATE_COLUMNS: tuple[str, ...] = tuple(Funnel().rates())


@dataclass(frozen=True)
class FunnelRow:
    """One group's funnel, overall and split warm versus cold."""

    group: str
    label: str  # what a person reads: the referrer's name, "step 2", the template, …
    all: Funnel
    warm: Funnel
    cold: Funnel

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "label": self.label,
            "all": self.all.as_dict(),
            "warm": self.warm.as_dict(),
            "cold": self.cold.as_dict(),
        }


@dataclass(frozen=True)
class ReferrerRow:
    referrer_id: str
    referrer_name: str
    enrolled: int  # enrollments on this referrer's path, named or not, sent or not
    intros: int  # named and sent
    replies: int
    interested: int
    handoffs: int

    @property
    def conversion_rate(self) -> float:
        return rate(self.handoffs, self.intros)

    def as_dict(self) -> dict[str, Any]:
        return {
            "referrer_id": self.referrer_id,
            "referrer_name": self.referrer_name,
            "enrolled": self.enrolled,
            "intros": self.intros,
            "replies": self.replies,
            "interested": self.interested,
            "handoffs": self.handoffs,
            "conversion_rate": self.conversion_rate,
        }


@dataclass(frozen=True)
class EdgeRow:
    """One referral edge (referrer → prospect) that was enrolled, and what came of it."""

    referrer_id: str
    referrer_name: str
    prospect_email: str
    campaign: str
    temperature: str
    named: bool
    state: str
    messages_sent: int
    first_sent_at: datetime | None
    replied: bool
    intent: str | None  # of the first human reply
    handed_off: bool
    # the strongest of: handed_off, interested, replied, bounced, unsubscribed, auto_replied;
    # else sent or not_sent
    outcome: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "referrer_id": self.referrer_id,
            "referrer_name": self.referrer_name,
            "prospect_email": self.prospect_email,
            "campaign": self.campaign,
            "temperature": self.temperature,
            "named": self.named,
            "state": self.state,
            "messages_sent": self.messages_sent,
            "first_sent_at": None if self.first_sent_at is None else self.first_sent_at.isoformat(),
            "replied": self.replied,
            "intent": self.intent,
            "handed_off": self.handed_off,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class Report:
    campaign: str | None  # None: every campaign
    by: str
    total: FunnelRow
    rows: tuple[FunnelRow, ...]
    referrers: tuple[ReferrerRow, ...]
    edges: tuple[EdgeRow, ...] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "by": self.by,
            "total": self.total.as_dict(),
            "rows": [r.as_dict() for r in self.rows],
            "referrers": [r.as_dict() for r in self.referrers],
            "edges": [e.as_dict() for e in self.edges],
        }


# -- per-enrollment digest ------------------------------------------------------------------


@dataclass(slots=True)
class _Track:
    """Everything that happened to one enrollment, folded from the facts."""

    fact: EnrollmentFact
    sends: list[SendFact] = field(default_factory=list)
    # outcome → earliest time it is known (None: known only from the state)
    outcomes: dict[str, datetime | None] = field(default_factory=dict)
    first_reply: InboundFact | None = None

    def note(self, outcome: str, at: datetime | None) -> None:
        if outcome not in self.outcomes:
            self.outcomes[outcome] = at
            return
        known = self.outcomes[outcome]
        if at is not None and (known is None or at < known):
            self.outcomes[outcome] = at

    @property
    def first_sent_at(self) -> datetime | None:
        return self.sends[0].sent_at if self.sends else None

    def first_reply_seconds(self) -> float | None:
        first = self.first_sent_at
        reply = self.first_reply
        if first is None or reply is None or reply.received_at < first:
            return None
        return (reply.received_at - first).total_seconds()

    def send_for(self, at: datetime | None) -> SendFact | None:
        """The message an outcome at ``at`` answers (see the module docstring)."""
        if not self.sends:
            return None
        if at is None:
            return self.sends[-1]
        times = [s.sent_at for s in self.sends]
        i = bisect.bisect_right(times, at)
        return self.sends[max(i - 1, 0)]


def _tracks(facts: Facts) -> dict[int, _Track]:
    tracks = {e.enrollment_id: _Track(e) for e in facts.enrollments}
    for s in facts.sends:
        t = tracks.get(s.enrollment_id)
        if t is not None:
            t.sends.append(s)
    for t in tracks.values():
        t.sends.sort(key=lambda s: (s.sent_at, s.step_number))
        outcome = _STATE_OUTCOME.get(t.fact.state)
        if outcome is not None:
            t.note(outcome, None)
    for m in sorted(facts.inbound, key=lambda m: m.received_at):
        t = tracks.get(m.enrollment_id)
        if t is None:
            continue
        outcome = _KLASS_OUTCOME.get(m.klass)
        if outcome is None:
            continue
        t.note(outcome, m.received_at)
        if m.klass == "human_reply":
            if t.first_reply is None:
                t.first_reply = m
            if m.intent == "interested":
                t.note("interested", m.received_at)
    for h in facts.handoffs:
        t = tracks.get(h.enrollment_id)
        if t is not None:
            t.note("handed_off", h.reply_at or h.created_at)
    return tracks


# -- funnels ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    enrolled: set[int] = field(default_factory=set)
    sent: int = 0
    outcomes: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    reply_seconds: dict[int, float] = field(default_factory=dict)

    def funnel(self) -> Funnel:
        seconds = list(self.reply_seconds.values())
        return Funnel(
            enrolled=len(self.enrolled),
            sent=self.sent,
            median_first_reply_seconds=float(statistics.median(seconds)) if seconds else None,
            **{o: len(self.outcomes[o]) for o in OUTCOMES},
        )


class _Grouped:
    """Tallies per (group, temperature), ``"*"`` standing for every temperature."""

    def __init__(self) -> None:
        self.tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
        self.labels: dict[str, str] = {}
        self._pairs: dict[tuple[str, str], tuple[_Tally, _Tally]] = {}

    def _each(self, group: str, temperature: str) -> tuple[_Tally, _Tally]:
        pair = self._pairs.get((group, temperature))
        if pair is None:
            pair = (self.tallies[(group, "*")], self.tallies[(group, temperature)])
            self._pairs[(group, temperature)] = pair
        return pair

    def count(
        self,
        group: str,
        t: _Track,
        sent: int = 0,
        outcomes: Iterable[str] = (),
        seconds: float | None = None,
    ) -> None:
        """Count ``t`` as enrolled in ``group`` (once), with these sends, outcomes, reply time."""
        eid = t.fact.enrollment_id
        for tally in self._each(group, t.fact.temperature):
            tally.enrolled.add(eid)
            tally.sent += sent
            for outcome in outcomes:
                tally.outcomes[outcome].add(eid)
            if seconds is not None:
                tally.reply_seconds[eid] = seconds

    def row(self, group: str) -> FunnelRow:
        return FunnelRow(
            group=group,
            label=self.labels.get(group, group),
            all=self.tallies[(group, "*")].funnel(),
            warm=self.tallies[(group, "warm")].funnel(),
            cold=self.tallies[(group, "cold")].funnel(),
        )

    def groups(self) -> set[str]:
        return {g for g, _ in self.tallies}


def _by_enrollment(
    tracks: Iterable[_Track], key: Callable[[EnrollmentFact], str], total: _Grouped | None = None
) -> _Grouped:
    """Tally each enrollment under ``key`` (and under "all" in ``total``, in the same pass)."""
    grouped = _Grouped()
    for t in tracks:
        sent = 1 if t.sends else 0
        seconds = t.first_reply_seconds()
        grouped.count(key(t.fact), t, sent, t.outcomes, seconds)
        if total is not None:
            total.count("all", t, sent, t.outcomes, seconds)
    return grouped


def _by_message(tracks: Iterable[_Track], key: Callable[[SendFact], str]) -> _Grouped:
    grouped = _Grouped()
    for t in tracks:
        for s in t.sends:
            grouped.count(key(s), t, sent=1)
        for outcome, at in t.outcomes.items():
            answered = t.send_for(at)
            if answered is not None:
                grouped.count(key(answered), t, outcomes=(outcome,))
        seconds = t.first_reply_seconds()
        if seconds is not None and t.first_reply is not None:
            answered = t.send_for(t.first_reply.received_at)
            if answered is not None:
                grouped.count(key(answered), t, seconds=seconds)
    return grouped


def _grouped(tracks: list[_Track], by: str) -> tuple[_Grouped, _Grouped]:
    """(the groups, the total) in as few passes as the grouping allows."""
    total = _Grouped()
    if by == "temperature":
        return _by_enrollment(tracks, lambda e: e.temperature, total), total
    if by == "campaign":
        return _by_enrollment(tracks, lambda e: e.campaign, total), total
    if by == "referrer":
        grouped = _by_enrollment(tracks, lambda e: e.referrer_id, total)
        grouped.labels = {t.fact.referrer_id: t.fact.referrer_name for t in tracks}
        return grouped, total
    # per message: the total still counts enrollments
    if by == "step":
        grouped = _by_message(tracks, lambda s: str(s.step_number))
        grouped.labels = {g: f"step {g}" for g in grouped.groups()}
    elif by == "template":
        grouped = _by_message(tracks, lambda s: s.template)
    else:
        raise ValueError(f"cannot group by {by!r}: choose one of {', '.join(BY_CHOICES)}")
    return grouped, _by_enrollment(tracks, lambda e: "all")


def _order(by: str, groups: set[str]) -> list[str]:
    if by == "temperature":
        known = [t for t in TEMPERATURES if t in groups]
        return known + sorted(groups - set(TEMPERATURES))
    if by == "step":
        return sorted(groups, key=int)
    return sorted(groups)


# -- referrers and edges ----------------------------------------------------------------------


def _leaderboard(tracks: Iterable[_Track]) -> tuple[ReferrerRow, ...]:
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    names: dict[str, str] = {}
    for t in tracks:
        f = t.fact
        names.setdefault(f.referrer_id, f.referrer_name)
        r = rows[f.referrer_id]
        r["enrolled"] += 1
        if not (f.named and t.sends):
            continue
        r["intros"] += 1
        r["replies"] += "replied" in t.outcomes
        r["interested"] += "interested" in t.outcomes
        r["handoffs"] += "handed_off" in t.outcomes
    out = [
        ReferrerRow(
            referrer_id=rid,
            referrer_name=names[rid],
            enrolled=r["enrolled"],
            intros=r["intros"],
            replies=r["replies"],
            interested=r["interested"],
            handoffs=r["handoffs"],
        )
        for rid, r in rows.items()
    ]
    out.sort(key=lambda r: (-r.handoffs, -r.replies, -r.intros, r.referrer_name, r.referrer_id))
    return tuple(out)


# The single word for an edge, strongest first.
_EDGE_OUTCOMES = ("handed_off", "interested", "replied", "bounced", "unsubscribed", "auto_replied")


def _edge(t: _Track) -> EdgeRow:
    f = t.fact
    outcome = "sent" if t.sends else "not_sent"
    for strongest in _EDGE_OUTCOMES:
        if strongest in t.outcomes:
            outcome = strongest
            break
    return EdgeRow(
        referrer_id=f.referrer_id,
        referrer_name=f.referrer_name,
        prospect_email=f.prospect_email,
        campaign=f.campaign,
        temperature=f.temperature,
        named=f.named,
        state=f.state,
        messages_sent=len(t.sends),
        first_sent_at=t.first_sent_at,
        replied="replied" in t.outcomes,
        intent=t.first_reply.intent if t.first_reply else None,
        handed_off="handed_off" in t.outcomes,
        outcome=outcome,
    )


def build_report(facts: Facts, by: str = "temperature", campaign: str | None = None) -> Report:
    if by not in BY_CHOICES:
        raise ValueError(f"cannot group by {by!r}: choose one of {', '.join(BY_CHOICES)}")
    tracks = list(_tracks(facts).values())
    grouped, total = _grouped(tracks, by)
    edges = sorted(
        (_edge(t) for t in tracks),
        key=lambda e: (e.referrer_id, e.prospect_email.casefold(), e.campaign),
    )
    return Report(
        campaign=campaign,
        by=by,
        total=total.row("all"),
        rows=tuple(grouped.row(g) for g in _order(by, grouped.groups())),
        referrers=_leaderboard(tracks),
        edges=tuple(edges),
    )


def pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def duration(seconds: float | None) -> str:
    """``93784`` → ``1d 2h 3m``; None → an empty cell."""
    if seconds is None:
        return ""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" + (f" {mins}m" if mins else "")
    if hours:
        return f"{hours}h" + (f" {mins}m" if mins else "")
    return f"{mins}m"
