"""Validation of developer-API (v1) bodies: an events batch and a snapshot (SPEC §4).

Hand-written on purpose: a 500-event batch must validate in about a millisecond, which rules
out serializers (tens of µs per field). Every rule reads a plain dict once, with local
look-ups, and collects *every* problem of an event so the message names each offending field.

Request-level faults raise (`InvalidBody`, `BatchTooLarge`, `MissingActor`); per-event faults
become `EventRejection`s so the rest of the batch can still be accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings

from ackly.compat import c_compact_encoder
from ackly.errors import BatchTooLarge, InvalidBody, MissingActor
from ingest.fields import (
    ACTOR_FIELDS,
    MAX_TIMESTAMP_LENGTH,
    METRIC,
    SNAPSHOT,
    TIMELINE_EVENT,
    max_length,
)
from ingest.models import Category

CATEGORIES: tuple[str, ...] = tuple(Category.values)
_CATEGORY_SET = frozenset(CATEGORIES)
_CATEGORY_LIST = ", ".join(CATEGORIES)

# The limits of ingest/fields.py's rows (the OpenAPI document's too), read once.
MAX_EVENT_TYPE_LENGTH = max_length(TIMELINE_EVENT, "eventType")
MAX_SNAPSHOT_TYPE_LENGTH = max_length(SNAPSHOT, "snapshotType")
MAX_EXTERNAL_ID_LENGTH = max_length(ACTOR_FIELDS, "externalId")
MAX_EMAIL_LENGTH = max_length(ACTOR_FIELDS, "email")
MAX_WORKER_ID_LENGTH = max_length(ACTOR_FIELDS, "workerId")
MAX_METRIC_NAME_LENGTH = max_length(METRIC, "name")
MAX_METRIC_STRING_LENGTH = max_length(METRIC, "value")
MAX_METRIC_UNIT_LENGTH = max_length(METRIC, "unit")
MAX_METRIC_LABEL_LENGTH = max_length(METRIC, "label")

# Codes of per-event rejections, most fundamental first: when an event breaks rules of
# several kinds it carries the first code here, and the message still lists every problem.
INVALID_BODY = "invalid_body"
MISSING_ACTOR = "missing_actor"
FORBIDDEN_EVENT_TYPE = "forbidden_event_type"


def _make_compact_encoder() -> Callable[[Any], str]:
    """Compact UTF-8 JSON text (how metadata size is measured), at C speed.

    `JSONEncoder.encode` spends half its time in Python set-up; calling the C encoder
    directly (ackly.compat) halves the cost per event.
    """
    fallback = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return c_compact_encoder(fallback.default) or fallback.encode


_compact = _make_compact_encoder()


class Actor(NamedTuple):
    """Who an event is about, reduced to the one identifier resolution will use.

    `kind` is "workerId", "externalId" or "email" (the first present, in that order);
    `email` rides along so a worker created from an externalId can carry it too.
    """

    kind: str
    value: str
    email: str | None = None


@dataclass(slots=True)
class ValidEvent:
    index: int
    event_type: str
    category: str
    actor: Actor
    timestamp: datetime | None
    duration: int | None
    metadata: dict[str, Any] | None
    # The compact JSON measured for the size rule, reused as the stored value (no re-encoding).
    metadata_json: str | None = None


@dataclass(slots=True)
class EventRejection:
    index: int
    code: str
    message: str


@dataclass(slots=True)
class ValidSnapshot:
    snapshot_type: str
    actor: Actor
    timestamp: datetime | None
    metrics: dict[str, Any]
    metadata: dict[str, Any] | None


@dataclass(slots=True)
class ValidBatch:
    events: list[ValidEvent]
    rejections: list[EventRejection]
    size: int


def _check_actor(actor: Any, where: str, problems: list[str]) -> Actor | None:
    """The actor's resolution key; appends messages for malformed fields. None when absent."""
    if actor is None:
        return None
    if type(actor) is not dict:
        problems.append(f"{where}: must be an object with workerId, externalId or email")
        return None
    worker_id = actor.get("workerId")
    external_id = actor.get("externalId")
    email = actor.get("email")
    ok = True
    if worker_id is not None and (
        type(worker_id) is not str or not worker_id or len(worker_id) > MAX_WORKER_ID_LENGTH
    ):
        problems.append(f"{where}.workerId: must be a worker id like 'wrk_…'")
        ok = False
    if external_id is not None and (
        type(external_id) is not str or not external_id or len(external_id) > MAX_EXTERNAL_ID_LENGTH
    ):
        problems.append(
            f"{where}.externalId: must be a non-empty string of at most "
            f"{MAX_EXTERNAL_ID_LENGTH} characters"
        )
        ok = False
    if email is not None:
        if (
            type(email) is not str
            or len(email) > MAX_EMAIL_LENGTH
            or email.count("@") != 1
            or email[0] == "@"
            or email[-1] == "@"
            or " " in email
        ):
            problems.append(f"{where}.email: must be an email address like 'alex@example.com'")
            ok = False
        else:
            email = email.lower()
    if not ok:
        return None
    if worker_id is not None:
        return Actor("workerId", worker_id, email)
    if external_id is not None:
        return Actor("externalId", external_id, email)
    if email is not None:
        return Actor("email", email, email)
    return None


