"""The v1 validation rules (SPEC §4) on the validator itself; HTTP tests cover the wiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ackly.errors import BatchTooLarge, InvalidBody, MissingActor
from ingest.validation_v1 import Actor, validate_events, validate_snapshot

NOW = datetime(2026, 4, 19, 12, 0, tzinfo=UTC)
ALLOWED = frozenset({"ticket.resolved", "call.logged"})


def event(**overrides):
    base = {
        "eventType": "ticket.resolved",
        "category": "support",
        "actor": {"externalId": "crm-user-42"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def one(ev):
    batch = validate_events({"events": [ev]}, ALLOWED, NOW)
    return batch


def rejection_of(ev):
    batch = one(ev)
    assert batch.events == []
    (rejection,) = batch.rejections
    return rejection


def test_it_accepts_a_minimal_event_with_defaults():
    batch = one(event())
    (valid,) = batch.events
    assert valid.index == 0
    assert valid.actor == Actor("externalId", "crm-user-42", None)
    assert valid.timestamp is None and valid.duration is None and valid.metadata is None


def test_it_accepts_every_field_at_its_limit():
    valid_ts = (NOW + timedelta(hours=24)).isoformat()
    batch = one(event(timestamp=valid_ts, duration=86400, metadata={"a": "x" * 16376}))
    (valid,) = batch.events
    assert valid.timestamp == NOW + timedelta(hours=24)
    assert valid.duration == 86400


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "JSON object"),
        ({}, "events: required"),
        ({"events": None}, "events: required"),
        ({"events": {"a": 1}}, "events: must be an array"),
        ({"events": []}, "at least one"),
    ],
)
def test_it_refuses_a_request_without_a_usable_events_array(body, message):
    with pytest.raises(InvalidBody) as caught:
        validate_events(body, ALLOWED, NOW)
    assert message in caught.value.message


def test_it_takes_500_events_and_refuses_501():
    assert len(validate_events({"events": [event()] * 500}, ALLOWED, NOW).events) == 500
    with pytest.raises(BatchTooLarge) as caught:
        validate_events({"events": [event()] * 501}, ALLOWED, NOW)
    assert caught.value.status_code == 413
    assert "501" in caught.value.message


def test_it_rejects_an_event_type_outside_the_whitelist():
    rejection = rejection_of(event(eventType="deploy.shipped"))
    assert rejection.code == "forbidden_event_type"
    assert rejection.message == "eventType 'deploy.shipped' is not whitelisted."


def test_an_empty_whitelist_allows_no_event_type():
    batch = validate_events({"events": [event()]}, frozenset(), NOW)
    assert [r.code for r in batch.rejections] == ["forbidden_event_type"]


@pytest.mark.parametrize("value", [None, "", 5, ["x"], "x" * 101])
def test_it_rejects_a_missing_or_malformed_event_type(value):
    rejection = rejection_of(event(eventType=value))
    assert rejection.code == "invalid_body"
    assert rejection.message.startswith("events[0].eventType:")


@pytest.mark.parametrize("value", [None, "Support", "sport", 3, ["support"], {"a": 1}])
def test_it_rejects_a_category_outside_the_seven(value):
    rejection = rejection_of(event(category=value))
    assert rejection.code == "invalid_body"
    assert "events[0].category:" in rejection.message
    assert "project_management" in rejection.message


@pytest.mark.parametrize("actor", [None, {}, {"workerId": None, "externalId": None, "email": None}])
def test_it_rejects_an_event_without_any_actor_identifier(actor):
    rejection = rejection_of(event(actor=actor))
    assert rejection.code == "missing_actor"
    assert "events[0].actor" in rejection.message


@pytest.mark.parametrize(
    "actor, field",
    [
        ("crm-user-42", "events[0].actor:"),
        ({"workerId": 12}, "events[0].actor.workerId"),
        ({"externalId": ""}, "events[0].actor.externalId"),
        ({"externalId": "x" * 256}, "events[0].actor.externalId"),
        ({"email": "not-an-email"}, "events[0].actor.email"),
        ({"email": "a@b@c"}, "events[0].actor.email"),
    ],
)
def test_it_rejects_a_malformed_actor_as_invalid_body(actor, field):
    rejection = rejection_of(event(actor=actor))
    assert rejection.code == "invalid_body"
    assert field in rejection.message


def test_actor_resolution_takes_the_first_identifier_in_order():
    ev = event(actor={"email": "Alex@Example.com", "externalId": "e-1", "workerId": "wrk_1"})
    assert one(ev).events[0].actor == Actor("workerId", "wrk_1", "alex@example.com")
    ev = event(actor={"email": "Alex@Example.com", "externalId": "e-1"})
    assert one(ev).events[0].actor == Actor("externalId", "e-1", "alex@example.com")
    ev = event(actor={"email": "Alex@Example.com"})
    assert one(ev).events[0].actor == Actor("email", "alex@example.com", "alex@example.com")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-04-19T12:05:00Z", datetime(2026, 4, 19, 12, 5, tzinfo=UTC)),
        ("2026-04-19T14:05:00+02:00", datetime(2026, 4, 19, 12, 5, tzinfo=UTC)),
        ("2026-04-19T12:05:00.250Z", datetime(2026, 4, 19, 12, 5, 0, 250000, tzinfo=UTC)),
    ],
)
def test_it_accepts_timestamps_with_an_offset(value, expected):
    assert one(event(timestamp=value)).events[0].timestamp == expected


@pytest.mark.parametrize(
    "value, words",
    [
        ("2026-04-19T12:05:00", "offset"),
        ("2026-04-19", "offset"),
        ("yesterday", "ISO 8601"),
        (1713528300, "ISO 8601"),
        ("2026-04-20T12:00:01Z", "24 hours"),
    ],
)
def test_it_rejects_naive_unparseable_and_far_future_timestamps(value, words):
    rejection = rejection_of(event(timestamp=value))
    assert rejection.code == "invalid_body"
    assert "events[0].timestamp:" in rejection.message and words in rejection.message


@pytest.mark.parametrize("value", [True, False, 1.0, 2.5, -1, 86401, "60"])
def test_it_rejects_a_duration_that_is_not_a_whole_number_in_range(value):
    rejection = rejection_of(event(duration=value))
    assert rejection.code == "invalid_body"
    assert "events[0].duration:" in rejection.message


@pytest.mark.parametrize("value", [0, 1, 86400])
def test_it_accepts_a_whole_duration_in_range(value):
    assert one(event(duration=value)).events[0].duration == value


def test_metadata_is_measured_as_compact_utf8_json():
    # {"a":"…"} is 8 bytes of syntax; é is 2 bytes in UTF-8.
    at_limit = {"a": "é" * ((16384 - 8) // 2)}
    assert one(event(metadata=at_limit)).events[0].metadata == at_limit
    over = {"a": "é" * ((16384 - 8) // 2) + "x"}
    rejection = rejection_of(event(metadata=over))
    assert rejection.code == "invalid_body"
    assert "events[0].metadata:" in rejection.message and "16384" in rejection.message


@pytest.mark.parametrize("value", [[1, 2], "text", 3])
def test_it_rejects_metadata_that_is_not_an_object(value):
    assert "events[0].metadata: must be an object" in rejection_of(event(metadata=value)).message


def test_a_lone_surrogate_in_metadata_is_invalid_not_a_crash():
    rejection = rejection_of(event(metadata={"a": "\ud800"}))
    assert rejection.code == "invalid_body"


def test_the_message_names_every_offending_field_and_invalid_body_wins():
    rejection = rejection_of(
        {"eventType": "deploy.shipped", "category": "x", "actor": {}, "duration": 1.5}
    )
    assert rejection.code == "invalid_body"
    for part in ("events[0].category", "events[0].duration", "events[0].actor", "not whitelisted"):
        assert part in rejection.message


def test_missing_actor_wins_over_forbidden_event_type():
    rejection = rejection_of(event(eventType="deploy.shipped", actor=None))
    assert rejection.code == "missing_actor"
    assert "not whitelisted" in rejection.message


def test_rejections_keep_the_index_of_the_request():
    events = [event(), "nope", event(category="x"), event(), event(eventType="deploy.shipped")]
    batch = validate_events({"events": events}, ALLOWED, NOW)
    assert [e.index for e in batch.events] == [0, 3]
    assert [(r.index, r.code) for r in batch.rejections] == [
        (1, "invalid_body"), (2, "invalid_body"), (4, "forbidden_event_type"),
    ]
    assert batch.rejections[0].message == "events[1]: must be an object"
    assert batch.rejections[1].message.startswith("events[2].category:")


def test_unknown_fields_and_nulls_are_ignored():
    ev = event(timestamp=None, duration=None, metadata=None, extra={"x": 1})
    assert len(one(ev).events) == 1


# --- snapshots ------------------------------------------------------------------------------


def snapshot(**overrides):
    base = {
        "snapshotType": "tickets_open",
        "actor": {"email": "alex@example.com"},
        "metrics": {"open": 7},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_it_accepts_every_metric_shape():
    metrics = {
        "open": 7,
        "ratio": 0.25,
        "status": "on shift",
        "oldest": {"value": 3, "unit": "days", "label": "Oldest ticket"},
        "plain": {"value": "n/a"},
        "long": "x" * 200,
    }
    valid = validate_snapshot(snapshot(metrics=metrics), NOW)
    assert valid.metrics == metrics
    assert valid.actor == Actor("email", "alex@example.com", "alex@example.com")


@pytest.mark.parametrize(
    "metrics, words",
    [
        (None, "metrics: required"),
        ({}, "metrics: required"),
        ([1], "metrics: required"),
        ({f"m{i}": i for i in range(101)}, "at most 100"),
        ({"x": True}, "metrics.x:"),
        ({"x": None}, "metrics.x:"),
        ({"x": [1]}, "metrics.x:"),
        ({"x": "y" * 201}, "metrics.x:"),
        ({"x": {"unit": "s"}}, "metrics.x.value"),
        ({"x": {"value": True}}, "metrics.x.value"),
        ({"x": {"value": 1, "unit": 3}}, "metrics.x.unit"),
        ({"x": {"value": 1, "color": "red"}}, "unknown field(s) color"),
        ({"": 1}, "names must be"),
    ],
)
def test_it_rejects_bad_metrics_naming_the_metric(metrics, words):
    with pytest.raises(InvalidBody) as caught:
        validate_snapshot(snapshot(metrics=metrics), NOW)
    assert words in caught.value.message


def test_it_accepts_exactly_100_metrics():
    metrics = {f"m{i}": i for i in range(100)}
    assert len(validate_snapshot(snapshot(metrics=metrics), NOW).metrics) == 100


def test_a_snapshot_without_actor_is_missing_actor():
    with pytest.raises(MissingActor):
        validate_snapshot(snapshot(actor={}), NOW)


def test_a_snapshot_lists_every_problem():
    with pytest.raises(InvalidBody) as caught:
        validate_snapshot({"snapshotType": "", "timestamp": "2026-04-19", "metrics": {}}, NOW)
    message = caught.value.message
    for part in ("snapshotType:", "actor:", "timestamp:", "metrics:"):
        assert part in message
