"""The read API: `GET /api/v1/events` with a read key (`ak_read_…`).

The events of the key's workspace, both kinds, as the dashboard's feed shows them (the same
filters, the same item shapes, the same retention bound: `workspaces.live`), newest first.
Pages are cut with an opaque cursor (keyset pagination on receivedAt, kind, id), so a page
never shifts while new events arrive: they are newer than every cursor already handed out.

Order of checks, as the ingest endpoints: auth (a read key; an ingest key gets 403
wrong_key_scope before any look-up) → plan (402 plan_disabled without the developer API) →
burst (the key's own window and the workspace's read window, which ingest does not share:
a busy reader never costs the senders their burst) → query parameters (400 invalid_query,
naming each). Every answer carries X-Request-Id and, once the key is known, RateLimit-* and
X-Quota-*; errors are the one envelope.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from heapq import merge
from typing import Any, cast

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from ackly.clientip import client_ip
from ackly.errors import APIError, InvalidQuery, PlanDisabled, RateLimited
from billing.services import quota_state
from ingest.present import (
    EVENT_ITEM_FIELDS,
    TIMELINE_ITEM_FIELDS,
    event_row_item,
    iso,
    timeline_row_item,
)
from ingest.ratelimits import BurstState, count_burst
from sources.auth import authenticate_key
from sources.keys import KeyContext
from workspaces import live
from workspaces.models import Workspace

READ_MAX_LIMIT = 500
READ_DEFAULT_LIMIT = 100
# The query parameters this endpoint reads; the dashboard-only ones (range, after, before)
# are not part of the API.
READ_PARAMETERS = ("source", "status", "category", "eventType", "since", "until", "q")
# Within one instant, ingest-API events sort before v1 timeline events (newest first).
_KIND_RANK = {"event": 1, "timeline": 0}


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last item's receivedAt, kind and public id."""

    at: datetime
    kind: str
    item_id: str

    def encode(self) -> str:
        raw = json.dumps([iso(self.at), self.kind, self.item_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            at, kind, item_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
            moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
            # A NUL byte could never be an id this API gave (PostgreSQL refuses it in text).
            if (kind not in _KIND_RANK or not isinstance(item_id, str) or "\x00" in item_id
                    or moment.tzinfo is None):
                raise ValueError(kind)
            moment = moment.astimezone(UTC)  # OverflowError past year 9999 in UTC
        except (ValueError, TypeError, AttributeError, OverflowError, UnicodeError,
                binascii.Error):
            raise InvalidQuery(
                "cursor: not a cursor this API gave; start again without it."
            ) from None
        return cls(moment, kind, item_id)


def _after(qs: QuerySet, kind: str, cursor: Cursor | None) -> QuerySet:
    """The rows of `kind` that come after the cursor in (receivedAt, kind, id) descending order."""
    if cursor is None:
        return qs
    rank, cursor_rank = _KIND_RANK[kind], _KIND_RANK[cursor.kind]
    if rank < cursor_rank:  # this kind sorts after the cursor's within its instant
        return qs.filter(received_at__lte=cursor.at)
    if rank > cursor_rank:
        return qs.filter(received_at__lt=cursor.at)
    # The range condition alone bounds the index scan; the OR only trims the cursor's instant.
    return qs.filter(received_at__lte=cursor.at).filter(
        Q(received_at__lt=cursor.at) | Q(public_id__lt=cursor.item_id)
    )


def _sort_key(item: dict[str, Any]) -> tuple[datetime, int, str]:
    return datetime.fromisoformat(item["receivedAt"]), _KIND_RANK[item["kind"]], item["id"]


def read_page(
    workspace: Workspace, params: Mapping[str, Any], now: datetime | None = None
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page of the workspace's events for these query parameters, and the next cursor.

    Raises InvalidQuery naming every offending parameter.
    """
    now = now or timezone.now()
    problems = [
        f"{name} must not be empty"
        for name in ("status", "category", "since", "until", "limit", "q")
        if name in params and not str(params.get(name)).strip()
    ]
    limit = READ_DEFAULT_LIMIT
    raw_limit = params.get("limit")
    if raw_limit:
        digits = raw_limit.strip()
        # isascii: '²' and other Unicode digits pass isdigit() but not int().
        if digits.isascii() and digits.isdigit() and 1 <= int(digits) <= READ_MAX_LIMIT:
            limit = int(digits)
        else:
            problems.append(f"limit must be a whole number from 1 to {READ_MAX_LIMIT}")
    filters = live.FeedFilters.from_query(
        {name: params.get(name) for name in READ_PARAMETERS if name in params}, now
    )
    problems.extend(filters.errors)
    if problems:
        raise InvalidQuery("; ".join(problems))
    token = params.get("cursor")
    cursor = Cursor.decode(token) if token else None

    streams = []
    events = live.events_query(workspace, filters, now)
    if events is not None:
        events = _after(events, "event", cursor).order_by("-received_at", "-public_id")
        # As tuples, as the live page reads them: the same items for half the CPU.
        rows = events[: limit + 1].values_list(*EVENT_ITEM_FIELDS)
        streams.append(event_row_item(row) for row in rows)
    timeline = live.timeline_query(workspace, filters, now)
    if timeline is not None:
        timeline = _after(timeline, "timeline", cursor).order_by("-received_at", "-public_id")
        rows = timeline[: limit + 1].values_list(*TIMELINE_ITEM_FIELDS)
        streams.append(timeline_row_item(row) for row in rows)
    merged = list(zip(range(limit + 1), merge(*streams, key=_sort_key, reverse=True), strict=False))
    items = [item for _, item in merged[:limit]]
    if len(merged) <= limit:
        return items, None
    last = items[-1]
    return items, Cursor(datetime.fromisoformat(last["receivedAt"]), last["kind"], last["id"])


class EventsReadView(APIView):
    """GET /api/v1/events: the workspace's events for a read key, newest first, by pages."""

    authentication_classes: list = []  # the view authenticates, so the order of checks is its own
    permission_classes: list = []
    renderer_classes = [JSONRenderer]
    http_method_names = ["get", "head"]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        # DRF's Request offers HttpRequest's attributes (META, GET, build_absolute_uri).
        http = cast(HttpRequest, request)
        key = authenticate_key(http.META.get("HTTP_AUTHORIZATION"), client_ip(http), scope="read")
        limits = key.limits
        if not limits.developer_api:
            raise PlanDisabled(
                f"The workspace's {limits.plan_code} plan does not include the developer API; "
                "upgrade to Starter or Pro."
            )
        burst = count_burst(key, limits, scope="read")
        headers = {**burst.headers(), **_quota_headers(key)}
        if burst.exceeded:
            raise _rate_limited(burst, headers)
        try:
            workspace = Workspace.objects.select_related("plan").get(pk=key.workspace_id)
            items, cursor = read_page(workspace, request.query_params)
        except APIError as exc:
            exc.headers = {**headers, **exc.headers}
            raise
        body = {"items": items, "nextCursor": cursor.encode() if cursor else None}
        response = HttpResponse(
            json.dumps(body, separators=(",", ":")), content_type="application/json"
        )
        for name, value in headers.items():
            response[name] = value
        return response


def _quota_headers(key: KeyContext) -> dict[str, str]:
    quota = quota_state(key.limits, timezone.now())
    return {
        "X-Quota-Limit": str(quota.limit),
        "X-Quota-Remaining": str(quota.remaining),
        "X-Quota-Reset": str(int(quota.period_end.timestamp())),
    }


def _rate_limited(burst: BurstState, headers: dict[str, str]) -> APIError:
    return RateLimited(
        f"More than {burst.limit} requests per {settings.RATELIMIT_WINDOW_SECONDS}s for this "
        "key or workspace's reads; retry after Retry-After seconds.",
        headers={**headers, "Retry-After": str(burst.reset_seconds)},
    )
