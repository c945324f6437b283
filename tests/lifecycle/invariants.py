"""The lifecycle invariants that read the database (the send-time ones live in the model).

Each check returns ``(invariant name, what is wrong)`` pairs; an empty list means it holds.
The names are the keys of ``KNOWN_DEFECTS`` in ``test_lifecycle.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from sequencer.adapters.db.report_queries import load_facts
from sequencer.core.ports import UnitOfWork
from sequencer.services.reporting import report
from tests.lifecycle.world import CAMPAIGN

Violation = tuple[str, str]
LIVE = ("active", "paused", "held")


BLOCKING = ("open", "confirmed")  # flag states that keep a referrer unnamed


@dataclass
class Flag:
    """A prospect said they do not know ``referrer``; ``id``: the flag `refseq flags` lists
    for it (None if it listed none), ``state``: what a person made of it since."""

    referrer: str
    prospect: str
    id: int | None
    state: str = "open"


@dataclass
class Model:
    """What the people in the story did, and when, as this test saw it (never read back).

    Consent is a ledger: ``(referrer, prospect or None for all, granted)`` in the order the
    changes were made (referrers.csv at a launch, `refseq consent`, the consent page). The
    latest change that applies to a prospect wins: one for that prospect or for everyone."""

    csv: dict[str, bool]  # the consent column of referrers.csv as it is on disk
    ledger: list[tuple[str, str | None, bool]] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    optout: dict[str, str] = field(default_factory=dict)  # address -> channel
    bounced: set[str] = field(default_factory=set)
    replied: set[str] = field(default_factory=set)
    inbound: dict[str, str] = field(default_factory=dict)  # Message-ID -> what it was
    message_ids: set[str] = field(default_factory=set)  # of what refseq sent

    def consents(self, referrer: str, prospect: str) -> bool:
        """May ``referrer`` be named to ``prospect`` now, as far as consent goes?"""
        for rid, whom, granted in reversed(self.ledger):
            if rid == referrer and whom in (None, prospect):
                return granted
        return self.csv[referrer]  # no change recorded yet: referrers.csv says

    def flagged(self, referrer: str) -> bool:
        return any(f.referrer == referrer and f.state in BLOCKING for f in self.flags)


def enrollments_of_optouts(c: Connection, m: Model) -> list[Violation]:
    """Every opted-out address: no live enrollment, and on the suppression list."""
    out: list[Violation] = []
    if not m.optout:
        return out
    states = {
        str(k): str(v) for k, v in c.execute(text("SELECT prospect_key, state FROM enrollments"))
    }
    suppressed = {v for (v,) in c.execute(text("SELECT value FROM suppressions"))}
    for address, channel in sorted(m.optout.items()):
        if states.get(address) in LIVE:
            out.append(
                (
                    f"optout_stops_enrollment/{channel}",
                    f"{address} opted out ({channel}) but its enrollment is {states[address]}",
                )
            )
        if address not in suppressed:
            out.append(
                (
                    f"optout_suppresses/{channel}",
                    f"{address} opted out ({channel}) but is not on the suppression list",
                )
            )
    return out


def _per_enrollment(c: Connection, sql: str) -> set[int]:
    return {row[0] for row in c.execute(text(sql), {"campaign": CAMPAIGN})}


def report_matches_raw(
    c: Connection, uow_factory: Callable[[], UnitOfWork], sent_to: Iterable[str]
) -> list[Violation]:
    """``refseq report``'s funnel equals the same figures counted here from the raw rows (the
    drafts' sent_at, inbound messages matched to an enrollment, enrollments' states, handoffs)
    and from the raw log of what was handed to the SMTP peer."""
    ours = "SELECT e.id FROM enrollments e JOIN campaigns c ON c.id = e.campaign_id"
    where = " WHERE c.name = :campaign"

    def outcome(state: str, klass: str) -> set[int]:
        return _per_enrollment(c, f"{ours}{where} AND e.state = '{state}'") | _per_enrollment(
            c,
            f"{ours} JOIN inbound_messages i ON i.enrollment_id = e.id{where}"
            f" AND i.klass = '{klass}'",
        )

    sent = _per_enrollment(
        c, f"{ours} JOIN drafts d ON d.enrollment_id = e.id{where} AND d.sent_at IS NOT NULL"
    )
    keys = {k for (k,) in c.execute(text("SELECT prospect_key FROM enrollments"))}
    expected = {
        "enrolled": len(_per_enrollment(c, ours + where)),
        "sent": len(sent),
        "bounced": len(outcome("bounced", "hard_bounce")),
        "auto_replied": len(
            _per_enrollment(
                c,
                f"{ours} JOIN inbound_messages i ON i.enrollment_id = e.id{where}"
                " AND i.klass = 'auto_reply'",
            )
        ),
        "replied": len(outcome("replied", "human_reply")),
        "unsubscribed": len(outcome("unsubscribed", "unsubscribe")),
        "handed_off": len(
            _per_enrollment(c, f"{ours} JOIN handoffs h ON h.enrollment_id = e.id{where}")
        ),
    }
    out: list[Violation] = []
    wire = {a.casefold() for a in sent_to if a.casefold() in keys}
    if len(wire) != expected["sent"]:
        out.append(
            (
                "report_matches_raw_log",
                f"{len(wire)} prospects received mail but {expected['sent']} enrollments have "
                "a sent draft",
            )
        )
    got = report(uow_factory, CAMPAIGN, "temperature", load_facts).total.all.counts()
    for name, value in expected.items():
        if got.get(name) != value:
            out.append(
                ("report_matches_raw_log", f"report {name} = {got.get(name)}, raw log = {value}")
            )
    return out


def inbound_accounted(c: Connection, m: Model, visible: Callable[[], set[int]]) -> list[Violation]:
    """Every message that reached the rep's mailbox is stored, and either handled (matched to
    an enrollment and acted on) or listed by ``refseq inbox --unhandled`` for a person."""
    out: list[Violation] = []
    rows = {
        str(mid): (i, status, enrollment, klass)
        for i, mid, status, enrollment, klass in c.execute(
            text("SELECT id, message_id, status, enrollment_id, klass FROM inbound_messages")
        )
    }
    waiting: list[tuple[int, str, str]] = []
    for mid, what in sorted(m.inbound.items()):
        row = rows.get(mid)
        if row is None:
            out.append(("inbound_acted_on_or_visible", f"{what} {mid} was never stored"))
            continue
        i, status, enrollment, klass = row
        if status == "handled" and enrollment is not None:
            continue
        waiting.append((i, what, f"status {status}, class {klass}"))
    if waiting:
        shown = visible()
        out += [
            (
                "inbound_acted_on_or_visible",
                f"{what} (inbound #{i}, {why}) is neither acted on "
                "nor listed by `refseq inbox --unhandled`",
            )
            for i, what, why in waiting
            if i not in shown
        ]
    return out
