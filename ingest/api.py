"""`POST /api/ingest` (SPEC §3): one outcome event per request.

Where an event goes when it arrives: ingest.pipeline.IngestEndpoint authenticates, limits,
reads and parses the body; `IngestView.validate` checks the fields; `IngestView.store`
reserves quota and calls ingest.services.record_event inside the pipeline's transaction.
Validation is plain Python, not serializers: this is the hot path.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings

from ackly.errors import InvalidBody, PayloadTooLarge
from ingest.decisions import CREATED, AcceptedEvent
from ingest.fields import INGEST_EVENT, STRING
from ingest.idempotency import Claim
from ingest.models import EventStatus
from ingest.pipeline import IngestContext, IngestEndpoint
from ingest.services import record_event, record_event_at_once

STATUSES = frozenset(EventStatus.values)
_STATUS_LIST = ", ".join(f"'{s}'" for s in EventStatus.values)

# (JSON field, model field, max length) of the optional strings (ingest/fields.py's rows).
STRING_FIELDS: tuple[tuple[str, str, int], ...] = tuple(
    (rule.name, rule.model_field or rule.name, rule.max_length)
    for rule in INGEST_EVENT.values()
    if rule.kind == STRING and rule.max_length is not None
)
MIN_DURATION_MS = INGEST_EVENT["durationMs"].minimum or 0

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def validate_event(payload: Any) -> dict[str, Any]:
    """The Event fields of a request body, or InvalidBody naming every offending field."""
    if not isinstance(payload, dict):
        raise InvalidBody("The body must be a JSON object.")
    problems: list[str] = []
    fields: dict[str, Any] = {}

    status = payload.get("status")
    if status is None:
        problems.append(f"status is required: one of {_STATUS_LIST}")
    elif not isinstance(status, str) or status not in STATUSES:
        problems.append(f"status must be one of {_STATUS_LIST}")
    else:
        fields["status"] = status

    for name, model_field, max_length in STRING_FIELDS:
        value = payload.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(f"{name} must be a string")
        elif len(value) > max_length:
            problems.append(f"{name} must be at most {max_length} characters (got {len(value)})")
        else:
            fields[model_field] = value

    duration = payload.get("durationMs")
    if duration is not None:
        problem = _duration_problem(duration)
        if problem:
            problems.append(problem)
        else:
            fields["duration_ms"] = float(duration)

    metadata = payload.get("metadata")
    if metadata is not None:
        limit = settings.INGEST_MAX_METADATA_BYTES
        try:
            size = len(_compact(metadata).encode("utf-8"))
        except ValueError:  # a number like 1e400 parses to infinity, which JSON cannot hold
            problems.append("metadata must hold only finite numbers")
        else:
            if size > limit:
                problems.append(
                    f"metadata must be at most {limit} bytes of compact JSON (got {size})"
                )
            else:
                fields["metadata"] = metadata

    if problems:
        raise InvalidBody("Invalid fields: " + "; ".join(problems) + ".")
    return fields


def _duration_problem(value: Any) -> str | None:
    # bool is an int subclass in Python, but true/false is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "durationMs must be a number"
    try:
        as_float = float(value)
    except OverflowError:
        return "durationMs must be a finite number"
    if not math.isfinite(as_float):
        return "durationMs must be a finite number"
    if as_float < MIN_DURATION_MS:
        return f"durationMs must be at least {MIN_DURATION_MS}"
    return None


class IngestView(IngestEndpoint):
    """POST /api/ingest and /api/ingest/: 201 {"id": "<24 hex>"} once the event is committed."""

    too_large_error = PayloadTooLarge
    quota_exceeded_status = 429

    def validate(self, payload: Any) -> dict[str, Any]:
        return validate_event(payload)

    def store(self, validated: dict[str, Any], ctx: IngestContext) -> tuple[int, dict[str, Any]]:
        if not ctx.reserve_quota(1):
            raise ctx.quota_exceeded()
        event = AcceptedEvent(ctx.key, validated, ctx.now)
        record_event(ctx, event)
        return CREATED, {"id": event.public_id}

    def store_at_once(
        self, validated: dict[str, Any], ctx: IngestContext, claim: Claim | None
    ) -> tuple[int, str] | None:
        body = record_event_at_once(ctx, AcceptedEvent(ctx.key, validated, ctx.now, claim))
        return None if body is None else (CREATED, body)