def _check_timestamp(
    value: Any, where: str, latest: datetime, problems: list[str]
) -> datetime | None:
    if value is None:
        return None
    if type(value) is not str or len(value) > MAX_TIMESTAMP_LENGTH:
        problems.append(f"{where}: must be an ISO 8601 string such as '2026-04-19T12:05:00Z'")
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{where}: must be an ISO 8601 string such as '2026-04-19T12:05:00Z'")
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        problems.append(f"{where}: must carry a UTC offset or 'Z'")
        return None
    if moment > latest:
        problems.append(f"{where}: must be at most 24 hours in the future")
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        problems.append(f"{where}: must fall on or after 0001-01-01T00:00:00Z")
        return None


def _check_metadata(
    value: Any, where: str, problems: list[str], limit: int
) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        problems.append(f"{where}: must be an object")
        return None
    if not value:
        return value
    try:
        size = len(_compact(value).encode())
    except (UnicodeEncodeError, ValueError):
        problems.append(f"{where}: must be valid UTF-8 JSON")
        return None
    if size > limit:
        problems.append(f"{where}: must be at most {limit} bytes of compact JSON (got {size})")
        return None
    return value


def _latest_allowed(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.V1_MAX_FUTURE_SECONDS)


def events_of(body: Any) -> list[Any]:
    """The events array of a v1 body; InvalidBody / BatchTooLarge for faults of the request."""
    if type(body) is not dict:
        raise InvalidBody("The body must be a JSON object with an 'events' array.")
    events = body.get("events")
    if events is None:
        raise InvalidBody("events: required; send {\"events\": [ … ]}.")
    if type(events) is not list:
        raise InvalidBody("events: must be an array of events.")
    if not events:
        raise InvalidBody("events: must hold at least one event.")
    limit = settings.V1_MAX_BATCH
    if len(events) > limit:
        raise BatchTooLarge(f"events: at most {limit} events per batch (got {len(events)}).")
    return events


def validate_events(body: Any, allowed_event_types: frozenset[str], now: datetime) -> ValidBatch:
    """Split a v1 events body into valid events and per-event rejections (by request index).

    Raises InvalidBody / BatchTooLarge for faults of the request itself.
    """
    return validate_event_list(events_of(body), allowed_event_types, now)


