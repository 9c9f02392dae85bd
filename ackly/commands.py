"""What the management commands share: reading their options."""

from __future__ import annotations

from django.core.management.base import CommandError


def whole_number(value: str | None, option: str, minimum: int | None = None) -> int | None:
    """An option's whole number, None when it was not given; else one clear CommandError line
    (not argparse's usage dump)."""
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"{option} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise CommandError(f"{option} must be at least {minimum}, got {number}")
    return number
