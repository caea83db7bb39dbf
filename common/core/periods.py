"""Spend periods in UTC: the day, the ISO week (from Monday) and the calendar month.

Counters are kept per UTC day; a weekly or monthly figure is the sum of the
days from the period's first day to today. `bounds()` gives the first day and
the instant the period ends (which is also when a cap on it resets).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")


def start(period: Period, day: date) -> date:
    """The first UTC day of the period that contains `day`."""
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())  # Monday
    return day.replace(day=1)


def end(period: Period, day: date) -> date:
    """The first UTC day after the period that contains `day` (exclusive end)."""
    first = start(period, day)
    if period == "daily":
        return first + timedelta(days=1)
    if period == "weekly":
        return first + timedelta(days=7)
    return date(first.year + 1, 1, 1) if first.month == 12 else date(first.year, first.month + 1, 1)


def today(now: datetime | None = None) -> date:
    moment = now or datetime.now(UTC)
    return moment.astimezone(UTC).date()


def reset_at(period: Period, day: date) -> datetime:
    """The instant (UTC midnight) the period containing `day` ends."""
    nxt = end(period, day)
    return datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC)


def reset_epoch(period: Period, day: date) -> int:
    return int(reset_at(period, day).timestamp())
