"""Business actions of the ingest APIs: each writes what one accepted request stores.

Called by the endpoints in ingest/api.py (and ingest/api_v1.py) inside the pipeline's one
transaction (see ingest/pipeline.py); side effects go through the context so they are sent
only after commit.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from ackly.ids import new_public_ids
from billing.services import reservation_sql
from ingest.decisions import CREATED, EVENT_COLUMNS, EVENT_INSERT, AcceptedEvent, compact_json
from ingest.models import Event, Snapshot, SnapshotHistory, TimelineEvent
from ingest.pipeline import IngestContext
from ingest.present import (
    events_message,
    iso,
    snapshot_item,
    snapshot_message,
    timeline_item_values,
    timeline_message,
    worker_ref,
)
from ingest.validation_v1 import ValidEvent, ValidSnapshot
from workspaces.models import Worker

_q = connection.ops.quote_name


def record_event(ctx: IngestContext, event: AcceptedEvent) -> None:
    """Store one accepted single event (nothing in a dry run) and queue its broadcast.

    The caller has reserved its quota.
    """
    if ctx.dry_run:
        return
    key = event.key
    Event.objects.bulk_create([Event(
        public_id=event.public_id, workspace_id=key.workspace_id, source_id=key.source_id,
        received_at=event.received_at, **event.fields,
    )])
    ctx.broadcast(events_message([event.item()]))


# `q` is the quota reservation (one row when it was granted): the event is inserted per row.
_EVENT_FROM_QUOTA = (
    f"e AS ({EVENT_INSERT}"
    f"SELECT {', '.join('%s::jsonb' if c == 'metadata' else '%s' for c in EVENT_COLUMNS)} FROM q)"
)


def record_event_at_once(ctx: IngestContext, event: AcceptedEvent) -> str | None:
    """PostgreSQL: reserve one event of quota, insert the event and claim the Idempotency-Key
    in ONE autocommit statement; the response body, or None when the quota fast path does
    not apply (quota used up, or no counter row yet this period: the caller falls back).

    One round trip instead of six (SELECT, BEGIN, UPDATE, INSERT, INSERT, COMMIT), and the
    workspace's counter row is locked only for this statement and its commit, not across a
    transaction's round trips: concurrent requests of one workspace queue on it for far less.
    A taken key fails the whole statement with IntegrityError, which rolls back everything.
    """
    if connection.vendor != "postgresql" or ctx.dry_run:
        return None
    quota_sql, params, quota = reservation_sql(event.key.limits, 1, event.received_at)
    params += event.row()
    sql = f"WITH q AS ({quota_sql}), {_EVENT_FROM_QUOTA}"
    if event.claim is not None:
        claim_sql, claim_params = event.claim.insert_sql(CREATED, event.body)
        sql += f", r AS ({claim_sql}q)"
        params += claim_params
    # Autocommit: the statement is its own transaction. Inside an outer transaction (tests),
    # a savepoint keeps a failed statement from poisoning it.
    atomic = transaction.atomic() if connection.in_atomic_block else nullcontext()
    with atomic, connection.cursor() as cursor:
        cursor.execute(sql + " SELECT events FROM q", params)
        row = cursor.fetchone()
    if row is None:
        return None
    ctx.quota = replace(quota, used=row[0])
    ctx.broadcast(events_message([event.item()]))
    return event.body


# --- The developer API (v1) -----------------------------------------------------------------


TIMELINE_COLUMNS = (
    "public_id", "workspace_id", "source_id", "worker_id", "event_type", "category",
    "timestamp", "duration", "metadata", "request_id", "received_at",
)
TIMELINE_TABLE_COLUMNS = (
    f"{_q(TimelineEvent._meta.db_table)} ({', '.join(_q(c) for c in TIMELINE_COLUMNS)})"
)


def record_timeline_events(
    ctx: IngestContext, accepted: list[tuple[ValidEvent, Worker]]
) -> list[tuple[int, str, str]]:
    """Store a batch's accepted events in bulk and queue ONE timeline broadcast for them all.

    Returns (request index, eventType, timestamp as ISO 8601 Z) per event; a dry run stores
    and sends nothing. The caller has reserved their quota.

    A bulk write built here, not bulk_create: for 500 rows the ORM spent ~10x the database's
    own time building model instances and preparing 5,500 values field by field (profiled).
    The values are validated already; the timestamps are adapted per backend.
    """
    if not accepted:
        return []
    now = ctx.now
    if ctx.dry_run:
        return [(event.index, event.event_type, iso(event.timestamp or now)) for event, _ in accepted]
    batch = timeline_rows(
        accepted, workspace_id=ctx.key.workspace_id, source_id=ctx.key.source_id,
        source=ctx.source, now=now, request_id=ctx.request_id, adapt_time=_time_adapter(),
    )
    _insert_rows(TIMELINE_TABLE_COLUMNS, batch.rows)
    ctx.broadcast(timeline_message(batch.items))
    return batch.results


@dataclass
class TimelineRows:
    """What a batch of accepted v1 events writes and sends, built once for both ingest lanes."""

    rows: list[tuple[Any, ...]]  # in TIMELINE_COLUMNS order
    items: list[dict[str, Any]]  # the broadcast's timeline items
    results: list[tuple[int, str, str]]  # (request index, eventType, timestamp ISO 8601 Z)


def timeline_rows(
    accepted: list[tuple[ValidEvent, Any]],
    *,
    workspace_id: int,
    source_id: int,
    source: dict[str, str],
    now: datetime,
    request_id: str,
    adapt_time: Callable[[datetime], Any],
) -> TimelineRows:
    """The rows, broadcast items and results of accepted events; each event's worker is
    anything with `id`, `public_id` and `display_name` (a Worker, or a row the fast lane read)."""
    dumps = compact_json
    received_iso = iso(now)
    received_db = adapt_time(now)
    ids = new_public_ids("tle", len(accepted))
    workers: dict[int, dict[str, Any]] = {}
    rows: list[tuple[Any, ...]] = []
    items: list[dict[str, Any]] = []
    results: list[tuple[int, str, str]] = []
    for public_id, (event, worker) in zip(ids, accepted, strict=True):
        moment = event.timestamp or now
        moment_iso = received_iso if moment is now else iso(moment)
        metadata = event.metadata
        metadata_json = event.metadata_json
        if metadata is not None and metadata_json is None:
            metadata_json = dumps(metadata)
        worker_id = worker.id
        rows.append((
            public_id, workspace_id, source_id, worker_id, event.event_type, event.category,
            received_db if moment is now else adapt_time(moment), event.duration, metadata_json,
            request_id, received_db,
        ))
        ref = workers.get(worker_id)
        if ref is None:
            ref = workers[worker_id] = worker_ref(
                worker.public_id, worker.display_name, worker.external_id
            )
        items.append(
            timeline_item_values(
                public_id=public_id, event_type=event.event_type, category=event.category,
                worker=ref, timestamp=moment_iso, duration=event.duration, metadata=metadata,
                source=source, request_id=request_id, received_at=received_iso,
            )
        )
        results.append((event.index, event.event_type, moment_iso))
    return TimelineRows(rows, items, results)


def _time_adapter() -> Callable[[datetime], Any]:
    """Aware datetimes as the backend stores them, without the ORM's per-value checks."""
    if connection.vendor == "postgresql":
        return lambda moment: moment  # psycopg sends aware datetimes as timestamptz
    if connection.vendor == "sqlite":
        zone = connection.timezone  # what Django's own adapter converts to (UTC here)
        return lambda moment: str(moment.astimezone(zone).replace(tzinfo=None))
    return connection.ops.adapt_datetimefield_value


