"""UTC periods: day, ISO week from Monday, calendar month; resets at the next period's midnight."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from common.core import periods

days = st.dates(min_value=date(2000, 1, 1), max_value=date(2200, 12, 31))


@given(days)
def test_every_day_lies_in_its_periods(day: date) -> None:
    for period in periods.PERIODS:
        first, after = periods.start(period, day), periods.end(period, day)
        assert first <= day < after
        assert periods.start(period, after) == after  # the next period starts where this ends
        assert periods.start(period, after - timedelta(days=1)) == first
    assert periods.start("weekly", day).weekday() == 0
    assert periods.start("monthly", day).day == 1


def test_boundaries() -> None:
    # UTC midnight
    assert periods.today(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)) == date(2026, 3, 1)
    assert periods.today(datetime(2026, 3, 2, 0, 0, 0, tzinfo=UTC)) == date(2026, 3, 2)
    # a local time before UTC midnight is already the next UTC day
    from zoneinfo import ZoneInfo

    ny = datetime(2026, 3, 1, 20, 0, tzinfo=ZoneInfo("America/New_York"))
    assert periods.today(ny) == date(2026, 3, 2)
    # Monday (2026-11-23 is a Monday)
    assert periods.start("weekly", date(2026, 11, 29)) == date(2026, 11, 23)
    assert periods.start("weekly", date(2026, 11, 30)) == date(2026, 11, 30)
    assert periods.reset_at("weekly", date(2026, 11, 29)) == datetime(2026, 11, 30, tzinfo=UTC)
    # month end, year end, leap day
    assert periods.reset_at("monthly", date(2026, 1, 31)) == datetime(2026, 2, 1, tzinfo=UTC)
    assert periods.reset_at("monthly", date(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert periods.reset_at("daily", date(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert periods.start("weekly", date(2027, 1, 1)) == date(2026, 12, 28)  # ISO week spans the year end
    assert periods.start("monthly", date(2028, 2, 29)) == date(2028, 2, 1)
    assert periods.reset_at("monthly", date(2028, 2, 29)) == datetime(2028, 3, 1, tzinfo=UTC)
    assert periods.reset_at("daily", date(2028, 2, 28)) == datetime(2028, 2, 29, tzinfo=UTC)
    assert periods.reset_epoch("daily", date(2026, 11, 24)) == 1795564800
