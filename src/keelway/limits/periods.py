"""Budget periods: the calendar UTC day, the calendar UTC month, or all time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

Period = Literal["day", "month", "total"]
PERIODS: tuple[Period, ...] = get_args(Period)

# The start of the "total" period, so every period has a start in the ledger.
TOTAL_START = datetime(1970, 1, 1, tzinfo=UTC)


def period_start(period: Period, now: datetime) -> datetime:
    """Return the UTC start of the period that contains ``now``."""
    moment = now.astimezone(UTC)
    if period == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if period == "total":
        return TOTAL_START
    raise ValueError(f"unknown budget period {period!r}; expected one of {PERIODS}")


def period_end(period: Period, start: datetime) -> datetime | None:
    """Return the UTC end of the period that starts at ``start``; None for total."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "month":
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)
    return None


def period_label(period: Period, start: datetime) -> str:
    """Return a short name of one period: ``2025-03-14``, ``2025-03`` or ``total``."""
    if period == "day":
        return f"{start:%Y-%m-%d}"
    if period == "month":
        return f"{start:%Y-%m}"
    return "total"


def describe_period(period: Period, start: datetime) -> str:
    """Return a period as messages name it: ``day 2025-03-14`` or ``total``."""
    label = period_label(period, start)
    return label if period == "total" else f"{period} {label}"
