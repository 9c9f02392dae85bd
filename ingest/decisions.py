"""What the pipeline decides for a single event it accepts, computed once for both executors.

`POST /api/ingest` accepts a request once its key, plan, burst windows, Idempotency-Key, body
and fields pass (ingest.pipeline's checks, in its order). What is then written and answered
follows from the key, the validated fields and the moment of arrival alone: the event's row,
the 201 body (which the idempotency record stores for replays, byte for byte) and the live
item. `AcceptedEvent` holds that decision. The pipeline writes it in a transaction (or one
statement) of its own (ingest.services.record_event, record_event_at_once); the fast lane
writes many of them in one group commit (ingest.fastlane). Neither builds any of it itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection

from ackly.ids import new_event_id
from ingest.idempotency import Claim
from ingest.models import Event
from ingest.present import event_item_values, source_ref
from sources.keys import KeyContext

# The columns of an event's row, in the order `AcceptedEvent.row` gives them, and the INSERT
# every form of writing rows uses (what follows is a SELECT of their values).
EVENT_COLUMNS = (
    "public_id", "workspace_id", "source_id", "status", "message", "description", "event_type",
    "external_id", "duration_ms", "metadata", "received_at",
)
_q = connection.ops.quote_name
EVENT_INSERT = f"INSERT INTO {_q(Event._meta.db_table)} ({', '.join(_q(c) for c in EVENT_COLUMNS)}) "

# The optional fields of an event, as stored when the request leaves them out.
EVENT_DEFAULTS: dict[str, Any] = {
    "message": "", "description": "", "event_type": "", "external_id": "",
    "duration_ms": None, "metadata": None,
}

CREATED = 201


@dataclass(slots=True, eq=False)
class AcceptedEvent:
    """One accepted single event: what both executors write and answer for it."""

    key: KeyContext
    fields: dict[str, Any]  # ingest.api.validate_event's fields
    received_at: datetime
    claim: Claim | None = None
    public_id: str = field(default_factory=new_event_id)

    def __post_init__(self) -> None:
        self.fields = {**EVENT_DEFAULTS, **self.fields}

    @property
    def body(self) -> str:
        """The 201 body (`created_body`)."""
        return created_body(self.public_id)

    def row(self) -> tuple[Any, ...]:
        """The event's row in EVENT_COLUMNS order (metadata as JSON text)."""
        fields, key = self.fields, self.key
        metadata = fields["metadata"]
        return (
            self.public_id, key.workspace_id, key.source_id, fields["status"], fields["message"],
            fields["description"], fields["event_type"], fields["external_id"],
            fields["duration_ms"], None if metadata is None else compact_json(metadata),
            self.received_at,
        )

    def record(self) -> list[Any] | None:
        """The idempotency record's values (ingest.idempotency.RECORD_COLUMNS), if claimed."""
        return None if self.claim is None else self.claim.values(CREATED, self.body)

    def item(self) -> dict[str, Any]:
        """The event as the live message carries it (ingest.present)."""
        fields, key = self.fields, self.key
        return event_item_values(
            public_id=self.public_id, status=fields["status"], message=fields["message"],
            description=fields["description"], event_type=fields["event_type"],
            external_id=fields["external_id"], duration_ms=fields["duration_ms"],
            metadata=fields["metadata"],
            source=source_ref(key.source_public_id, key.source_slug, key.source_name),
            received_at=self.received_at,
        )


def created_body(event_id: str) -> str:
    """The 201 body of `POST /api/ingest` (stored for replays, byte for byte)."""
    return f'{{"id":"{event_id}"}}'


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
