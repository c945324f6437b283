from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from sequencer.core.model import ScheduleSpec, SendWindow
from sequencer.core.schedule import add_business_days, next_slot, send_zone

WEEKDAYS = (0, 1, 2, 3, 4)
NY = ZoneInfo("America/New_York")


def sched(start="09:00", end="17:00", days=WEEKDAYS, holidays=(), tz="prospect"):
    return ScheduleSpec(
        tz, SendWindow(days, time.fromisoformat(start), time.fromisoformat(end)), holidays
    )


def utc(*a):
    return datetime(*a, tzinfo=UTC)


def test_it_sends_now_when_inside_the_window():
    now = utc(2026, 11, 23, 15, 0)  # Mon 10:00 in New York
    assert next_slot(now, sched(), NY) == now


def test_it_waits_for_the_window_to_open():
    now = utc(2026, 11, 23, 12, 0)  # Mon 07:00 in New York
    assert next_slot(now, sched(), NY) == utc(2026, 11, 23, 14, 0)


def test_it_skips_weekends_and_holidays():
    friday_evening = utc(2026, 12, 18, 23, 0)  # Fri 18:00 New York
    assert next_slot(friday_evening, sched(), NY) == utc(2026, 12, 21, 14, 0)
    hol = sched(holidays=(date(2026, 12, 21),))
    assert next_slot(friday_evening, hol, NY) == utc(2026, 12, 22, 14, 0)


def test_it_reads_the_window_in_the_prospects_far_zone():
    tokyo = ZoneInfo("Asia/Tokyo")
    now = utc(2026, 11, 23, 20, 0)  # Tue 05:00 in Tokyo
    assert next_slot(now, sched(), tokyo) == utc(2026, 11, 24, 0, 0)


def test_it_handles_a_window_that_spans_midnight():
    night = sched("22:00", "02:00", days=(0,))  # opens Monday 22:00, closes Tuesday 02:00
    tue_0100_ny = utc(2026, 11, 24, 6, 0)
    assert next_slot(tue_0100_ny, night, NY) == tue_0100_ny
    tue_0300_ny = utc(2026, 11, 24, 8, 0)
    assert next_slot(tue_0300_ny, night, NY) == utc(2026, 12, 1, 3, 0)


def test_it_keeps_local_hours_across_dst():
    # New York leaves DST on 2026-11-01: 09:00 local is 13:00 UTC before, 14:00 UTC after.
    assert next_slot(utc(2026, 10, 30, 2, 0), sched(), NY) == utc(2026, 10, 30, 13, 0)
    assert next_slot(utc(2026, 11, 2, 2, 0), sched(), NY) == utc(2026, 11, 2, 14, 0)


def test_it_falls_back_to_the_reps_zone():
    assert send_zone(sched(), "", "Europe/Paris").key == "Europe/Paris"
    assert send_zone(sched(), "Asia/Tokyo", "Europe/Paris").key == "Asia/Tokyo"
    assert send_zone(sched(tz="rep"), "Asia/Tokyo", "Europe/Paris").key == "Europe/Paris"
    assert send_zone(sched(tz="UTC"), "Asia/Tokyo", "Europe/Paris").key == "UTC"


def test_it_refuses_naive_now():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_slot(datetime(2026, 1, 1), sched(), NY)


def test_it_counts_business_days_over_weekends_and_holidays():
    thu = utc(2026, 12, 17, 15, 0)
    assert add_business_days(thu, 3, NY, ()) == utc(2026, 12, 22, 15, 0)
    assert add_business_days(thu, 3, NY, (date(2026, 12, 21),)) == utc(2026, 12, 23, 15, 0)