def validate_event_list(
    events: list[Any], allowed_event_types: frozenset[str], now: datetime
) -> ValidBatch:
    """Per-event validation of an events array that `events_of` accepted."""
    latest = _latest_allowed(now)
    max_duration = settings.V1_MAX_DURATION_SECONDS
    metadata_limit = settings.V1_MAX_METADATA_BYTES
    categories = _CATEGORY_SET
    compact = _compact
    valid: list[ValidEvent] = []
    rejected: list[EventRejection] = []
    append_valid = valid.append
    for index, event in enumerate(events):
        if type(event) is not dict:
            rejected.append(
                EventRejection(index, INVALID_BODY, f"events[{index}]: must be an object")
            )
            continue
        # Fast path first: each field is checked inline; any doubt falls to _event_rejection,
        # which re-checks the event slowly and names every offending field.
        event_type = event.get("eventType")
        category = event.get("category")
        actor = _check_actor(event.get("actor"), "actor", [])
        timestamp: Any = event.get("timestamp")  # a JSON value, then its datetime once checked
        duration = event.get("duration")
        metadata = event.get("metadata")
        # One `if` (not a flag) so the checked types carry into the block: no cost, and fewer
        # steps for a rejected event.
        if (
            type(event_type) is str
            and event_type in allowed_event_types
            and len(event_type) <= MAX_EVENT_TYPE_LENGTH
            and type(category) is str
            and category in categories
            and actor is not None
            and (
                duration is None
                or (type(duration) is int and 0 <= duration <= max_duration)
            )
        ):
            ok = True
            if timestamp is not None:
                if type(timestamp) is not str or len(timestamp) > MAX_TIMESTAMP_LENGTH:
                    ok = False
                else:
                    try:
                        timestamp = datetime.fromisoformat(timestamp)
                        ok = timestamp.tzinfo is not None and timestamp <= latest
                        # In UTC before it is stored: 0001-01-01T00:00+05:30 falls before year 1
                        # there.
                        timestamp = timestamp.astimezone(UTC) if ok else None
                    except (ValueError, OverflowError):
                        ok = False
            metadata_json = None
            if ok and metadata is not None:
                try:
                    if type(metadata) is dict:
                        metadata_json = compact(metadata)
                        ok = len(metadata_json.encode()) <= metadata_limit
                    else:
                        ok = False
                except (UnicodeEncodeError, ValueError):
                    ok = False
            if ok:
                append_valid(
                    ValidEvent(
                        index, event_type, category, actor, timestamp, duration, metadata,
                        metadata_json,
                    )
                )
                continue
        rejection = _event_rejection(
            index, event, allowed_event_types, latest, max_duration, metadata_limit
        )
        if rejection is None:  # pragma: no cover - the two paths must agree
            raise AssertionError(f"events[{index}] failed the fast path but not the slow one")
        rejected.append(rejection)
    return ValidBatch(valid, rejected, len(events))


def _event_rejection(
    index: int,
    event: dict[str, Any],
    allowed_event_types: frozenset[str],
    latest: datetime,
    max_duration: int,
    metadata_limit: int,
) -> EventRejection | None:
    """The rejection of one event, naming every offending field; None if the event is valid."""
    where = f"events[{index}]"
    problems: list[str] = []

    event_type = event.get("eventType")
    forbidden = False
    if type(event_type) is not str or not event_type:
        problems.append(f"{where}.eventType: required, a non-empty string")
    elif len(event_type) > MAX_EVENT_TYPE_LENGTH:
        problems.append(f"{where}.eventType: must be at most {MAX_EVENT_TYPE_LENGTH} characters")
    elif event_type not in allowed_event_types:
        forbidden = True

    category = event.get("category")
    if type(category) is not str or category not in _CATEGORY_SET:
        if category is None:
            problems.append(f"{where}.category: required, one of {_CATEGORY_LIST}")
        else:
            problems.append(f"{where}.category: must be one of {_CATEGORY_LIST}")

    malformed = len(problems)
    actor = _check_actor(event.get("actor"), f"{where}.actor", problems)
    missing_actor = actor is None and len(problems) == malformed

    _check_timestamp(event.get("timestamp"), f"{where}.timestamp", latest, problems)

    duration = event.get("duration")
    if duration is not None and (
        type(duration) is not int or duration < 0 or duration > max_duration
    ):
        problems.append(f"{where}.duration: must be a whole number of seconds, 0 to {max_duration}")

    _check_metadata(event.get("metadata"), f"{where}.metadata", problems, metadata_limit)

    if not (problems or missing_actor or forbidden):
        return None
    # One code per event, the most fundamental: a malformed event is invalid_body even when
    # its eventType is also not whitelisted; the message lists every problem regardless.
    code = INVALID_BODY
    if not problems:
        code = MISSING_ACTOR if missing_actor else FORBIDDEN_EVENT_TYPE
    if missing_actor:
        problems.append(
            f"{where}.actor: required, an object with at least one of workerId, externalId, email"
        )
    if forbidden:
        problems.append(f"eventType '{event_type}' is not whitelisted.")
    return EventRejection(index, code, "; ".join(problems))


