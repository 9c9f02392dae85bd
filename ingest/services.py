"""Business actions of the ingest APIs: each writes what one accepted request stores.

Called by the endpoints in ingest/api.py (and ingest/api_v1.py) inside the pipeline's one
transaction (see ingest/pipeline.py); side effects go through the context so they are sent
only after commit.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from ingest.models import Event, Snapshot, SnapshotHistory, TimelineEvent
from ingest.pipeline import IngestContext
from ingest.present import (
    event_item,
    events_message,
    snapshot_item,
    snapshot_message,
    timeline_item,
    timeline_message,
    worker_ref,
)
from ingest.validation_v1 import ValidEvent, ValidSnapshot
from workspaces.models import Worker


def record_event(ctx: IngestContext, fields: dict[str, Any]) -> Event:
    """Store one ingest-API event (nothing in a dry run) and queue its broadcast.

    `fields` are the validated model fields (status, message, description, event_type,
    external_id, duration_ms, metadata). The caller has reserved its quota.
    """
    event = Event(
        workspace_id=ctx.key.workspace_id,
        source_id=ctx.key.source_id,
        received_at=ctx.now,
        **fields,
    )
    if not ctx.dry_run:
        Event.objects.bulk_create([event])
        ctx.broadcast(events_message([event_item(event, ctx.source)]))
    return event


# --- The developer API (v1) -----------------------------------------------------------------


def record_timeline_events(
    ctx: IngestContext, accepted: list[tuple[ValidEvent, Worker]]
) -> list[tuple[int, TimelineEvent]]:
    """Store a batch's accepted events with one bulk insert and queue ONE timeline broadcast.

    Returns (request index, row) pairs; in a dry run the rows are built but not stored.
    The caller has reserved their quota.
    """
    workspace_id, source_id = ctx.key.workspace_id, ctx.key.source_id
    now, request_id = ctx.now, ctx.request_id
    rows = [
        (
            event.index,
            TimelineEvent(
                workspace_id=workspace_id,
                source_id=source_id,
                worker_id=worker.pk,
                event_type=event.event_type,
                category=event.category,
                timestamp=event.timestamp or now,
                duration=event.duration,
                metadata=event.metadata,
                request_id=request_id,
                received_at=now,
            ),
        )
        for event, worker in accepted
    ]
    if ctx.dry_run or not rows:
        return rows
    TimelineEvent.objects.bulk_create([row for _, row in rows])
    source = ctx.source
    workers = {w.pk: worker_ref(w.public_id, w.display_name) for _, w in accepted}
    ctx.broadcast(
        timeline_message([timeline_item(row, workers[row.worker_id], source) for _, row in rows])
    )
    return rows


_SNAPSHOT_TABLE = Snapshot._meta.db_table
_SNAPSHOT_KEY = ("worker_id", "snapshot_type")
_SNAPSHOT_COLUMNS = (
    "workspace_id", "source_id", "worker_id", "snapshot_type", "timestamp", "metrics",
    "metadata", "request_id", "received_at",
)
# Replace the current card unless the stored one is newer: out-of-order delivery never
# overwrites newer data. One statement, so two concurrent snapshots cannot both "win".
_q = connection.ops.quote_name
_UPSERT_SNAPSHOT = (
    f"INSERT INTO {_q(_SNAPSHOT_TABLE)} ({', '.join(_q(c) for c in _SNAPSHOT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_SNAPSHOT_COLUMNS))}) "
    "ON CONFLICT (worker_id, snapshot_type) DO UPDATE SET "
    + ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in _SNAPSHOT_COLUMNS if c not in _SNAPSHOT_KEY)
    + f" WHERE {_q(_SNAPSHOT_TABLE)}.{_q('timestamp')} <= excluded.{_q('timestamp')} RETURNING id"
)


def record_snapshot(ctx: IngestContext, snapshot: ValidSnapshot, worker: Worker) -> bool:
    """Keep the snapshot in history and make it the current card unless a newer one is stored.

    Returns whether it is now the current card (in a dry run: whether it would be). Snapshots
    never count towards the event quota.
    """
    history = SnapshotHistory(
        workspace_id=ctx.key.workspace_id,
        source_id=ctx.key.source_id,
        worker_id=worker.pk,
        snapshot_type=snapshot.snapshot_type,
        timestamp=snapshot.timestamp or ctx.now,
        metrics=snapshot.metrics,
        metadata=snapshot.metadata,
        request_id=ctx.request_id,
        received_at=ctx.now,
    )
    if ctx.dry_run:
        stored = (
            Snapshot.objects.filter(worker_id=worker.pk, snapshot_type=snapshot.snapshot_type)
            .values_list("timestamp", flat=True)
            .first()
        ) if worker.pk else None
        return stored is None or stored <= history.timestamp
    SnapshotHistory.objects.bulk_create([history])
    fields = {f.column: f for f in Snapshot._meta.concrete_fields}
    params = [
        fields[column].get_db_prep_save(getattr(history, fields[column].attname), connection)
        for column in _SNAPSHOT_COLUMNS
    ]
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_SNAPSHOT, params)
        current = cursor.fetchone() is not None
    ctx.broadcast(
        snapshot_message(
            snapshot_item(
                history, worker_ref(worker.public_id, worker.display_name), ctx.source, current
            )
        )
    )
    return current
