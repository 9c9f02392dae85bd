"""Argument helpers shared by the key commands: every bad input is one CommandError line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.management.base import CommandError
from django.utils import timezone

from sources.models import Source


def source_by_id(public_id: str) -> Source:
    source = Source.objects.select_related("workspace").filter(public_id=public_id).first()
    if source is None:
        raise CommandError(f"unknown source {public_id!r} (expected an app_… id)")
    return source


def future_datetime(value: str, option: str) -> datetime:
    """An ISO 8601 instant in the future; one without an offset is taken as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"{option} must be an ISO 8601 date-time such as 2026-12-31T23:59:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment <= timezone.now():
        raise CommandError(f"{option} must be in the future, got {value!r}")
    return moment


def grace_period(value: str | None) -> timedelta | None:
    """`--grace-hours N` (N ≥ 0, decimals allowed) as a timedelta; 0 or absent: immediate."""
    if value is None:
        return None
    try:
        hours = float(value)
    except ValueError:
        hours = -1.0
    if not (0 <= hours <= 24 * 365):
        raise CommandError(f"--grace-hours must be a number of hours from 0 to 8760, got {value!r}")
    return timedelta(hours=hours) if hours else None
