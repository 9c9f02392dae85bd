"""Secrets shown once: the POST that makes one holds it in the session and redirects; the page's
first GET takes it out again. A reload (or going back) finds nothing and never re-posts a form.

The URL names only the object the secret belongs to; an entry whose redirect was never followed
expires after HANDOVER_SECONDS. Each app keeps its entries under a session key of its own.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

HANDOVER_SECONDS = 300


def _pending(request: HttpRequest, bucket: str) -> dict[str, dict[str, Any]]:
    now = timezone.now().timestamp()
    pending = request.session.get(bucket) or {}
    return {
        object_id: entry for object_id, entry in pending.items()
        if now - entry.get("issued_at", 0) <= HANDOVER_SECONDS
    }


def hold(request: HttpRequest, bucket: str, object_id: str, **entry: Any) -> None:
    """Keep `entry` (the secret and whatever the page needs) for the object's next GET."""
    pending = _pending(request, bucket)
    pending[object_id] = {**entry, "issued_at": timezone.now().timestamp()}
    request.session[bucket] = pending


def take(request: HttpRequest, bucket: str, object_id: str) -> dict[str, Any] | None:
    """The object's waiting entry, removed from the session; None once it was shown."""
    pending = _pending(request, bucket)
    entry = pending.pop(object_id, None)
    if pending:
        request.session[bucket] = pending
    elif bucket in request.session:
        del request.session[bucket]
    return entry


def no_store(response: HttpResponse) -> HttpResponse:
    """Neither the browser nor any proxy may keep the page: going back must not show it again."""
    response["Cache-Control"] = "no-store, private"
    response["Pragma"] = "no-cache"
    return response