def _insert_rows(table_columns: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert `rows` (tuples in column order) into `table (columns)`.

    PostgreSQL: COPY. A 500-row multi-row INSERT spent half of a batch's CPU in psycopg's
    client-side binding, which scans the 5,500-placeholder query with a regex and adapts
    each value in Python (profiled: 80 ms of 160 per batch, under cProfile); COPY streams
    the rows, formatted in C. Elsewhere: INSERT … VALUES rows, in as few statements as the
    backend's parameter limit allows.
    """
    if connection.vendor == "postgresql":
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {table_columns} FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    width = len(rows[0])
    head = f"INSERT INTO {table_columns} VALUES "
    placeholders = "(" + ", ".join("%s" for _ in range(width)) + ")"
    limit = connection.features.max_query_params or 65535
    per_statement = max(1, limit // width)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(
                head + ", ".join([placeholders] * len(chunk)),
                [value for row in chunk for value in row],
            )


_SNAPSHOT_TABLE = Snapshot._meta.db_table
_SNAPSHOT_KEY = ("worker_id", "snapshot_type")
_SNAPSHOT_COLUMNS = (
    "workspace_id", "source_id", "worker_id", "snapshot_type", "timestamp", "metrics",
    "metadata", "request_id", "received_at",
)
# Replace the current card unless the stored one is newer: out-of-order delivery never
# overwrites newer data. One statement, so two concurrent snapshots cannot both "win".
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
                history,
                worker_ref(worker.public_id, worker.display_name, worker.external_id),
                ctx.source,
                current,
            )
        )
    )
    return current
