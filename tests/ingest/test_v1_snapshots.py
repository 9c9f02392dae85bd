"""POST /api/v1/ingest/snapshots (SPEC §4): the current card, its history, out-of-order data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.models import Usage
from ingest.models import Snapshot, SnapshotHistory
from tests.ingest.v1support import (
    IN_MEMORY_LAYER,
    REQUEST_ID,
    GroupListener,
    post_json,
)
from workspaces.models import Worker

pytestmark = pytest.mark.django_db

SNAPSHOTS = "/api/v1/ingest/snapshots"


def snapshot(**overrides):
    body = {
        "snapshotType": "tickets_open",
        "actor": {"externalId": "crm-user-42", "email": "Alex.Chen@Example.com"},
        "timestamp": "2026-04-19T12:00:00Z",
        "metrics": {"open": 7, "oldest": {"value": 3, "unit": "days", "label": "Oldest ticket"}},
        "metadata": {"queue": "tier-1"},
    }
    body.update(overrides)
    return body


def test_a_snapshot_becomes_the_current_card_and_enters_the_history(
    api, auth_header, workspace, source
):
    response = post_json(api, SNAPSHOTS, snapshot(), auth_header)

    assert response.status_code == 202
    body = response.json()
    worker = Worker.objects.get(external_id="crm-user-42")
    assert REQUEST_ID.match(body["requestId"]) and body["requestId"] == response["X-Request-Id"]
    assert body == {
        "requestId": body["requestId"],
        "ok": True,
        "snapshotType": "tickets_open",
        "worker": {"id": worker.public_id, "displayName": "alex.chen",
                   "externalId": "crm-user-42"},
    }
    card = Snapshot.objects.get()
    assert (card.worker_id, card.source_id, card.workspace_id) == (
        worker.pk, source.pk, workspace.pk,
    )
    assert card.metrics["oldest"] == {"value": 3, "unit": "days", "label": "Oldest ticket"}
    assert card.timestamp == datetime(2026, 4, 19, 12, tzinfo=UTC)
    assert card.request_id == body["requestId"]
    assert SnapshotHistory.objects.count() == 1


def test_a_newer_snapshot_replaces_the_card_and_an_older_one_never_does(api, auth_header):
    post_json(api, SNAPSHOTS, snapshot(metrics={"open": 7}), auth_header)
    newer = post_json(
        api, SNAPSHOTS, snapshot(timestamp="2026-04-19T13:00:00Z", metrics={"open": 9}),
        auth_header,
    )
    late = post_json(
        api, SNAPSHOTS, snapshot(timestamp="2026-04-19T12:30:00+00:00", metrics={"open": 1}),
        auth_header,
    )

    assert (newer.status_code, late.status_code) == (202, 202)
    card = Snapshot.objects.get()
    assert card.metrics == {"open": 9}
    assert card.timestamp == datetime(2026, 4, 19, 13, tzinfo=UTC)
    assert card.request_id == newer.json()["requestId"]
    assert sorted(h.metrics["open"] for h in SnapshotHistory.objects.all()) == [1, 7, 9]


def test_a_snapshot_with_the_same_timestamp_replaces_the_card(api, auth_header):
    post_json(api, SNAPSHOTS, snapshot(metrics={"open": 7}), auth_header)
    post_json(api, SNAPSHOTS, snapshot(metrics={"open": 8}), auth_header)
    assert Snapshot.objects.get().metrics == {"open": 8}


def test_each_snapshot_type_and_worker_has_its_own_card(api, auth_header):
    post_json(api, SNAPSHOTS, snapshot(), auth_header)
    post_json(api, SNAPSHOTS, snapshot(snapshotType="calls_today"), auth_header)
    post_json(api, SNAPSHOTS, snapshot(actor={"email": "sam@example.com"}), auth_header)
    assert Snapshot.objects.count() == 3


def test_snapshots_never_count_towards_the_event_quota(api, auth_header, workspace):
    workspace.event_limit_override = 0
    workspace.save(update_fields=["event_limit_override"])
    response = post_json(api, SNAPSHOTS, snapshot(), auth_header)
    assert response.status_code == 202
    assert not Usage.objects.filter(events__gt=0).exists()


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"snapshotType": None}, "snapshotType: required"),
        ({"snapshotType": "x" * 101}, "snapshotType: must be at most 100"),
        ({"metrics": {}}, "metrics: required"),
        ({"metrics": {f"m{i}": i for i in range(101)}}, "metrics: at most 100"),
        ({"metrics": {"open": True}}, "metrics.open:"),
        ({"metrics": {"open": "x" * 201}}, "metrics.open:"),
        ({"metrics": {"open": {"unit": "d"}}}, "metrics.open.value"),
        ({"timestamp": "2026-04-19T12:00:00"}, "timestamp: must carry a UTC offset"),
        ({"metadata": [1]}, "metadata: must be an object"),
        ({"metadata": {"x": "y" * 16384}}, "metadata: must be at most 16384 bytes"),
    ],
)
def test_a_bad_snapshot_is_refused_naming_the_field(api, auth_header, overrides, words):
    response = post_json(api, SNAPSHOTS, snapshot(**overrides), auth_header)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_body"
    assert words in error["message"]
    assert not SnapshotHistory.objects.exists() and not Worker.objects.exists()


def test_a_snapshot_without_an_actor_is_missing_actor(api, auth_header):
    response = post_json(api, SNAPSHOTS, snapshot(actor={"email": None}), auth_header)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_actor"


def test_a_worker_id_of_another_workspace_is_not_found(api, auth_header, other_workspace):
    stranger = Worker.objects.create(workspace=other_workspace, display_name="Stranger")
    response = post_json(
        api, SNAPSHOTS, snapshot(actor={"workerId": stranger.public_id}), auth_header
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "worker_not_found"
    assert not SnapshotHistory.objects.exists()


def test_a_body_over_1_mb_is_a_batch_too_large(api, auth_header):
    data = '{"snapshotType": "t", "pad": "' + "x" * (1024 * 1024) + '"}'
    response = post_json(api, SNAPSHOTS, data, auth_header)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "batch_too_large"


# In process: the broadcast is heard on this process's in-memory channel layer.
def test_a_snapshot_is_one_message_after_commit(
    client, auth_header, workspace, source, settings, django_capture_on_commit_callbacks
):
    settings.CHANNEL_LAYERS = IN_MEMORY_LAYER
    listener = GroupListener(workspace.public_id)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(client, SNAPSHOTS, snapshot(), auth_header)

    assert response.status_code == 202
    (message,) = listener.messages()
    assert message["type"] == "snapshot"
    item = message["item"]
    assert item["snapshotType"] == "tickets_open"
    assert item["worker"] == response.json()["worker"]
    assert item["timestamp"] == "2026-04-19T12:00:00Z"
    assert item["metrics"]["open"] == 7 and item["metadata"] == {"queue": "tier-1"}
    assert item["source"] == {"id": source.public_id, "slug": "crm-hub", "name": "CRM Hub"}
    assert item["receivedAt"].endswith("Z") and item["current"] is True


def test_a_dry_run_stores_nothing(api, auth_header):
    response = post_json(api, SNAPSHOTS + "?dryRun=true", snapshot(), auth_header)
    assert response.status_code == 202
    assert response.json()["worker"]["displayName"] == "alex.chen"
    assert not Worker.objects.exists() and not SnapshotHistory.objects.exists()


def test_the_same_idempotency_key_replays_without_a_second_history_row(api, auth_header):
    first = post_json(api, SNAPSHOTS, snapshot(), auth_header, HTTP_IDEMPOTENCY_KEY="snap-1")
    again = post_json(api, SNAPSHOTS, snapshot(), auth_header, HTTP_IDEMPOTENCY_KEY="snap-1")
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert SnapshotHistory.objects.count() == 1
