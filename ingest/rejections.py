"""Counting refused requests per (source, code, hour) for the dashboard's rejections panel (§10).

One upsert per request (INSERT … ON CONFLICT DO UPDATE, on SQLite and PostgreSQL alike), run
outside any failed transaction, then one `rejections` broadcast after it commits. A request
whose key is unknown or malformed cannot be attributed to a source, so it is not counted.

In the same transaction each refused request leaves one `RejectedRequest` row per code (time,
code, the message the sender was answered, request id) behind the count, and the source's rows
past its newest REJECTED_REQUESTS_PER_SOURCE are deleted: the table stays bounded however fast
a sender is refused (docs/decisions.md).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone

from ackly.errors import ERROR_CODES
from ackly.metrics import events_rejected
from ackly.requestid import current_request_id
from ingest.broadcast import broadcast_on_commit
from ingest.models import RejectedRequest, Rejection
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
_REQUESTS = RejectedRequest._meta.db_table
_INSERT_HEAD = (
    f"INSERT INTO {_REQUESTS} (workspace_id, source_id, code, message, request_id, at) VALUES "
)
# The source's rows older than its K-th newest go (index rejectedreq_source_recent). Rows
# sharing the K-th newest's instant stay, so at most a request's worth more than K remain.
_TRIM = (
    f"DELETE FROM {_REQUESTS} WHERE source_id = %s AND at < ("
    f"SELECT at FROM {_REQUESTS} WHERE source_id = %s ORDER BY at DESC LIMIT 1 OFFSET %s)"
)
# A message names every offending field of up to 500 events: long enough to say why, capped.
MESSAGE_MAX_LENGTH = 1000

# Refusals that are counted: every refused request whose source is known.
COUNTED_STATUSES = frozenset({400, 401, 402, 403, 404, 409, 413, 429})


def count_rejections(
    key: KeyContext,
    counts: dict[str, int],
    now: datetime | None = None,
    answer: HttpResponse | None = None,
) -> None:
    """Add `counts` ({code: n}) to this hour's buckets of the key's source, keep the request
    behind them (each code's message read from `answer`, the response the sender got, else
    the code's description) and broadcast the counts."""
    # In code order: concurrent refusals of one source lock its buckets in one order.
    counts = {code: n for code, n in sorted(counts.items()) if n > 0}
    if not counts:
        return
    now = now or timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    adapt = connection.ops.adapt_datetimefield_value
    params: list = []
    for code, n in counts.items():
        params += [key.workspace_id, key.source_id, code, adapt(hour), n, adapt(now)]
    sql = _UPSERT_HEAD + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(counts)) + _UPSERT_TAIL
    told = messages_of(answer) if answer is not None else {}
    request_id = current_request_id.get()
    rows: list = []
    for code in counts:
        message = told.get(code) or _description(code)
        rows += [key.workspace_id, key.source_id, code, message[:MESSAGE_MAX_LENGTH],
                 "" if request_id == "-" else request_id, adapt(now)]
    insert = _INSERT_HEAD + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(counts))
    keep = settings.REJECTED_REQUESTS_PER_SOURCE
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        cursor.execute(insert, rows)
        cursor.execute(_TRIM, [key.source_id, key.source_id, keep - 1])
    events_rejected(counts)
    source = source_ref(key.source_public_id, key.source_slug, key.source_name)
    at = iso(now)
    broadcast_on_commit(
        key.workspace_public_id,
        rejections_message(
            [{"source": source, "code": code, "count": n, "at": at} for code, n in counts.items()]
        ),
    )


def messages_of(answer: HttpResponse) -> dict[str, str]:
    """{code: message} as the response told them: each per-event rejection's first message
    per code (a v1 batch), then the error envelope's own."""
    try:
        body: Any = json.loads(answer.content)
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    told: dict[str, str] = {}
    results = body.get("results")
    if isinstance(results, dict) and isinstance(results.get("rejected"), list):
        for item in results["rejected"]:
            if isinstance(item, dict) and isinstance(item.get("code"), str):
                told.setdefault(item["code"], str(item.get("message", "")))
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        told.setdefault(error["code"], str(error.get("message", "")))
    return told


def _description(code: str) -> str:
    spec = ERROR_CODES.get(code)
    return spec.description if spec is not None else code



def recent_refusals(
    workspace_id: int, source: str | None = None, code: str | None = None
) -> QuerySet[RejectedRequest]:
    """A workspace's kept refused requests, newest first; optionally one source's (public id)
    and one code's. Never another workspace's: the workspace is always part of the filter."""
    rows = RejectedRequest.objects.filter(workspace_id=workspace_id).select_related("source")
    if source:
        rows = rows.filter(source__public_id=source)
    if code:
        rows = rows.filter(code=code)
    return rows
