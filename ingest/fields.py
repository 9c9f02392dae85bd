"""The field rules of both ingest APIs' request bodies, each declared once.

One row per JSON field: its kind, whether it is required, its length limits, its choices, its
range. The validators read their limits from these rows (`ingest.api.validate_event`,
`ingest.validation_v1`: hand-written for speed, they take each number once at import), and the
OpenAPI document's request serializers are built from the same rows (`ingest.schema`), so a
documented limit is the enforced one. Limits an operator may change stay settings (batch size,
metadata bytes, duration, metrics per snapshot) and both sides read them there.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import TextChoices

from ingest.models import Category, EventStatus

# Kinds of field. The first five map to one DRF field each; the others have a schema of their
# own in ingest.schema (an object, a date-time string, a JSON object, the metrics map).
STRING = "string"
EMAIL = "email"
ENUM = "enum"
NUMBER = "number"
INTEGER = "integer"
JSON = "json"  # any JSON value
ACTOR = "actor"
TIMESTAMP = "timestamp"
METADATA = "metadata"  # a JSON object, measured as compact UTF-8 JSON
METRICS = "metrics"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    kind: str
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    choices: type[TextChoices] | None = None
    minimum: int | None = None
    help: str = ""
    model_field: str | None = None  # where the ingest API stores it, when it differs


def table(*rules: Rule) -> dict[str, Rule]:
    """Rules by field name, in the order the document lists them."""
    return {rule.name: rule for rule in rules}


def max_length(rules: dict[str, Rule], name: str) -> int:
    """The maximum length of a field that has one (a validator's constant)."""
    limit = rules[name].max_length
    if limit is None:
        raise LookupError(f"{name} has no maximum length")
    return limit


# POST /api/ingest (SPEC §3). Null means absent for every optional field.
INGEST_EVENT = table(
    Rule("status", ENUM, required=True, choices=EventStatus),
    Rule("message", STRING, max_length=1000, model_field="message"),
    Rule("description", STRING, max_length=10000, model_field="description"),
    Rule("eventType", STRING, max_length=100, model_field="event_type"),
    Rule("externalId", STRING, max_length=255, model_field="external_id"),
    Rule("durationMs", NUMBER, minimum=0, model_field="duration_ms"),
    Rule("metadata", JSON),
)

# An actor of the developer API (SPEC §4): at least one identifier, resolved in this order.
ACTOR_FIELDS = table(
    Rule("workerId", STRING, min_length=1, max_length=40,
         help="wrk_… of a worker of this workspace."),
    Rule("externalId", STRING, min_length=1, max_length=255,
         help="Your id for the person; unknown ids create one."),
    Rule("email", EMAIL, max_length=254,
         help="Matched case-insensitively; unknown emails create a worker."),
)

# Long enough for any ISO 8601 form with fractions and an offset; a bound before parsing.
MAX_TIMESTAMP_LENGTH = 40

# One event of POST /api/v1/ingest/events.
TIMELINE_EVENT = table(
    Rule("eventType", STRING, required=True, min_length=1, max_length=100,
         help="Must be whitelisted for the app."),
    Rule("category", ENUM, required=True, choices=Category),
    Rule("actor", ACTOR, required=True),
    Rule("timestamp", TIMESTAMP),
    Rule("duration", INTEGER, minimum=0, help="Whole seconds."),  # max: V1_MAX_DURATION_SECONDS
    Rule("metadata", METADATA),
)

# POST /api/v1/ingest/snapshots.
SNAPSHOT = table(
    Rule("snapshotType", STRING, required=True, min_length=1, max_length=100,
         help="Stable id of the card kind."),
    Rule("actor", ACTOR, required=True),
    Rule("timestamp", TIMESTAMP),
    Rule("metrics", METRICS, required=True),  # at most V1_MAX_METRICS entries
    Rule("metadata", METADATA),
)

# One metric of a snapshot: its name, and a number, a string or {value, unit?, label?}.
METRIC = table(
    Rule("name", STRING, required=True, min_length=1, max_length=100),
    Rule("value", STRING, required=True, max_length=200),  # when a string
    Rule("unit", STRING, max_length=50),
    Rule("label", STRING, max_length=200),
)
