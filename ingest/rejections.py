"""Counting refused requests per (source, code, hour) for the dashboard's rejections panel (§10).

One upsert per request (INSERT … ON CONFLICT DO UPDATE, on SQLite and PostgreSQL alike), run
outside any failed transaction, then one `rejections` broadcast after it commits. A request
whose key is unknown or malformed cannot be attributed to a source, so it is not counted.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone

from ackly.metrics import events_rejected
from ingest.broadcast import broadcast_on_commit
from ingest.models import Rejection
from ingest.present import iso, rejections_message, source_ref
from sources.keys import KeyContext

_TABLE = Rejection._meta.db_table
_UPSERT_HEAD = (
    f"INSERT INTO {_TABLE} (workspace_id, source_id, code, hour, count, last_at) VALUES "
)
_UPSERT_TAIL = (
    " ON CONFLICT (source_id, code, hour) DO UPDATE SET "
    f"count = {_TABLE}.count + excluded.count, last_at = excluded.last_at"
)

# Refusals that are counted (SPEC §10): every refused request whose source is known.
COUNTED_STATUSES = frozenset({400, 401, 402, 403, 404, 409, 413, 429})


def count_rejections(
    key: KeyContext, counts: dict[str, int], now: datetime | None = None
) -> None:
    """Add `counts` ({code: n}) to this hour's buckets of the key's source and broadcast them."""
    counts = {code: n for code, n in counts.items() if n > 0}
    if not counts:
        return
    now = now or timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    adapt = connection.ops.adapt_datetimefield_value
    params: list = []
    for code, n in counts.items():
        params += [key.workspace_id, key.source_id, code, adapt(hour), n, adapt(now)]
    sql = _UPSERT_HEAD + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(counts)) + _UPSERT_TAIL
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    events_rejected(counts)
    source = source_ref(key.source_public_id, key.source_slug, key.source_name)
    at = iso(now)
    broadcast_on_commit(
        key.workspace_public_id,
        rejections_message(
            [{"source": source, "code": code, "count": n, "at": at} for code, n in counts.items()]
        ),
    )
