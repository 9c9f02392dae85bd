"""When a silence rule next expects an event, and so when it fires if none comes."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim


def next_expected(rule, after: datetime) -> datetime:
    """The first time after `after` an event is expected: N minutes later, or the cron's next run."""
    if rule.schedule:
        zone = ZoneInfo(rule.tz or "UTC")
        return next(CronSim(rule.schedule, after.astimezone(zone)))
    return after + timedelta(minutes=rule.every_minutes or 0)


def silence_deadline(rule, after: datetime) -> datetime:
    """The moment a silence rule fires if no matching event arrives after `after`."""
    return next_expected(rule, after) + timedelta(minutes=rule.grace_minutes or 0)
