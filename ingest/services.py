"""Business actions of the ingest APIs: each writes what one accepted request stores.

Called by the endpoints in ingest/api.py (and ingest/api_v1.py) inside the pipeline's one
transaction (see ingest/pipeline.py); side effects go through the context so they are sent
only after commit.
"""

from __future__ import annotations

from typing import Any

from ingest.models import Event
from ingest.pipeline import IngestContext
from ingest.present import event_item, events_message


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
