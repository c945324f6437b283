"""When a step is due, and whether a mailbox may send now. Pure date math; ``now`` passed in."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sequencer.core.model import CampaignSpec, Delay, DelayUnit, ScheduleSpec
from sequencer.core.schedule import add_business_days, next_slot

# Jitter on min_gap: up to 20 % of the gap (at least 5 s, at most 5 min), so the sends from a
# mailbox do not tick like a metronome.
JITTER_SHARE = 0.2


def after(
    moment: datetime, delay: Delay, zone: ZoneInfo, holidays: tuple[date, ...] = ()
) -> datetime:
    """``moment`` moved on by a step's ``after:`` delay."""
    if delay.unit is DelayUnit.HOURS:
        return moment + timedelta(hours=delay.amount)
    if delay.unit is DelayUnit.DAYS:
        # Calendar days keep the local wall-clock time across a DST change.
        local = moment.astimezone(zone)
        return (
            (local.replace(tzinfo=None) + timedelta(days=delay.amount))
            .replace(tzinfo=zone)
            .astimezone(moment.tzinfo)
        )
    return add_business_days(moment, delay.amount, zone, holidays)


def next_step_due(
    spec: CampaignSpec, sequence: str, done: int, sent_at: datetime, zone: ZoneInfo
) -> datetime | None:
    """When step ``done`` (0-based, the one after the step just sent) is due, or None when the
    sequence is finished. Counted from the previous step's *actual* send time, then moved to
    the next open slot of the send window in the recipient's zone."""
    steps = spec.sequences.get(sequence, ())
    if done >= len(steps):
        return None
    delay = steps[done].after
    base = sent_at if delay is None else after(sent_at, delay, zone, spec.schedule.holidays)
    return next_slot(base, spec.schedule, zone)


def in_window(now: datetime, schedule: ScheduleSpec, zone: ZoneInfo) -> tuple[bool, datetime]:
    """Whether ``now`` is inside the send window, and the next slot (== now when inside)."""
    slot = next_slot(now, schedule, zone)
    return slot == now, slot


@dataclass(frozen=True)
class MailboxGate:
    """Whether a mailbox may send at ``now``; ``reason`` says why not (for `refseq status`)."""

    open: bool
    reason: str
    retry_at: datetime | None


def mailbox_gate(
    now: datetime,
    next_send_at: datetime | None,
    sent_last_24h: int,
    daily_cap: int,
    oldest_in_window: datetime | None,
) -> MailboxGate:
    if sent_last_24h >= daily_cap:
        retry = oldest_in_window + timedelta(hours=24) if oldest_in_window else None
        return MailboxGate(False, f"daily cap reached ({sent_last_24h}/{daily_cap} in 24 h)", retry)
    if next_send_at is not None and now < next_send_at:
        return MailboxGate(False, "waiting for min_gap", next_send_at)
    return MailboxGate(True, "", None)


def gap_with_jitter(min_gap_seconds: int, rng: random.Random) -> timedelta:
    if min_gap_seconds <= 0:
        return timedelta(0)  # no gap asked for: no jitter either
    spread = min(300.0, max(5.0, min_gap_seconds * JITTER_SHARE))
    return timedelta(seconds=min_gap_seconds + rng.uniform(0, spread))


def retry_backoff(attempts: int, base_seconds: int = 60, cap_seconds: int = 3600) -> timedelta:
    """Exponential backoff between send attempts of one draft: 1 min, 2, 4 … capped at 1 h."""
    return timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1)))
