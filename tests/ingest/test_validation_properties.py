"""Property tests (issue 7 item 3): any JSON in gives a result or a documented error, never a crash.

Three layers, each fed every kind of JSON value (Hypothesis recursive strategies) and values
aimed at the documented limits (lengths, sizes, counts, durations, timestamps, depth):

* the strict JSON parser (`parse_strict_json`): a value or InvalidBody, whatever the bytes; a
  JSON document round-trips; depth is refused exactly past 64 however strings hide brackets;
* the validators (`ingest.api.validate_event`, `ingest.validation_v1`): a result or the
  documented error type; values inside every documented limit are accepted, and the batch
  accounts for every index once;
* the three POST endpoints on both executors (the `api` fixture): a status the OpenAPI document
  lists for that operation, never 500, and the error envelope whenever it is a 4xx.

Bounded to a few hundred examples in all (about 20 s here); no example database is written.
Raise the budget by hand with `HYPOTHESIS_MAX_EXAMPLES=2000` (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from ackly.errors import ERROR_CODES, BatchTooLarge, InvalidBody, MissingActor
from billing.models import Plan
from ingest.api import STATUSES, validate_event
from ingest.jsonbody import parse_strict_json
from ingest.models import Category
from ingest.validation_v1 import (
    FORBIDDEN_EVENT_TYPE,
    INVALID_BODY,
    MISSING_ACTOR,
    ValidBatch,
    ValidSnapshot,
    validate_events,
    validate_snapshot,
)
from tests.servers import ROOT

BUDGET = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "0"))
# Hypothesis caches constants under ./.hypothesis; keep the working tree clean.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "ackly-hypothesis")


def bounded(examples: int) -> settings:
    """`examples` per test (or the HYPOTHESIS_MAX_EXAMPLES budget), no deadline, no database."""
    return settings(
        max_examples=BUDGET or examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
    )


NOW = datetime(2026, 4, 19, 12, 0, tzinfo=UTC)
ALLOWED = frozenset({"ticket.resolved", "call.logged"})
DEPTH = 64

# --- Strategies -------------------------------------------------------------------------------

# What json.loads can hand a validator: no NaN (the parser refuses it) but infinities (1e400).
scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=False) | st.text(max_size=30)
)
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
# Strings around each documented length limit, and text that looks like what it is not.
def around(limit: int) -> st.SearchStrategy[str]:
    return st.integers(min_value=max(0, limit - 2), max_value=limit + 2).map(lambda n: "é" * n)


tricky_text = st.sampled_from(["", " ", "\x00", "null", "[", '"', "\\", "@", "a@b@c", "@x", "x@",
                               "a b@c.d", "Z", "2026-04-19", "💥" * 3])
any_text = st.text(max_size=40) | tricky_text
OFFSETS = [UTC] + [timezone(timedelta(minutes=m)) for m in (-1439, -720, -300, 330, 840, 1439)]


def _iso(moment: datetime, offset: timezone) -> str:
    return moment.replace(tzinfo=offset).isoformat()


timestamps = st.one_of(
    # Near the 24-hours-ahead limit (NOW is the validators' clock).
    st.integers(min_value=-120, max_value=120).map(
        lambda s: (NOW + timedelta(hours=24, seconds=s)).isoformat().replace("+00:00", "Z")),
    # The year-1 edge in every offset (UTC earlier than year 1 once was a 500), and year 9999.
    st.builds(_iso, st.sampled_from([datetime(1, 1, 1), datetime(1, 1, 1, 23, 59), datetime(1, 1, 2),
                                     datetime(9999, 12, 31, 23, 59)]), st.sampled_from(OFFSETS)),
    st.builds(_iso, st.datetimes(), st.sampled_from(OFFSETS)),
    st.datetimes().map(datetime.isoformat),  # no offset
    any_text,
)
durations = st.one_of(st.integers(min_value=-3, max_value=3), st.integers(min_value=86398, max_value=86402),
                      st.sampled_from([True, False, 1.0, 240.5, -0.0, math.inf, 10**400]), any_json)


def metadata_of_size(size: int) -> dict[str, str]:
    """A metadata object whose compact JSON is exactly `size` bytes (size >= 8)."""
    return {"a": "x" * (size - 8)}


metadata_values = st.one_of(
    st.integers(min_value=16380, max_value=16390).map(metadata_of_size),
    st.dictionaries(st.text(max_size=5), any_json, max_size=4),
    st.just({"n": math.inf}),
    any_json,
)
actors = st.one_of(
    st.fixed_dictionaries({}, optional={
        "workerId": st.just("wrk_01HP3K5V4J3M9NVT8XZKQ9YQ2E") | around(40) | any_json,
        "externalId": any_text | around(255) | any_json,
        "email": st.emails() | any_text | around(254).map(lambda s: s + "@x.io") | any_json,
    }),
    any_json,
)
small_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
valid_timestamps = st.builds(
    lambda moment, offset: moment.replace(tzinfo=UTC).astimezone(offset).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=NOW.replace(tzinfo=None) + timedelta(hours=24)),
    st.sampled_from(OFFSETS),
)
valid_events = st.fixed_dictionaries(
    {"eventType": st.sampled_from(sorted(ALLOWED)), "category": st.sampled_from(Category.values),
     "actor": st.one_of(st.fixed_dictionaries({"externalId": st.text(min_size=1, max_size=255)}),
                        st.fixed_dictionaries({"email": st.emails().filter(lambda e: len(e) <= 254)}))},
    optional={"timestamp": valid_timestamps | st.none(),
              "duration": st.integers(min_value=0, max_value=86400) | st.none(),
              "metadata": st.dictionaries(st.text(max_size=5), small_json, max_size=3) | st.none()},
)


def some_of(fields: dict[str, st.SearchStrategy], most: int) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of up to `most` of these fields, each drawn from its strategy."""
    return st.lists(st.sampled_from(sorted(fields)), max_size=most, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({name: fields[name] for name in names}))


