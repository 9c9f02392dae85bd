"""The OpenAPI description of both ingest APIs (served at /openapi/v1.yaml).

The serializers here document bodies; the views never use them (validation on the hot path is
hand-written, see ingest/validation_v1.py). The request bodies' serializers are built from the
rule table the validators read (ingest/fields.py), so no limit, choice or required field is
written here a second time. Schemas are attached to the views from this module
with OpenApiViewExtensions, so the API modules stay free of documentation code. Imported by
IngestConfig.ready() so the extensions are registered before any schema is generated.
"""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiViewExtension,
)
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework.parsers import JSONParser

from ackly.errors import ERROR_CODES
from ingest.fields import (
    ACTOR,
    ACTOR_FIELDS,
    EMAIL,
    ENUM,
    INGEST_EVENT,
    INTEGER,
    JSON,
    METADATA,
    METRIC,
    METRICS,
    NUMBER,
    SNAPSHOT,
    STRING,
    TIMELINE_EVENT,
    TIMESTAMP,
    Rule,
)

# Enum choices named in SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].
ERROR_CODE_CHOICES = [(code, spec.title) for code, spec in ERROR_CODES.items()]

INGEST_TAG = "Ingest API"
V1_TAG = "Developer API (v1)"


class BearerKeyScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer ak_live_…` (sources.auth.BearerKeyAuthentication)."""

    target_class = "sources.auth.BearerKeyAuthentication"
    name = "bearerKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ak_live_ + 40 base62 characters",
            "description": "A source's key, shown once when it is created or rotated.",
        }


# --- Shared components ----------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=ERROR_CODE_CHOICES, help_text="Stable, machine-readable. Check this first."
    )
    message = serializers.CharField(help_text="For people; names every offending field.")
    requestId = serializers.CharField(help_text="Same as the X-Request-Id header: req_ + ULID.")
    docsUrl = serializers.URLField(help_text="The documentation page of this code.")


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = ErrorSerializer()


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "additionalProperties": {},
        "description": f"Any JSON object, at most {settings.V1_MAX_METADATA_BYTES:,} bytes as "
        "compact UTF-8 JSON.",
        "example": {"ticket_id": "SUP-431"},
    }
)
class MetadataField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "type": "string",
        "format": "date-time",
        "nullable": True,
        "description": "ISO 8601 with an offset or Z, on or after 0001-01-01T00:00:00Z and at most "
        f"{settings.V1_MAX_FUTURE_SECONDS // 3600} hours in the future. Defaults to the time "
        "received.",
        "example": "2026-04-19T12:05:00Z",
    }
)
class TimestampField(serializers.CharField):
    pass


_METRIC_STRING = {"type": "string", "maxLength": METRIC["value"].max_length}
_METRIC_SCHEMA = {
    "oneOf": [
        {"type": "number"},
        _METRIC_STRING,
        {
            "type": "object",
            "properties": {
                "value": {"oneOf": [{"type": "number"}, _METRIC_STRING]},
                **{name: {"type": "string", "maxLength": METRIC[name].max_length, "nullable": True}
                   for name in ("unit", "label")},
            },
            "required": ["value"],
            "additionalProperties": False,
        },
    ]
}


@extend_schema_field(
    {
        "type": "object",
        "minProperties": 1,
        "maxProperties": settings.V1_MAX_METRICS,
        "additionalProperties": _METRIC_SCHEMA,
        "description": f"1 to {settings.V1_MAX_METRICS} metrics by name "
        f"({METRIC['name'].min_length}-{METRIC['name'].max_length} characters).",
        "example": {"open": 7, "oldest": {"value": 3, "unit": "days", "label": "Oldest ticket"}},
    }
)
class MetricsField(serializers.JSONField):
    pass


# The kinds of ingest/fields.py with a schema of their own (the actor's: its serializer, below).
COMPLEX_FIELDS: dict[str, Any] = {
    TIMESTAMP: TimestampField, METADATA: MetadataField, METRICS: MetricsField,
}


def _field(rule: Rule, **options: Any) -> serializers.Field:
    """The DRF field documenting one row of ingest/fields.py (a simple kind; see below)."""
    if rule.help:
        options["help_text"] = rule.help
    if not rule.required:
        options.update(required=False, allow_null=True)
    # Only the bounds a rule has (the stubs take no None for them).
    for bound, value in (("min_length", rule.min_length), ("max_length", rule.max_length),
                         ("min_value", rule.minimum)):
        if value is not None:
            options[bound] = value
    if rule.kind == STRING:
        return serializers.CharField(**options)
    if rule.kind == EMAIL:
        return serializers.EmailField(**options)
    if rule.kind == ENUM:
        assert rule.choices is not None
        return serializers.ChoiceField(choices=rule.choices.choices, **options)
    if rule.kind == NUMBER:
        return serializers.FloatField(**options)
    if rule.kind == INTEGER:
        return serializers.IntegerField(**options)
    if rule.kind == JSON:
        return serializers.JSONField(**options)
    raise ValueError(f"{rule.name}: no simple field for kind {rule.kind!r}")


def _serializer(
    name: str, rules: dict[str, Rule], doc: str | None = None, **options: dict[str, Any]
) -> type[serializers.Serializer]:
    """A serializer `<name>Serializer` (component `<name>`) with one field per rule, in order.

    `options` adds keyword arguments to a field by name; the kinds with a schema of their own
    take theirs from COMPLEX_FIELDS.
    """
    declared: dict[str, Any] = {"__doc__": doc, "__module__": __name__}
    for field_name, rule in rules.items():
        extra = options.get(field_name, {})
        if rule.kind in COMPLEX_FIELDS:
            complex_field = COMPLEX_FIELDS[rule.kind]
            declared[field_name] = (
                complex_field(**extra) if rule.required else complex_field(required=False, **extra)
            )
        else:
            declared[field_name] = _field(rule, **extra)
    return cast(type[serializers.Serializer],
                type(f"{name}Serializer", (serializers.Serializer,), declared))


ActorSerializer = _serializer(
    "Actor", ACTOR_FIELDS,
    f"At least one identifier; resolved in the order {', '.join(ACTOR_FIELDS)}.",
)
COMPLEX_FIELDS[ACTOR] = ActorSerializer


class ActorSchema(OpenApiSerializerExtension):
    """An actor names at least one identifier (null is absent): without one, `missing_actor`."""

    target_class = ActorSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["anyOf"] = [
            {"required": [name], "properties": {name: {"type": "string"}}}
            for name in ACTOR_FIELDS
        ]
        return schema


class SourceRefSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="app_ + ULID")
    slug = serializers.CharField()
    name = serializers.CharField()


class WorkerRefSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="wrk_ + ULID")
    displayName = serializers.CharField()
    externalId = serializers.CharField(
        allow_null=True, help_text="The worker's externalId; null if it has none."
    )


# --- The ingest API -------------------------------------------------------------------------


IngestEventSerializer = _serializer(
    "IngestEvent", INGEST_EVENT,
    metadata={"help_text": "Any JSON value, at most "
              f"{settings.INGEST_MAX_METADATA_BYTES // 1024} KB serialized."},
)


class IngestCreatedSerializer(serializers.Serializer):
    id = serializers.RegexField(
        r"^[0-9a-f]{24}$", help_text="24 lowercase hex characters, time-ordered."
    )


# --- The developer API (v1) -----------------------------------------------------------------


class PingSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    organizationId = serializers.CharField(help_text="org_ + ULID")
    app = SourceRefSerializer()


TimelineEventSerializer = _serializer(
    "TimelineEvent", TIMELINE_EVENT, duration={"max_value": settings.V1_MAX_DURATION_SECONDS}
)


class EventsRequestSerializer(serializers.Serializer):
    events = serializers.ListField(
        child=TimelineEventSerializer(), min_length=1, max_length=settings.V1_MAX_BATCH
    )


class AcceptedEventSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request's events array.")
    eventType = serializers.CharField()
    timestamp = serializers.DateTimeField(help_text="As stored, in UTC with Z.")


class RejectedEventSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request's events array.")
    code = serializers.ChoiceField(choices=ERROR_CODE_CHOICES)
    message = serializers.CharField()


class BatchResultsSerializer(serializers.Serializer):
    accepted = AcceptedEventSerializer(many=True)
    rejected = RejectedEventSerializer(many=True)


class EventsResultSerializer(serializers.Serializer):
    requestId = serializers.CharField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    batchLimit = serializers.IntegerField(help_text=f"Always {settings.V1_MAX_BATCH}.")
    results = BatchResultsSerializer()


class BatchErrorEnvelopeSerializer(serializers.Serializer):
    """The envelope; when every event of a batch was rejected, also the batch's results."""

    error = ErrorSerializer()
    accepted = serializers.IntegerField(required=False)
    rejected = serializers.IntegerField(required=False)
    batchLimit = serializers.IntegerField(required=False)
    results = BatchResultsSerializer(required=False)



SnapshotRequestSerializer = _serializer("SnapshotRequest", SNAPSHOT)


class SnapshotAcceptedSerializer(serializers.Serializer):
    requestId = serializers.CharField()
    ok = serializers.BooleanField()
    snapshotType = serializers.CharField()
    worker = WorkerRefSerializer()


# --- Headers and parameters -----------------------------------------------------------------


def _header(name: str, kind: Any, description: str, codes: list[int] | bool) -> OpenApiParameter:
    return OpenApiParameter(
        name, kind, OpenApiParameter.HEADER, description=description, response=codes
    )


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": settings.IDEMPOTENCY_KEY_MAX_LENGTH},
    OpenApiParameter.HEADER,
    description=f"At most {settings.IDEMPOTENCY_KEY_MAX_LENGTH} characters. For "
    f"{settings.IDEMPOTENCY_WINDOW_SECONDS // 60} minutes the same key and body replays the "
    "first response (with Idempotent-Replayed: true); a different body answers 409.",
)
DRY_RUN = OpenApiParameter(
    "dryRun",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description="true: run every check and answer as the real request would, storing nothing.",
)


def _response_headers(
    all_codes: list[int], authenticated_codes: list[int], replayable: list[int] | None
) -> list[OpenApiParameter]:
    """Headers each response carries: request id always; quota/rate once the key is known."""
    headers = [
        _header("X-Request-Id", OpenApiTypes.STR, "req_ + ULID; the body's requestId.", all_codes),
        _header("X-Quota-Limit", OpenApiTypes.INT, "Events allowed this billing period.",
                authenticated_codes),
        _header("X-Quota-Remaining", OpenApiTypes.INT, "Events left this billing period.",
                authenticated_codes),
        _header("X-Quota-Reset", OpenApiTypes.INT, "End of the billing period, epoch seconds.",
                authenticated_codes),
        _header("RateLimit-Limit", OpenApiTypes.INT, "Requests allowed per burst window.",
                authenticated_codes),
        _header("RateLimit-Remaining", OpenApiTypes.INT, "Requests left in this window.",
                authenticated_codes),
        _header("RateLimit-Reset", OpenApiTypes.INT, "Seconds until the window resets.",
                authenticated_codes),
        _header("Retry-After", OpenApiTypes.INT, "Seconds to wait before retrying.", [429]),
    ]
    if replayable:
        headers.append(
            _header(
                "Idempotent-Replayed",
                OpenApiTypes.STR,
                "'true' when this is the replay of an earlier response to the same key.",
                replayable,
            )
        )
    return headers


def _error(codes: list[str], serializer: type = ErrorEnvelopeSerializer) -> OpenApiResponse:
    described = "\n\n".join(f"`{code}`: {ERROR_CODES[code].description}" for code in codes)
    return OpenApiResponse(serializer, description=described)


_AUTH_ERRORS = ["missing_authorization", "invalid_key", "key_revoked", "key_expired"]


_ERRORS_AFTER_AUTH = ["invalid_body", "plan_disabled", "quota_exceeded", "rate_limited"]


def _operation(
    *,
    operation_id: str,
    summary: str,
    description: str,
    tag: str,
    request: Any,
    responses: dict[int, Any],
    success: list[int],
    post: bool = True,
    retry_after: list[int] | None = None,
    examples: list[OpenApiExample] | None = None,
) -> Any:
    """extend_schema for one operation: its bodies, every status, its headers and parameters."""
    codes = sorted(responses)
    headers = _response_headers(codes, [c for c in codes if c not in (401, 500)],
                                success if post else None)
    if retry_after:
        for header in headers:
            if header.name == "Retry-After":
                header.response = retry_after
    parameters = ([IDEMPOTENCY_KEY, DRY_RUN] if post else []) + headers
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=description,
        tags=[tag],
        request=request,
        responses=responses,
        parameters=parameters,
        examples=examples or [],
    )


_COMMON = {
    401: _error(_AUTH_ERRORS),
    # A read key sent to an ingest endpoint (or an ingest key to the read API).
    403: _error(["wrong_key_scope"]),
    429: _error(["rate_limited"]),
    500: _error(["internal_error"]),
}

INGEST_OPERATION = _operation(
    operation_id="ingestEvent",
    summary="Store one outcome event",
    description="One event per call. Works with and without a trailing slash; the body is "
    "parsed as JSON whatever the Content-Type. Unknown fields are ignored; null means absent. "
    "Any eventType is accepted (the whitelist is the developer API's).",
    tag=INGEST_TAG,
    request=IngestEventSerializer,
    responses={
        201: OpenApiResponse(IngestCreatedSerializer, description="Stored durably."),
        400: _error(["invalid_body"]),
        409: _error(["idempotency_key_reused"]),
        413: _error(["payload_too_large"]),
        **_COMMON,
        429: _error(["quota_exceeded", "rate_limited"]),
    },
    success=[201],
    examples=[
        OpenApiExample(
            "A failed backup",
            value={"status": "failure", "message": "Backup failed", "eventType": "backup.completed",
                   "durationMs": 8123, "metadata": {"host": "db-2"}},
            request_only=True,
        )
    ],
)

PING_OPERATION = _operation(
    operation_id="v1Ping",
    summary="Validate a key and echo the app it belongs to",
    description="No body, no query parameters.",
    tag=V1_TAG,
    request=None,
    responses={
        200: PingSerializer,
        402: _error(["plan_disabled"]),
        **_COMMON,
    },
    success=[200],
    post=False,
)

EVENTS_OPERATION = _operation(
    operation_id="v1IngestEvents",
    summary=f"Ingest up to {settings.V1_MAX_BATCH} events into the monitoring timeline",
    description="Each event is validated on its own. 202 when every event was accepted, 207 when "
    "some were rejected (`results.rejected[].index` points at the request's positions). When "
    "every event is rejected the status is that of the first rejection's code, with the error "
    "envelope plus the batch fields. With room for only k of n valid events the first k are "
    "accepted and the rest rejected `quota_exceeded`; with no room at all: 402.",
    tag=V1_TAG,
    request=EventsRequestSerializer,
    responses={
        202: OpenApiResponse(EventsResultSerializer, description="Every event accepted."),
        207: OpenApiResponse(EventsResultSerializer, description="Some events rejected."),
        400: _error(["invalid_body", "missing_actor"], BatchErrorEnvelopeSerializer),
        402: _error(["plan_disabled", "quota_exceeded"], BatchErrorEnvelopeSerializer),
        404: _error(["worker_not_found"], BatchErrorEnvelopeSerializer),
        409: _error(["idempotency_key_reused"]),
        413: _error(["batch_too_large"]),
        **_COMMON,
        403: _error(["forbidden_event_type", "wrong_key_scope"], BatchErrorEnvelopeSerializer),
    },
    success=[202, 207],
    retry_after=[402, 429],
    examples=[
        OpenApiExample(
            "The seed example",
            value={"events": [{"eventType": "ticket.resolved", "category": "project_management",
                               "actor": {"externalId": "crm-user-42"}, "duration": 240,
                               "metadata": {"ticket_id": "SUP-431"}}]},
            request_only=True,
        ),
        OpenApiExample(
            "Partly accepted",
            value={"requestId": "req_01HP3K5V4J3M9NVT8XZKQ9YQ2E", "accepted": 2, "rejected": 1,
                   "batchLimit": 500,
                   "results": {
                       "accepted": [
                           {"index": 0, "eventType": "ticket.resolved",
                            "timestamp": "2026-04-19T12:05:00Z"},
                           {"index": 1, "eventType": "ticket.resolved",
                            "timestamp": "2026-04-19T12:06:10Z"}],
                       "rejected": [
                           {"index": 2, "code": "forbidden_event_type",
                            "message": "eventType 'deploy.shipped' is not whitelisted."}]}},
            response_only=True,
            status_codes=["207"],
        ),
    ],
)

SNAPSHOTS_OPERATION = _operation(
    operation_id="v1IngestSnapshot",
    summary="Replace the current snapshot card for a worker",
    description="Replaces the card for (worker, snapshotType) unless the stored card has a newer "
    "timestamp; every snapshot is kept in the history. Snapshots do not count towards the "
    "monthly event limit.",
    tag=V1_TAG,
    request=SnapshotRequestSerializer,
    responses={
        202: SnapshotAcceptedSerializer,
        400: _error(["invalid_body", "missing_actor"]),
        402: _error(["plan_disabled"]),
        404: _error(["worker_not_found"]),
        409: _error(["idempotency_key_reused"]),
        413: _error(["batch_too_large"]),
        **_COMMON,
    },
    success=[202],
)


def _documented(target: str, method: str, operation: Any) -> type[OpenApiViewExtension]:
    """An extension attaching `operation` to the view at `target` without touching its module."""

    class Documented(OpenApiViewExtension):
        target_class = target

        def view_replacement(self) -> type:
            # The real views parse JSON themselves (parser_classes = []); the documented copy
            # declares JSON so the request body appears in the schema.
            view = cast(type, self.target_class)  # drf-spectacular imported the dotted path by now
            documented = type(view.__name__, (view,), {"parser_classes": [JSONParser]})
            return extend_schema_view(**{method: operation})(documented)

    Documented.__name__ = Documented.__qualname__ = f"Documented{target.rsplit('.', 1)[1]}"
    return Documented


VIEW_EXTENSIONS = [
    _documented("ingest.api.IngestView", "post", INGEST_OPERATION),
    _documented("ingest.api_v1.PingView", "get", PING_OPERATION),
    _documented("ingest.api_v1.EventsView", "post", EVENTS_OPERATION),
    _documented("ingest.api_v1.SnapshotsView", "post", SNAPSHOTS_OPERATION),
]


def canonical_paths(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: `/api/ingest/?` routes are documented as `/api/ingest`."""
    result["paths"] = {
        (path.rstrip("/") if path.startswith("/api/") else path): item
        for path, item in result["paths"].items()
    }
    return result