def _check_metric(name: str, value: Any, where: str, problems: list[str]) -> None:
    kind = type(value)
    if kind is int or kind is float:
        return
    if kind is str:
        if len(value) > MAX_METRIC_STRING_LENGTH:
            problems.append(
                f"{where}: a string metric must be at most {MAX_METRIC_STRING_LENGTH} characters"
            )
        return
    if kind is not dict:
        problems.append(f"{where}: must be a number, a string or {{value, unit?, label?}}")
        return
    unknown = [key for key in value if key not in ("value", "unit", "label")]
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    inner = value.get("value")
    inner_kind = type(inner)
    if inner_kind is str:
        if len(inner) > MAX_METRIC_STRING_LENGTH:
            problems.append(
                f"{where}.value: a string must be at most {MAX_METRIC_STRING_LENGTH} characters"
            )
    elif inner_kind is not int and inner_kind is not float:
        problems.append(f"{where}.value: required, a number or a string")
    for field, limit in (("unit", MAX_METRIC_UNIT_LENGTH), ("label", MAX_METRIC_LABEL_LENGTH)):
        text = value.get(field)
        if text is not None and (type(text) is not str or len(text) > limit):
            problems.append(f"{where}.{field}: must be a string of at most {limit} characters")


def validate_snapshot(body: Any, now: datetime) -> ValidSnapshot:
    """A valid snapshot, or InvalidBody / MissingActor naming every offending field."""
    if type(body) is not dict:
        raise InvalidBody("The body must be a JSON object.")
    problems: list[str] = []

    snapshot_type = body.get("snapshotType")
    if type(snapshot_type) is not str or not snapshot_type:
        problems.append("snapshotType: required, a non-empty string")
    elif len(snapshot_type) > MAX_SNAPSHOT_TYPE_LENGTH:
        problems.append(f"snapshotType: must be at most {MAX_SNAPSHOT_TYPE_LENGTH} characters")

    malformed = len(problems)
    actor = _check_actor(body.get("actor"), "actor", problems)
    missing_actor = actor is None and len(problems) == malformed

    timestamp = _check_timestamp(body.get("timestamp"), "timestamp", _latest_allowed(now), problems)

    metrics = body.get("metrics")
    if type(metrics) is not dict or not metrics:
        problems.append("metrics: required, a non-empty object")
    elif len(metrics) > settings.V1_MAX_METRICS:
        problems.append(
            f"metrics: at most {settings.V1_MAX_METRICS} entries (got {len(metrics)})"
        )
    else:
        for name, value in metrics.items():
            if not name or len(name) > MAX_METRIC_NAME_LENGTH:
                problems.append(
                    f"metrics: names must be 1 to {MAX_METRIC_NAME_LENGTH} characters "
                    f"(got {name[:20]!r})"
                )
                continue
            _check_metric(name, value, f"metrics.{name}", problems)

    metadata = _check_metadata(
        body.get("metadata"), "metadata", problems, settings.V1_MAX_METADATA_BYTES
    )

    if missing_actor:
        message = "actor: required, an object with at least one of workerId, externalId, email"
        if not problems:
            raise MissingActor(message)
        problems.append(message)
    if problems:
        raise InvalidBody("; ".join(problems))
    # No problems: every check above passed (each appends one otherwise).
    assert type(snapshot_type) is str and actor is not None and type(metrics) is dict
    return ValidSnapshot(snapshot_type, actor, timestamp, metrics, metadata)

