"""POST /api/v1/ingest/events (SPEC §4): batches, per-event results, quota, idempotency, live."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import connection, connections
from ulid import ULID

from ackly.ids import new_public_ids
from billing.models import Usage
from ingest.models import Rejection, TimelineEvent
from sources.services import create_source
from tests.ingest.v1support import (
    IN_MEMORY_LAYER,
    REQUEST_ID,
    GroupListener,
    post_events,
    post_json,
    seed_event,
)
from workspaces.models import Worker

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/ingest/events"


def used_quota(workspace) -> int:
    return sum(Usage.objects.filter(workspace=workspace).values_list("events", flat=True))


def rejection_counts(source) -> dict[str, int]:
    return {r.code: r.count for r in Rejection.objects.filter(source=source)}


# --- The seed's example -------------------------------------------------------------------------


def test_the_seed_example_is_accepted_with_the_documented_fields(api, auth_header, workspace):
    response = post_events(
        api, [seed_event()], auth_header, HTTP_IDEMPOTENCY_KEY="crm-batch-8412"
    )

    assert response.status_code == 202
    body = response.json()
    assert REQUEST_ID.match(body["requestId"])
    assert response["X-Request-Id"] == body["requestId"]
    assert body["accepted"] == 1 and body["rejected"] == 0 and body["batchLimit"] == 500
    (accepted,) = body["results"]["accepted"]
    assert accepted["index"] == 0 and accepted["eventType"] == "ticket.resolved"
    assert accepted["timestamp"].endswith("Z")
    assert body["results"]["rejected"] == []

    event = TimelineEvent.objects.get()
    assert event.worker.external_id == "crm-user-42"
    assert event.worker.workspace_id == workspace.pk
    assert (event.category, event.duration, event.metadata) == (
        "project_management", 240, {"ticket_id": "SUP-431"},
    )
    assert event.request_id == body["requestId"]
    assert accepted["timestamp"] == event.timestamp.isoformat().replace("+00:00", "Z")
    assert used_quota(workspace) == 1


def test_the_same_key_and_body_replays_the_first_response(api, auth_header):
    first = post_events(api, [seed_event()], auth_header, HTTP_IDEMPOTENCY_KEY="crm-batch-8412")
    again = post_events(api, [seed_event()], auth_header, HTTP_IDEMPOTENCY_KEY="crm-batch-8412")

    assert again.status_code == 202
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert again["X-Request-Id"] == first.json()["requestId"]
    assert TimelineEvent.objects.count() == 1


def test_the_same_key_with_another_body_is_a_conflict(api, auth_header):
    post_events(api, [seed_event()], auth_header, HTTP_IDEMPOTENCY_KEY="crm-batch-8412")
    response = post_events(
        api, [seed_event(duration=1)], auth_header, HTTP_IDEMPOTENCY_KEY="crm-batch-8412"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert TimelineEvent.objects.count() == 1


def test_a_partial_batch_replays_its_207(api, auth_header):
    events = [seed_event(), seed_event(eventType="deploy.shipped")]
    first = post_events(api, events, auth_header, HTTP_IDEMPOTENCY_KEY="k-207")
    again = post_events(api, events, auth_header, HTTP_IDEMPOTENCY_KEY="k-207")
    assert (first.status_code, again.status_code) == (207, 207)
    assert again.content == first.content
    assert TimelineEvent.objects.count() == 1


# --- Per-event rules ----------------------------------------------------------------------------


def test_a_partial_batch_reports_each_rejection_by_index_with_its_code(
    api, auth_header, source, other_workspace
):
    stranger = Worker.objects.create(workspace=other_workspace, display_name="Stranger")
    events = [
        seed_event(),
        seed_event(eventType="deploy.shipped"),
        seed_event(category="marketing"),
        seed_event(actor={}),
        seed_event(actor={"workerId": stranger.public_id}),
        seed_event(duration=True),
        seed_event(actor={"email": "Sam.Lee@Example.com"}, timestamp="2026-04-19T14:05:00+02:00"),
    ]
    response = post_events(api, events, auth_header)

    assert response.status_code == 207
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 5)
    assert [a["index"] for a in body["results"]["accepted"]] == [0, 6]
    assert body["results"]["accepted"][1]["timestamp"] == "2026-04-19T12:05:00Z"
    assert [(r["index"], r["code"]) for r in body["results"]["rejected"]] == [
        (1, "forbidden_event_type"),
        (2, "invalid_body"),
        (3, "missing_actor"),
        (4, "worker_not_found"),
        (5, "invalid_body"),
    ]
    messages = {r["index"]: r["message"] for r in body["results"]["rejected"]}
    assert messages[1] == "eventType 'deploy.shipped' is not whitelisted."
    assert messages[2].startswith("events[2].category: must be one of communication, ")
    assert messages[5].startswith("events[5].duration:")

    assert TimelineEvent.objects.count() == 2
    sam = Worker.objects.get(email="sam.lee@example.com")
    assert sam.display_name == "sam.lee" and sam.workspace_id == source.workspace_id
    sam_event = TimelineEvent.objects.get(worker=sam)
    assert sam_event.timestamp == datetime(2026, 4, 19, 12, 5, tzinfo=UTC)
    assert rejection_counts(source) == {
        "forbidden_event_type": 1, "invalid_body": 2, "missing_actor": 1, "worker_not_found": 1,
    }


def test_an_own_worker_id_is_resolved_first(api, auth_header, workspace):
    alex = Worker.objects.create(workspace=workspace, display_name="Alex", external_id="other")
    actor = {"workerId": alex.public_id, "externalId": "crm-user-42", "email": "x@example.com"}
    response = post_events(api, [seed_event(actor=actor)], auth_header)
    assert response.status_code == 202
    assert TimelineEvent.objects.get().worker_id == alex.pk
    assert Worker.objects.count() == 1


def test_a_worker_id_of_another_workspace_is_not_found(api, auth_header, other_workspace):
    stranger = Worker.objects.create(workspace=other_workspace, display_name="Stranger")
    events = [seed_event(actor={"workerId": stranger.public_id})]
    response = post_events(api, events, auth_header)

    assert response.status_code == 404
    body = response.json()
    assert body["error"]["code"] == "worker_not_found"
    assert stranger.public_id in body["results"]["rejected"][0]["message"]
    assert not TimelineEvent.objects.exists()


@pytest.mark.parametrize(
    "events, status, code",
    [
        ([seed_event(eventType="deploy.shipped"), seed_event(category="x")], 403,
         "forbidden_event_type"),
        ([seed_event(category="x"), seed_event(eventType="deploy.shipped")], 400, "invalid_body"),
        ([seed_event(actor={"email": None})], 400, "missing_actor"),
        ([seed_event(actor={"workerId": "wrk_nope"})], 404, "worker_not_found"),
    ],
)
def test_when_every_event_is_rejected_the_first_code_decides_the_status(
    api, auth_header, source, events, status, code
):
    response = post_events(api, events, auth_header)

    assert response.status_code == status
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["requestId"] == response["X-Request-Id"]
    assert body["error"]["docsUrl"].endswith(f"/docs/errors/{code}/")
    assert body["accepted"] == 0 and body["rejected"] == len(events)
    assert body["batchLimit"] == 500 and body["results"]["accepted"] == []
    assert body["results"]["rejected"][0]["code"] == code
    assert not TimelineEvent.objects.exists()
    assert not Worker.objects.exists()
    # Each rejected event counted once, the one the status speaks for included.
    assert sum(rejection_counts(source).values()) == len(events)
    assert rejection_counts(source)[code] >= 1


def test_an_all_rejected_batch_can_be_retried_with_the_same_key_once_fixed(api, auth_header):
    bad = post_events(
        api, [seed_event(category="x")], auth_header, HTTP_IDEMPOTENCY_KEY="retry-me"
    )
    good = post_events(api, [seed_event()], auth_header, HTTP_IDEMPOTENCY_KEY="retry-me")
    assert (bad.status_code, good.status_code) == (400, 202)


def test_an_empty_whitelist_allows_no_event(api, workspace):
    _, issued = create_source(workspace, "Open", allowed_event_types=[])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
    response = post_events(api, [seed_event()], auth)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden_event_type"


# --- Request-level faults -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["{not json", "[]", "{}", '{"events": []}', '{"events": {"a": 1}}', '{"events": null}',
     '{"events": [NaN]}', '{"events": [], "events": [1]}'],
)
def test_a_request_without_a_usable_events_array_is_invalid(api, auth_header, body):
    response = post_json(api, EVENTS, body, auth_header)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
    assert "results" not in response.json()
    assert not TimelineEvent.objects.exists()


def test_exactly_500_events_are_accepted(api, auth_header, workspace):
    events = [seed_event(actor={"externalId": f"u-{i % 37}"}) for i in range(500)]
    response = post_events(api, events, auth_header)

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 500
    assert [a["index"] for a in body["results"]["accepted"]] == list(range(500))
    assert TimelineEvent.objects.count() == 500
    assert Worker.objects.filter(workspace=workspace).count() == 37
    assert used_quota(workspace) == 500


def test_501_events_are_a_batch_too_large(api, auth_header, workspace):
    response = post_events(api, [seed_event()] * 501, auth_header)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "batch_too_large"
    assert not TimelineEvent.objects.exists()
    assert used_quota(workspace) == 0


def test_a_body_over_1_mb_is_a_batch_too_large(api, auth_header):
    events = [seed_event(metadata={"pad": "x" * 15000}) for _ in range(70)]
    data = json.dumps({"events": events})
    assert len(data) > 1024 * 1024
    response = post_json(api, EVENTS, data, auth_header)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "batch_too_large"
    assert not TimelineEvent.objects.exists()


def test_without_a_key_it_is_refused(api):
    response = post_events(api, [seed_event()], {})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_authorization"


# --- Quota --------------------------------------------------------------------------------------


@pytest.fixture
def small_quota(workspace):
    workspace.event_limit_override = 3
    workspace.save(update_fields=["event_limit_override"])
    return workspace


def test_when_only_k_of_n_fit_the_first_k_are_accepted(api, auth_header, small_quota, source):
    events = [seed_event(), seed_event(category="x")] + [seed_event() for _ in range(4)]
    response = post_events(api, events, auth_header)

    assert response.status_code == 207
    body = response.json()
    assert [a["index"] for a in body["results"]["accepted"]] == [0, 2, 3]
    assert [(r["index"], r["code"]) for r in body["results"]["rejected"]] == [
        (1, "invalid_body"), (4, "quota_exceeded"), (5, "quota_exceeded"),
    ]
    assert response["X-Quota-Limit"] == "3" and response["X-Quota-Remaining"] == "0"
    assert TimelineEvent.objects.count() == 3
    assert used_quota(small_quota) == 3
    assert rejection_counts(source) == {"invalid_body": 1, "quota_exceeded": 2}


def test_with_no_room_at_all_it_answers_402(api, auth_header, small_quota):
    post_events(api, [seed_event()] * 3, auth_header)
    response = post_events(api, [seed_event(), seed_event()], auth_header)

    assert response.status_code == 402
    body = response.json()
    assert body["error"]["code"] == "quota_exceeded"
    assert int(response["Retry-After"]) > 0
    assert [r["code"] for r in body["results"]["rejected"]] == ["quota_exceeded"] * 2
    assert TimelineEvent.objects.count() == 3
    assert used_quota(small_quota) == 3


def test_a_rejected_event_does_not_use_quota(api, auth_header, small_quota):
    post_events(api, [seed_event(eventType="deploy.shipped"), seed_event()], auth_header)
    assert used_quota(small_quota) == 1


# --- Dry run ------------------------------------------------------------------------------------


# In process: the broadcast is heard on this process's in-memory channel layer.
def test_a_dry_run_answers_like_the_real_request_and_stores_nothing(
    client, auth_header, workspace, source, settings
):
    settings.CHANNEL_LAYERS = IN_MEMORY_LAYER
    listener = GroupListener(workspace.public_id)
    events = [
        seed_event(), seed_event(eventType="deploy.shipped"), seed_event(actor={"email": "n@x.io"})
    ]
    response = post_events(client, events, auth_header, query="?dryRun=true")

    assert response.status_code == 207
    body = response.json()
    assert [a["index"] for a in body["results"]["accepted"]] == [0, 2]
    assert body["results"]["rejected"][0]["code"] == "forbidden_event_type"
    assert not TimelineEvent.objects.exists()
    assert not Worker.objects.exists()
    assert used_quota(workspace) == 0
    assert not Rejection.objects.exists()
    assert listener.messages() == []


def test_a_dry_run_reports_missing_quota_room(api, auth_header, small_quota):
    post_events(api, [seed_event()] * 3, auth_header)
    response = post_events(api, [seed_event()], auth_header, query="?dryRun=1")
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert used_quota(small_quota) == 3


# --- Live broadcast and the bulk insert ---------------------------------------------------------


# In process: the broadcast is heard on this process's in-memory channel layer.
def test_a_500_event_batch_is_one_timeline_message_after_commit(
    client, auth_header, workspace, source, settings, django_capture_on_commit_callbacks
):
    settings.CHANNEL_LAYERS = IN_MEMORY_LAYER
    listener = GroupListener(workspace.public_id)
    events = [seed_event(actor={"externalId": f"u-{i % 5}"}) for i in range(500)]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_events(client, events, auth_header)
        assert listener.messages() == []  # nothing before the commit
    for callback in callbacks:
        callback()

    assert response.status_code == 202
    (message,) = listener.messages()
    assert message["type"] == "timeline"
    assert len(message["items"]) == 500
    item = message["items"][0]
    assert set(item) == {
        "kind", "id", "eventType", "category", "worker", "timestamp", "duration", "metadata",
        "source", "requestId", "receivedAt",
    }
    stored = TimelineEvent.objects.select_related("worker").get(public_id=item["id"])
    assert item["kind"] == "timeline" and item["id"].startswith("tle_")
    worker = stored.worker
    assert item["worker"] == {"id": worker.public_id, "displayName": worker.display_name,
                              "externalId": worker.external_id}
    assert item["source"] == {"id": source.public_id, "slug": "crm-hub", "name": "CRM Hub"}
    assert item["requestId"] == response.json()["requestId"]
    assert (item["duration"], item["metadata"]) == (240, {"ticket_id": "SUP-431"})


# In process: the queries are counted on the suite's own connection.
def test_a_500_event_batch_takes_a_fixed_number_of_queries(
    client, auth_header, workspace, settings, django_assert_num_queries
):
    Worker.objects.bulk_create(
        [Worker(workspace=workspace, display_name=f"u{i}", external_id=f"u-{i}") for i in range(50)]
    )
    events = [seed_event(actor={"externalId": f"u-{i % 50}"}) for i in range(500)]
    post_events(client, events[:1], auth_header)  # the period's quota row exists from now on
    # The key look-up (with its plan; cached only in a shared cache), a savepoint pair, ONE worker
    # look-up, then in an inner savepoint pair the bulk insert and ONE quota UPDATE after it.
    # The insert is one COPY on PostgreSQL (psycopg's copy bypasses Django's query log, so it
    # is not counted here), chunks of SQLite's 999-variable limit (90 rows of 11 columns)
    # there. Nothing grows per row.
    lookups = 0 if settings.REDIS_URL else 1
    inserts = 0 if connection.vendor == "postgresql" else 6
    with django_assert_num_queries(lookups + 2 + 1 + 2 + inserts + 1):
        response = post_events(client, events, auth_header)
    assert response.status_code == 202
    assert TimelineEvent.objects.count() == 501


def test_batch_ids_are_ulids_of_this_millisecond():
    ids = new_public_ids("tle", 500)
    assert len(set(ids)) == 500
    for public_id in ids[:5]:
        assert public_id.startswith("tle_")
        assert abs(ULID.from_str(public_id[4:]).timestamp - time.time()) < 5


def post_at_once(api, secret: str, batches: list[list[dict]]) -> list:
    """Each batch from its own thread and connection, all released at the same moment."""
    barrier = threading.Barrier(len(batches))
    responses: list = []

    def send(events):
        try:
            client = api.for_thread()
            barrier.wait()
            responses.append(
                post_events(client, events, {"HTTP_AUTHORIZATION": f"Bearer {secret}"})
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_creating_the_same_workers_both_succeed(api, secret, workspace):
    """Two processes' worth of batches naming the same new actors, in opposite orders."""
    actors = [f"new-{i}" for i in range(40)]
    batches = [
        [seed_event(actor={"externalId": a}) for a in actors],
        [seed_event(actor={"externalId": a}) for a in reversed(actors)],
    ] * 2
    statuses = [response.status_code for response in post_at_once(api, secret, batches)]
    assert statuses == [202] * len(batches)
    assert Worker.objects.filter(workspace=workspace).count() == 40
    assert TimelineEvent.objects.count() == 40 * len(batches)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_near_the_limit_accept_exactly_the_quota(api, secret, workspace):
    """Rows are written before the quota is reserved (the counter row is locked only from
    there to the commit); batches that no longer all fit fall back to k of n. Exact anyway."""
    workspace.event_limit_override = 1000
    workspace.save()
    batches = [[seed_event() for _ in range(300)] for _ in range(6)]  # 1,800 offered
    responses = post_at_once(api, secret, batches)
    assert len(responses) == len(batches)
    assert {r.status_code for r in responses} <= {202, 207, 402}
    assert sum(r.json().get("accepted", 0) for r in responses) == 1000
    assert TimelineEvent.objects.count() == 1000
    assert Usage.objects.get(workspace=workspace).events == 1000
