"""How stored things look to the dashboard: broadcast items and the catch-up endpoint share these.

Every item carries `kind` so one feed can hold several kinds; times are ISO 8601 in UTC with Z.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ingest.models import Event


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as every item and message carries times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: float | None) -> float | int | None:
    """Whole numbers as integers (a FloatField hands 4820 back as 4820.0)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def source_ref(public_id: str, slug: str, name: str) -> dict[str, str]:
    """A source as items name it."""
    return {"id": public_id, "slug": slug, "name": name}


def event_item(event: Event, source: dict[str, str]) -> dict[str, Any]:
    """An ingest-API event; `source` is given so the hot path need not load the Source row."""
    return {
        "kind": "event",
        "id": event.public_id,
        "status": event.status,
        "message": event.message,
        "description": event.description,
        "eventType": event.event_type,
        "externalId": event.external_id,
        "durationMs": _number(event.duration_ms),
        "metadata": event.metadata,
        "source": source,
        "receivedAt": iso(event.received_at),
    }


def present_event(event: Event) -> dict[str, Any]:
    """An event loaded from the database (select_related("source") avoids a query per row)."""
    src = event.source
    return event_item(event, source_ref(src.public_id, src.slug, src.name))


def events_message(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The broadcast for a successful ingest-API request."""
    return {"type": "events", "items": items}


def rejections_message(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The broadcast for refused requests: `count` is how many this request added."""
    return {"type": "rejections", "items": items}