def mutated(valid: st.SearchStrategy[dict], odd: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """Valid bodies with 0-2 fields replaced (so most reach storage), and any mix of odd fields."""
    return st.one_of(
        st.builds(lambda base, changes: {**base, **changes}, valid, some_of(odd, 2)),
        some_of(odd, len(odd)),
    )


events = mutated(valid_events, {
    "eventType": st.sampled_from(sorted(ALLOWED)) | around(100) | any_text | any_json,
    "category": st.sampled_from(Category.values) | any_json,
    "actor": actors,
    "timestamp": timestamps,
    "duration": durations,
    "metadata": metadata_values,
    "extra": any_json,
})
events_bodies = st.one_of(
    st.fixed_dictionaries({"events": st.lists(events | any_json, max_size=4)}),
    st.integers(min_value=498, max_value=502).map(
        lambda n: {"events": [{"eventType": "ticket.resolved", "category": "sales",
                               "actor": {"externalId": "u"}}] * n}),
    any_json,
)
metric_values = st.one_of(
    st.integers() | st.floats(allow_nan=False) | around(200) | any_text,
    st.fixed_dictionaries({}, optional={"value": st.integers() | around(200) | any_json,
                                        "unit": around(50) | any_json, "label": around(200) | any_json,
                                        "other": any_json}),
    any_json,
)
metrics = st.one_of(
    st.dictionaries(around(100) | st.text(max_size=6), metric_values, max_size=4),
    st.integers(min_value=99, max_value=101).map(lambda n: {f"m{i}": i for i in range(n)}),
    any_json,
)
valid_snapshots = st.fixed_dictionaries(
    {"snapshotType": st.text(min_size=1, max_size=100),
     "actor": st.fixed_dictionaries({"externalId": st.text(min_size=1, max_size=255)}),
     "metrics": st.dictionaries(st.text(min_size=1, max_size=100),
                                st.integers() | st.floats(allow_nan=False) | st.text(max_size=200),
                                min_size=1, max_size=100)},
    optional={"timestamp": valid_timestamps | st.none()},
)
snapshot_bodies = mutated(valid_snapshots, {
    "snapshotType": around(100) | any_text | any_json,
    "actor": actors,
    "timestamp": timestamps,
    "metrics": metrics,
    "metadata": metadata_values,
}) | any_json
valid_ingest = st.fixed_dictionaries(
    {"status": st.sampled_from(sorted(STATUSES))},
    optional={"message": st.text(max_size=1000) | st.none(), "eventType": st.text(max_size=100),
              "durationMs": st.floats(min_value=0, allow_infinity=False) | st.integers(min_value=0),
              "metadata": small_json},
)
ingest_bodies = mutated(valid_ingest, {
    "status": st.sampled_from(sorted(STATUSES)) | any_json,
    "message": around(1000) | any_json,
    "description": around(10000) | any_json,
    "eventType": around(100) | any_json,
    "externalId": around(255) | any_json,
    "durationMs": st.floats(allow_nan=False) | durations,
    "metadata": st.integers(min_value=65530, max_value=65540).map(metadata_of_size) | any_json,
}) | any_json

# --- The strict JSON parser ---------------------------------------------------------------------


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def storable(value: Any) -> bool:
    """No NUL in any string or key: the parser refuses those (PostgreSQL cannot store them)."""
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(map(storable, value))
    return not isinstance(value, str) or "\x00" not in value


finite_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
# Strings full of what a byte-level depth scan could mistake for structure.
bracket_text = st.text(alphabet='[]{}"\\:,ab é💥', max_size=12)


@st.composite
def deep_json(draw) -> Any:
    """A small value wrapped in 60-68 containers, with bracket-laden strings beside every level."""
    value = draw(st.none() | st.integers() | bracket_text | st.just([]) | st.just({}))
    for _ in range(draw(st.integers(min_value=60, max_value=68))):
        text = draw(bracket_text)
        value = draw(st.sampled_from([[value], [text, value], {text: value}, {text: value, "": text}]))
    return value


@bounded(300)
@given(st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_any_bytes_parse_to_a_value_or_invalid_body(body):
    with contextlib.suppress(InvalidBody):
        parse_strict_json(body, DEPTH)


@bounded(300)
@given(finite_json, st.booleans())
def test_a_json_document_round_trips_unless_it_holds_a_nul(value, ascii_only):
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    if storable(value):
        assert parse_strict_json(body, DEPTH) == value
    else:
        with pytest.raises(InvalidBody, match="NUL"):
            parse_strict_json(body, DEPTH)


@bounded(300)
@given(deep_json(), st.booleans(), st.sampled_from([None, 1]))
def test_depth_is_refused_exactly_past_64_whatever_the_strings_hold(value, ascii_only, indent):
    body = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode()
    if depth_of(value) > DEPTH:
        with pytest.raises(InvalidBody, match="nests deeper than 64"):
            parse_strict_json(body, DEPTH)
    else:
        assert parse_strict_json(body, DEPTH) == value


@bounded(300)
@given(st.from_regex(r"-?(0|[1-9][0-9]{0,400})(\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?", fullmatch=True))
def test_a_number_parses_to_a_finite_value_or_invalid_body_naming_it(literal):
    """1e400 would parse as infinity, which PostgreSQL refuses: the parser refuses it instead."""
    try:
        [value] = parse_strict_json(f"[{literal}]".encode(), DEPTH)
    except InvalidBody as exc:
        assert "too large for a float" in exc.message
        assert math.isinf(float(literal))
        return
    assert isinstance(value, int) or math.isfinite(value)


# --- The validators -----------------------------------------------------------------------------


@bounded(400)
@given(ingest_bodies)
def test_the_ingest_validator_returns_fields_or_invalid_body(payload):
    try:
        fields = validate_event(payload)
    except InvalidBody as exc:
        assert exc.message.startswith(("Invalid fields: ", "The body must be"))
        return
    assert fields["status"] in STATUSES
    for name, limit in (("message", 1000), ("description", 10000), ("event_type", 100),
                        ("external_id", 255)):
        assert len(fields.get(name, "")) <= limit
    if "duration_ms" in fields:
        assert math.isfinite(fields["duration_ms"]) and fields["duration_ms"] >= 0
    if "metadata" in fields:
        compact = json.dumps(fields["metadata"], separators=(",", ":"), ensure_ascii=False,
                             allow_nan=False)
        assert len(compact.encode()) <= django_settings.INGEST_MAX_METADATA_BYTES


@bounded(400)
@given(events_bodies)
def test_the_v1_events_validator_accounts_for_every_event_or_raises_a_request_error(body):
    try:
        batch = validate_events(body, ALLOWED, NOW)
    except (InvalidBody, BatchTooLarge):
        return
    assert isinstance(batch, ValidBatch)
    indexes = sorted([e.index for e in batch.events] + [r.index for r in batch.rejections])
    assert indexes == list(range(batch.size)) == list(range(len(body["events"])))
    assert {r.code for r in batch.rejections} <= {INVALID_BODY, MISSING_ACTOR, FORBIDDEN_EVENT_TYPE}
    for valid in batch.events:
        assert valid.event_type in ALLOWED and valid.category in Category.values
        assert valid.duration is None or 0 <= valid.duration <= 86400
        if valid.timestamp is not None:
            assert valid.timestamp.astimezone(UTC) <= NOW + timedelta(hours=24)  # storable in UTC
        if valid.metadata_json is not None:
            assert len(valid.metadata_json.encode()) <= django_settings.V1_MAX_METADATA_BYTES


@bounded(400)
@given(snapshot_bodies)
def test_the_v1_snapshot_validator_returns_a_snapshot_or_a_documented_error(body):
    try:
        snapshot = validate_snapshot(body, NOW)
    except (InvalidBody, MissingActor):
        return
    assert isinstance(snapshot, ValidSnapshot)
    assert 1 <= len(snapshot.snapshot_type) <= 100
    assert 1 <= len(snapshot.metrics) <= django_settings.V1_MAX_METRICS
    if snapshot.timestamp is not None:
        assert snapshot.timestamp.astimezone(UTC) <= NOW + timedelta(hours=24)  # storable in UTC


@bounded(200)
@given(st.lists(valid_events, min_size=1, max_size=5))
def test_events_inside_every_documented_limit_are_all_accepted(events):
    batch = validate_events({"events": events}, ALLOWED, NOW)
    assert batch.rejections == []
    assert [e.index for e in batch.events] == list(range(len(events)))


@bounded(200)
@given(valid_snapshots)
def test_a_snapshot_inside_every_documented_limit_is_accepted(body):
    assert validate_snapshot(body, NOW).metrics == body["metrics"]


# --- End to end on both executors -----------------------------------------------------------------

with open(ROOT / "docs" / "openapi" / "v1.yaml") as document:
    PATHS = yaml.safe_load(document)["paths"]
DOCUMENTED = {path: {int(code) for code in PATHS[path]["post"]["responses"]}
              for path in ("/api/ingest", "/api/v1/ingest/events", "/api/v1/ingest/snapshots")}


@pytest.fixture
def post(api, auth_header):
    """POST raw bytes to an endpoint with the Pro key, on each executor (the `api` fixture);
    bursts high enough never to interfere."""
    Plan.objects.filter(code="pro").update(burst_per_key=10**6, burst_per_workspace=10**6)

    def send(path: str, body: bytes):
        return api.generic("POST", path, body, content_type="application/json", **auth_header)

    return send


def assert_documented(path: str, response) -> None:
    assert response.status_code != 500, response.content
    assert response.status_code in DOCUMENTED[path], (response.status_code, response.content[:500])
    if response.status_code >= 400:
        assert response["Content-Type"] == "application/json"
        error = response.json()["error"]
        assert error["code"] in ERROR_CODES
        assert error["requestId"] == response["X-Request-Id"]
        # An error's status is its code's; only quota_exceeded is 402 on v1 (429 on /api/ingest).
        assert response.status_code == ERROR_CODES[error["code"]].status or (
            error["code"] == "quota_exceeded" and response.status_code == 402)


def _body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


@pytest.mark.django_db
@bounded(60)
@given(ingest_bodies | st.binary(max_size=64))
def test_any_body_to_the_ingest_api_answers_a_documented_status(post, payload):
    body = payload if isinstance(payload, bytes) else _body(payload)
    assert_documented("/api/ingest", post("/api/ingest", body))


@pytest.mark.django_db
@bounded(60)
@given(events_bodies)
def test_any_body_to_v1_events_answers_a_documented_status(post, payload):
    assert_documented("/api/v1/ingest/events", post("/api/v1/ingest/events", _body(payload)))


@pytest.mark.django_db
@bounded(60)
@given(snapshot_bodies)
def test_any_body_to_v1_snapshots_answers_a_documented_status(post, payload):
    assert_documented("/api/v1/ingest/snapshots", post("/api/v1/ingest/snapshots", _body(payload)))


# --- Regressions found by fuzzing -----------------------------------------------------------------

YEAR_ONE_EDGE = ["0001-01-01T00:00:00+05:30", "0001-01-01T23:58:00+23:59"]
EVENT = {"eventType": "ticket.resolved", "category": "support", "actor": {"externalId": "u-1"}}
SNAPSHOT = {"snapshotType": "tickets_open", "actor": {"externalId": "u-1"}, "metrics": {"open": 7}}


@pytest.mark.parametrize("stamp", YEAR_ONE_EDGE)
def test_a_timestamp_before_year_one_in_utc_is_rejected_by_the_validators(stamp):
    (rejection,) = validate_events({"events": [{**EVENT, "timestamp": stamp}]}, ALLOWED, NOW).rejections
    assert rejection.code == INVALID_BODY
    assert "timestamp: must fall on or after 0001-01-01T00:00:00Z" in rejection.message
    with pytest.raises(InvalidBody, match="on or after 0001-01-01T00:00:00Z"):
        validate_snapshot({**SNAPSHOT, "timestamp": stamp}, NOW)


def test_the_first_moment_of_year_one_in_utc_is_accepted_in_any_offset():
    stamps = ["0001-01-01T00:00:00Z", "0001-01-01T05:30:00+05:30", "0001-01-01T00:00:00-23:59"]
    batch = validate_events({"events": [{**EVENT, "timestamp": s} for s in stamps]}, ALLOWED, NOW)
    assert batch.rejections == []
    assert {e.timestamp for e in batch.events} <= {datetime(1, 1, 1, tzinfo=UTC),
                                                   datetime(1, 1, 1, 23, 59, tzinfo=UTC)}


@pytest.mark.django_db
@pytest.mark.parametrize("stamp", YEAR_ONE_EDGE)
def test_a_timestamp_before_year_one_in_utc_is_400_on_both_v1_endpoints_not_500(post, stamp):
    """It was a 500: the UTC conversion on the way to the database fell before year 1."""
    events = post("/api/v1/ingest/events", _body({"events": [{**EVENT, "timestamp": stamp}]}))
    assert events.status_code == 400, events.content
    assert events.json()["error"]["code"] == "invalid_body"
    snapshot = post("/api/v1/ingest/snapshots", _body({**SNAPSHOT, "timestamp": stamp}))
    assert snapshot.status_code == 400, snapshot.content
    assert snapshot.json()["error"]["code"] == "invalid_body"
