"""The OpenAPI description of the read API, `GET /api/v1/events` (ingest.api_read).

Kept beside ingest/schema.py, whose shared pieces (the error responses, the response headers,
the way a view is documented from outside its module) it uses.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from ingest.api_read import READ_DEFAULT_LIMIT, READ_MAX_LIMIT
from ingest.models import Category, EventStatus
from ingest.schema import (
    _COMMON,
    V1_TAG,
    MetadataField,
    SourceRefSerializer,
    WorkerRefSerializer,
    _documented,
    _error,
    _response_headers,
)
from workspaces.live import SEARCH_MIN_LENGTH


class ReadItemSerializer(serializers.Serializer):
    """One event of either kind, as the dashboard's feed shows it; `kind` says which fields."""

    kind = serializers.ChoiceField(
        choices=["event", "timeline"],
        help_text="`event`: the ingest API's (status, message, durationMs…); `timeline`: the "
        "developer API's (category, worker, timestamp, duration…).",
    )
    id = serializers.CharField(help_text="The event's id (a timeline event's starts with tle_).")
    eventType = serializers.CharField(allow_blank=True)
    source = SourceRefSerializer()  # type: ignore[assignment]  # the stubs type Field.source
    receivedAt = serializers.DateTimeField()
    metadata = MetadataField(allow_null=True)
    status = serializers.ChoiceField(choices=EventStatus.choices, required=False)
    message = serializers.CharField(required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    externalId = serializers.CharField(required=False, allow_blank=True)
    durationMs = serializers.FloatField(required=False, allow_null=True)
    category = serializers.ChoiceField(choices=Category.choices, required=False)
    worker = WorkerRefSerializer(required=False)
    timestamp = serializers.DateTimeField(required=False, allow_null=True)
    duration = serializers.IntegerField(required=False, allow_null=True)
    requestId = serializers.CharField(required=False)


class ReadPageSerializer(serializers.Serializer):
    items = ReadItemSerializer(many=True, help_text="Newest first (receivedAt, then kind and id).")
    nextCursor = serializers.CharField(
        allow_null=True,
        help_text="Pass as `cursor` for the next (older) page; null on the last page.",
    )


def _query(
    name: str, kind: Any, description: str, enum: list[str] | None = None
) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, enum=enum)


_PARAMETERS = [
    _query("source", OpenApiTypes.STR, "Only this source's events (app_…)."),
    _query("status", OpenApiTypes.STR, "Only ingest-API events with this status.",
           enum=EventStatus.values),
    _query("category", OpenApiTypes.STR, "Only timeline events of this category.",
           enum=Category.values),
    _query("eventType", OpenApiTypes.STR,
           "eventType prefix: `deploy.` finds deploy.started and deploy.finished."),
    _query("since", OpenApiTypes.DATETIME, "Received at or after this instant (ISO 8601)."),
    _query("until", OpenApiTypes.DATETIME, "Received before this instant (ISO 8601)."),
    OpenApiParameter(
        "q", {"type": "string", "minLength": SEARCH_MIN_LENGTH}, OpenApiParameter.QUERY,
        description=(
            "Text in the message, externalId, worker or metadata: a case-insensitive substring "
            f"of at least {SEARCH_MIN_LENGTH} characters."
        ),
    ),
    _query("cursor", OpenApiTypes.STR, "The previous page's nextCursor."),
    OpenApiParameter(
        "limit", {"type": "integer", "minimum": 1, "maximum": READ_MAX_LIMIT},
        OpenApiParameter.QUERY,
        description=f"Items per page, 1 to {READ_MAX_LIMIT} (default {READ_DEFAULT_LIMIT}).",
    ),
]

_RESPONSES = {
    200: ReadPageSerializer,
    400: _error(["invalid_query"]),
    402: _error(["plan_disabled"]),
    **_COMMON,
}

READ_OPERATION = extend_schema(
    operation_id="v1ReadEvents",
    summary="Read the workspace's events, newest first, by pages",
    description="Needs a read key (`ak_read_…`); an ingest key gets 403 `wrong_key_scope`. "
    "Both kinds of event, within the plan's retention, filtered as on the dashboard's live "
    "page. Follow `nextCursor` until it is null; pages hold their place while new events "
    "arrive.",
    tags=[V1_TAG],
    auth=[{"bearerKey": []}],  # type: ignore[list-item]  # drf-spectacular takes requirement objects
    request=None,
    responses=_RESPONSES,
    parameters=_PARAMETERS
    + _response_headers(sorted(_RESPONSES), [c for c in sorted(_RESPONSES) if c not in (401, 500)],
                        None),
)

READ_VIEW_EXTENSION = _documented("ingest.api_read.EventsReadView", "get", READ_OPERATION)
