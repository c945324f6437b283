"""Send windows in the recipient's local time. Pure date math; ``now`` is always passed in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sequencer.core.model import ScheduleSpec, SendWindow

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def send_zone(schedule: ScheduleSpec, prospect_tz: str, rep_tz: str) -> ZoneInfo:
    """The zone a step's window is read in: the prospect's, falling back to the rep's."""
    if schedule.timezone == "rep":
        return ZoneInfo(rep_tz)
    if schedule.timezone == "prospect":
        return ZoneInfo(prospect_tz or rep_tz)
    return ZoneInfo(schedule.timezone)


def _window_bounds(day: date, window: SendWindow, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, window.start, tzinfo=zone)
    end_day = day + timedelta(days=1) if window.end <= window.start else day
    end = datetime.combine(end_day, window.end, tzinfo=zone)
    # Round-trip through UTC so a wall time that falls in a DST gap lands on a real instant.
    return start.astimezone(UTC), end.astimezone(UTC)


def next_slot(now: datetime, schedule: ScheduleSpec, zone: ZoneInfo) -> datetime:
    """The earliest instant at or after ``now`` inside the send window (UTC).

    A window whose end is before its start spans midnight; its weekday is the day it opens.
    Holidays are local dates on which no window opens.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    window = schedule.window
    local_today = now.astimezone(zone).date()
    # Start a day early so an overnight window that opened yesterday is still considered.
    for offset in range(-1, 15):
        day = local_today + timedelta(days=offset)
        if day.weekday() not in window.days or day in schedule.holidays:
            continue
        start, end = _window_bounds(day, window, zone)
        if now < end:
            return max(now, start).astimezone(UTC)
    raise ValueError("the send window never opens in the next two weeks")


def add_business_days(
    moment: datetime, days: int, zone: ZoneInfo, holidays: tuple[date, ...]
) -> datetime:
    """``moment`` moved forward by ``days`` local business days (Mon-Fri, not holidays)."""
    local = moment.astimezone(zone)
    day = local.date()
    left = days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            left -= 1
    wall: time = local.time().replace(tzinfo=None)
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)
