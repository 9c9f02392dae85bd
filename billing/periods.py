"""Monthly billing periods counted from a workspace's billing anchor."""

import calendar
from datetime import datetime


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor moved by whole months; the day is clamped to the month's length (Jan 31 → Feb 28)."""
    month_index = anchor.month - 1 + months
    year = anchor.year + month_index // 12
    month = month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def billing_period(anchor: datetime, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) of the period containing `now`; start inclusive, end exclusive."""
    months = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    start = add_months(anchor, months)
    if start > now:
        months -= 1
        start = add_months(anchor, months)
    return start, add_months(anchor, months + 1)
