"""How stored things look to the dashboard: broadcast items and the catch-up endpoint share these.

Every item carries `kind` so one feed can hold several kinds; times are ISO 8601 in UTC with Z.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from ingest.models import Event, SnapshotHistory, TimelineEvent


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: datetime | None) -> str | None: ...
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
    return event_item_values(
        public_id=event.public_id, status=event.status, message=event.message,
        description=event.description, event_type=event.event_type,
        external_id=event.external_id, duration_ms=event.duration_ms, metadata=event.metadata,
        source=source, received_at=event.received_at,
    )


def event_item_values(
    *,
    public_id: str,
    status: str,
    message: str,
    description: str,
    event_type: str,
    external_id: str,
    duration_ms: float | None,
    metadata: Any,
    source: dict[str, str],
    received_at: datetime,
) -> dict[str, Any]:
    """`event_item` from plain values (the fast lane has no Event instance)."""
    return {
        "kind": "event",
        "id": public_id,
        "status": status,
        "message": message,
        "description": description,
        "eventType": event_type,
        "externalId": external_id,
        "durationMs": _number(duration_ms),
        "metadata": metadata,
        "source": source,
        "receivedAt": iso(received_at),
    }


def present_event(event: Event) -> dict[str, Any]:
    """An event loaded from the database (select_related("source") avoids a query per row)."""
    src = event.source
    return event_item(event, source_ref(src.public_id, src.slug, src.name))


# What `event_row_item` reads: `.values_list(*EVENT_ITEM_FIELDS)` of an Event query. A page of
# plain tuples costs half the CPU of a page of Event and Source instances (the live page).
EVENT_ITEM_FIELDS = (
    "public_id", "status", "message", "description", "event_type", "external_id",
    "duration_ms", "metadata", "received_at", "source__public_id", "source__slug",
    "source__name",
)


def event_row_item(row: tuple) -> dict[str, Any]:
    """`present_event` from a row of EVENT_ITEM_FIELDS."""
    (public_id, status, message, description, event_type, external_id, duration_ms, metadata,
     received_at, source_id, source_slug, source_name) = row
    return event_item_values(
        public_id=public_id, status=status, message=message, description=description,
        event_type=event_type, external_id=external_id, duration_ms=duration_ms,
        metadata=metadata, source=source_ref(source_id, source_slug, source_name),
        received_at=received_at,
    )


def events_message(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The broadcast for a successful ingest-API request."""
    return {"type": "events", "items": items}


def rejections_message(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The broadcast for refused requests: `count` is how many this request added."""
    return {"type": "rejections", "items": items}


def worker_ref(public_id: str, display_name: str, external_id: str | None) -> dict[str, Any]:
    """A worker as items name it: with its external id, which search matches as it does the
    name (workspaces.live.search_timeline), so the live page can match an arriving item too."""
    return {"id": public_id, "displayName": display_name, "externalId": external_id}


def timeline_item(
    event: TimelineEvent, worker: dict[str, Any], source: dict[str, str]
) -> dict[str, Any]:
    """A v1 timeline event; `worker` and `source` are given so no row is loaded per item."""
    return timeline_item_values(
        public_id=event.public_id,
        event_type=event.event_type,
        category=event.category,
        worker=worker,
        timestamp=iso(event.timestamp),
        duration=event.duration,
        metadata=event.metadata,
        source=source,
        request_id=event.request_id,
        received_at=iso(event.received_at),
    )


def timeline_item_values(
    *,
    public_id: str,
    event_type: str,
    category: str,
    worker: dict[str, Any],
    timestamp: str | None,
    duration: int | None,
    metadata: Any,
    source: dict[str, str],
    request_id: str,
    received_at: str | None,
) -> dict[str, Any]:
    """The timeline item from plain values (the batch insert builds no model instances)."""
    return {
        "kind": "timeline",
        "id": public_id,
        "eventType": event_type,
        "category": category,
        "worker": worker,
        "timestamp": timestamp,
        "duration": duration,
        "metadata": metadata,
        "source": source,
        "requestId": request_id,
        "receivedAt": received_at,
    }


def present_timeline_event(event: TimelineEvent) -> dict[str, Any]:
    """A timeline event loaded with select_related("worker", "source")."""
    src = event.source
    return timeline_item(
        event,
        worker_ref(event.worker.public_id, event.worker.display_name, event.worker.external_id),
        source_ref(src.public_id, src.slug, src.name),
    )


# What `timeline_row_item` reads: `.values_list(*TIMELINE_ITEM_FIELDS)` of a TimelineEvent query.
TIMELINE_ITEM_FIELDS = (
    "public_id", "event_type", "category", "timestamp", "duration", "metadata", "request_id",
    "received_at", "worker__public_id", "worker__display_name", "worker__external_id",
    "source__public_id", "source__slug", "source__name",
)


def timeline_row_item(row: tuple) -> dict[str, Any]:
    """`present_timeline_event` from a row of TIMELINE_ITEM_FIELDS."""
    (public_id, event_type, category, timestamp, duration, metadata, request_id, received_at,
     worker_id, worker_name, worker_external_id, source_id, source_slug, source_name) = row
    return timeline_item_values(
        public_id=public_id, event_type=event_type, category=category,
        worker=worker_ref(worker_id, worker_name, worker_external_id),
        timestamp=iso(timestamp), duration=duration,
        metadata=metadata, source=source_ref(source_id, source_slug, source_name),
        request_id=request_id, received_at=iso(received_at),
    )


def timeline_message(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The broadcast for a v1 events request: one message for the whole batch."""
    return {"type": "timeline", "items": items}


def snapshot_item(
    snapshot: SnapshotHistory, worker: dict[str, Any], source: dict[str, str], current: bool
) -> dict[str, Any]:
    """A v1 snapshot; `current` is False when a newer card was already stored (out of order)."""
    return {
        "kind": "snapshot",
        "snapshotType": snapshot.snapshot_type,
        "worker": worker,
        "timestamp": iso(snapshot.timestamp),
        "metrics": snapshot.metrics,
        "metadata": snapshot.metadata,
        "source": source,
        "receivedAt": iso(snapshot.received_at),
        "current": current,
    }


def snapshot_message(item: dict[str, Any]) -> dict[str, Any]:
    """The broadcast for a v1 snapshot request."""
    return {"type": "snapshot", "item": item}
