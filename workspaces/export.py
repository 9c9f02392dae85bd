"""Export from the live page: the current filter's events as CSV or NDJSON, streamed.

The rows come from the read API's own pages (`ingest.api_read.read_page`: the same filters,
item shapes, retention bound and keyset order), 500 at a time, so memory stays flat however
many rows there are. Under an ASGI server the body is an async iterator (each page read in a
thread), which Django streams as it goes; a sync iterator there would be read whole first.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.decorators.http import require_GET

from ackly.errors import APIError
from ingest.api_read import READ_MAX_LIMIT, Cursor, read_page
from workspaces import live
from workspaces.access import WorkspaceRequest, workspace_view
from workspaces.models import Workspace

CSV_COLUMNS = [
    "kind", "id", "receivedAt", "source", "status", "category", "eventType", "message",
    "externalId", "durationMs", "worker", "timestamp", "duration", "metadata",
]
# A spreadsheet runs a cell starting with one of these as a formula: such text gets a leading
# apostrophe (OWASP's advice against CSV injection), so an event's message cannot run there.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_row(item: dict[str, Any]) -> list[str]:
    flat = dict(item)
    flat["source"] = item["source"]["slug"]
    worker = item.get("worker")
    flat["worker"] = worker["displayName"] if worker else None
    return [_cell(flat.get(column)) for column in CSV_COLUMNS]


def csv_chunk(items: list[dict[str, Any]], header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(item) for item in items)
    return out.getvalue()


def ndjson_chunk(items: list[dict[str, Any]], header: bool) -> str:
    return "".join(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for item in items)


FORMATS: dict[str, tuple[str, Callable[[list[dict[str, Any]], bool], str]]] = {
    "csv": ("text/csv; charset=utf-8", csv_chunk),
    "ndjson": ("application/x-ndjson; charset=utf-8", ndjson_chunk),
}


def read_parameters(filters: live.FeedFilters) -> dict[str, str]:
    """The live page's filter as the read API's parameters (a named range becomes `since`)."""
    params = {"source": filters.source, "status": filters.status, "category": filters.category,
              "eventType": filters.event_type, "q": filters.q,
              "since": filters.since.isoformat() if filters.since else "",
              "until": filters.until.isoformat() if filters.until else ""}
    return {name: value for name, value in params.items() if value}


def _page(workspace: Workspace, params: dict[str, str], cursor: Cursor | None, now: datetime):
    query = {**params, "limit": str(READ_MAX_LIMIT)}
    if cursor is not None:
        query["cursor"] = cursor.encode()
    return read_page(workspace, query, now)


def _chunks(workspace, params, render, first, now) -> Iterator[bytes]:
    items, cursor = first
    yield render(items, True).encode()
    while cursor is not None:
        items, cursor = _page(workspace, params, cursor, now)
        yield render(items, False).encode()


async def _achunks(workspace, params, render, first, now) -> AsyncIterator[bytes]:
    items, cursor = first
    yield render(items, True).encode()
    while cursor is not None:
        items, cursor = await sync_to_async(_page)(workspace, params, cursor, now)
        yield render(items, False).encode()


@workspace_view()
@require_GET
def export(request: WorkspaceRequest, fmt: str) -> HttpResponseBase:
    """GET …/events/export.csv|.ndjson?<the live page's filters>: every matching event."""
    now = timezone.now()
    content_type, render = FORMATS[fmt]
    filters = live.FeedFilters.from_query(request.GET, now)
    if filters.errors:
        return JsonResponse(
            {"error": {"code": "invalid_filter", "message": "; ".join(filters.errors)}}, status=400
        )
    params = read_parameters(filters)
    try:
        first = _page(request.workspace, params, None, now)  # refusals answer before streaming
    except APIError as exc:
        return JsonResponse({"error": {"code": "invalid_filter", "message": exc.message}},
                            status=400)
    args = (request.workspace, params, render, first, now)
    body = _achunks(*args) if isinstance(request, ASGIRequest) else _chunks(*args)
    response = StreamingHttpResponse(body, content_type=content_type)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = (
        f'attachment; filename="ackly-{request.workspace.public_id}-{stamp}.{fmt}"'
    )
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
