"""feed.json: the live page's catch-up and filters, bounded by tenant and retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.models import Event, TimelineEvent
from sources.services import create_source

pytestmark = pytest.mark.django_db


def feed(client, ws, **params):
    return client.get(f"/w/{ws.public_id}/events/feed.json", params)


@pytest.fixture
def logged_in(client, member):
    client.force_login(member)
    return client


def ids(response) -> list[str]:
    return [item["id"] for item in response.json()["items"]]


def test_a_visitor_is_sent_to_log_in(client, workspace):
    assert feed(client, workspace).status_code == 302


def test_an_outsider_is_refused(client, outsider, workspace):
    client.force_login(outsider)
    response = feed(client, workspace)
    assert response.status_code == 404


def test_it_merges_both_kinds_newest_first_in_the_shared_shapes(
    logged_in, workspace, source, make_event, make_timeline, worker
):
    older = make_event(age=timedelta(minutes=2), message="m", event_type="job.done",
                       external_id="ext-1", duration_ms=12.5, metadata={"k": [1, 2]})
    newer = make_timeline(age=timedelta(minutes=1), duration=30, metadata={"ticket": 1})

    response = feed(logged_in, workspace)

    assert response.status_code == 200
    first, second = response.json()["items"]
    assert first == {
        "kind": "timeline", "id": newer.public_id, "eventType": "ticket.resolved",
        "category": "support", "timestamp": first["timestamp"], "duration": 30,
        "metadata": {"ticket": 1}, "worker": {"id": worker.public_id, "displayName": "Alex Chen",
                                         "externalId": worker.external_id},
        "source": {"id": source.public_id, "name": source.name, "slug": source.slug},
        "requestId": "req_test", "receivedAt": first["receivedAt"],
    }
    assert second == {
        "kind": "event", "id": older.public_id, "status": "success", "message": "m",
        "description": "", "eventType": "job.done", "externalId": "ext-1", "durationMs": 12.5,
        "metadata": {"k": [1, 2]},
        "source": {"id": source.public_id, "name": source.name, "slug": source.slug},
        "receivedAt": second["receivedAt"],
    }
    assert first["receivedAt"].endswith("Z") and first["receivedAt"] > second["receivedAt"]


def test_it_never_returns_another_workspaces_events(logged_in, workspace, other_workspace,
                                                    make_event):
    mine = make_event(message="mine")
    foreign_source, _ = create_source(other_workspace, "Globex")
    Event.objects.create(workspace=other_workspace, source=foreign_source, status="success",
                         message="theirs")
    assert ids(feed(logged_in, workspace)) == [mine.public_id]
    # Naming the foreign source in the filter does not reach across either.
    assert ids(feed(logged_in, workspace, source=foreign_source.public_id)) == []


def test_it_never_returns_rows_past_retention(client, owner, free_workspace):
    source, _ = create_source(free_workspace, "Cron")
    kept = Event.objects.create(workspace=free_workspace, source=source, status="success",
                                received_at=timezone.now() - timedelta(days=6, hours=23))
    Event.objects.create(workspace=free_workspace, source=source, status="success",
                         received_at=timezone.now() - timedelta(days=7, minutes=1))
    client.force_login(owner)
    assert ids(feed(client, free_workspace)) == [kept.public_id]
    # Not even when asked for an explicit range reaching further back.
    since = (timezone.now() - timedelta(days=30)).isoformat()
    assert ids(feed(client, free_workspace, since=since)) == [kept.public_id]


def test_it_filters_by_source(logged_in, workspace, source, make_event):
    other, _ = create_source(workspace, "Billing")
    make_event(src=other)
    wanted = make_event()
    assert ids(feed(logged_in, workspace, source=source.public_id)) == [wanted.public_id]


def test_the_source_filter_keeps_timeline_events_of_that_source_and_knows_no_other(
    logged_in, workspace, source, worker, make_event, make_timeline
):
    other, _ = create_source(workspace, "Billing")
    TimelineEvent.objects.create(
        workspace=workspace, source=other, worker=worker, event_type="call.logged",
        category="support", timestamp=timezone.now(), request_id="req_other",
    )
    event = make_event(age=timedelta(seconds=1))
    timeline = make_timeline()
    assert ids(feed(logged_in, workspace, source=source.public_id)) == [
        timeline.public_id, event.public_id,
    ]
    assert ids(feed(logged_in, workspace, source="src_01ZZZZZZZZZZZZZZZZZZZZZZZZ")) == []


def test_a_status_filter_keeps_only_ingest_events_of_that_status(
    logged_in, workspace, make_event, make_timeline
):
    make_event(status="success")
    failed = make_event(status="failure")
    make_timeline()
    assert ids(feed(logged_in, workspace, status="failure")) == [failed.public_id]


def test_a_category_filter_keeps_only_timeline_events_of_that_category(
    logged_in, workspace, make_event, make_timeline
):
    make_event()
    make_timeline(category="sales")
    support = make_timeline(category="support")
    assert ids(feed(logged_in, workspace, category="support")) == [support.public_id]


def test_it_filters_by_event_type(logged_in, workspace, make_event, make_timeline):
    deploy = make_event(event_type="deploy")
    make_event(event_type="backup")
    make_timeline(event_type="call.logged")
    assert ids(feed(logged_in, workspace, eventType="deploy")) == [deploy.public_id]


def test_the_event_type_filter_matches_a_prefix_of_either_kind(
    logged_in, workspace, make_event, make_timeline
):
    started = make_event(event_type="deploy.started", age=timedelta(minutes=2))
    finished = make_timeline(event_type="deploy.finished", age=timedelta(minutes=1))
    make_event(event_type="predeploy.check")  # contains it, does not start with it
    make_timeline(event_type="backup.finished")
    assert ids(feed(logged_in, workspace, eventType="deploy.")) == [
        finished.public_id, started.public_id,
    ]
    assert ids(feed(logged_in, workspace, eventType="deploy.finished")) == [finished.public_id]


@pytest.mark.parametrize("prefix", ["deploy_", "deploy%"])
def test_like_wildcards_in_an_event_type_prefix_match_only_themselves(
    logged_in, workspace, make_event, prefix
):
    make_event(event_type="deployX.started")
    literal = make_event(event_type=prefix + "x")
    assert ids(feed(logged_in, workspace, eventType=prefix)) == [literal.public_id]


@pytest.mark.parametrize(
    "query", ["payment FAILED", "cust-9931", "invoice_4711"],
    ids=["message", "externalId", "metadata"],
)
def test_free_text_searches_message_external_id_and_metadata(logged_in, workspace, make_event,
                                                             query):
    hit = make_event(message="Payment failed for card", external_id="cust-9931",
                     metadata={"invoice": "invoice_4711"})
    make_event(message="unrelated", external_id="cust-1", metadata={"invoice": "invoice_1"})
    assert ids(feed(logged_in, workspace, q=query)) == [hit.public_id]


def test_free_text_finds_timeline_events_by_metadata_and_worker(logged_in, workspace,
                                                                make_timeline):
    hit = make_timeline(metadata={"ticket": "ZD-1234"})
    make_timeline(metadata={"ticket": "ZD-9"})
    assert ids(feed(logged_in, workspace, q="zd-1234")) == [hit.public_id]
    assert len(ids(feed(logged_in, workspace, q="alex"))) == 2


def test_it_filters_by_time_range(logged_in, workspace, make_event):
    make_event(age=timedelta(hours=3))
    recent = make_event(age=timedelta(minutes=10))
    assert ids(feed(logged_in, workspace, range="1h")) == [recent.public_id]
    until = (timezone.now() - timedelta(hours=1)).isoformat()
    assert len(ids(feed(logged_in, workspace, until=until))) == 1


def test_after_returns_what_arrived_since_the_newest_row_including_it(
    logged_in, workspace, make_event, make_timeline
):
    make_event(age=timedelta(minutes=5))
    newest_seen = make_event(age=timedelta(minutes=2))
    missed_a = make_event(age=timedelta(minutes=1))
    missed_b = make_timeline()
    after = feed(logged_in, workspace).json()["items"][2]["receivedAt"]

    got = ids(feed(logged_in, workspace, after=after))

    # Inclusive: the page already has newest_seen and drops it by id.
    assert got == [missed_b.public_id, missed_a.public_id, newest_seen.public_id]


def test_before_and_limit_page_through_older_rows(logged_in, workspace, make_event):
    events = [make_event(age=timedelta(minutes=m)) for m in range(5)]
    first = feed(logged_in, workspace, limit=2).json()["items"]
    assert [i["id"] for i in first] == [events[0].public_id, events[1].public_id]
    older = ids(feed(logged_in, workspace, limit=2, before=first[-1]["receivedAt"]))
    assert older == [events[1].public_id, events[2].public_id]


def test_a_bad_filter_value_is_a_400_naming_it(logged_in, workspace):
    response = feed(logged_in, workspace, status="exploded", since="yesterday")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "status must be one of" in message
    assert "since must be an ISO 8601 instant" in message


def test_the_feed_reads_a_bounded_number_of_queries(logged_in, workspace, make_event,
                                                    make_timeline, django_assert_max_num_queries):
    for _ in range(20):
        make_event()
        make_timeline()
    # Session, user, membership, then one query per kind: never one per row.
    with django_assert_max_num_queries(5):
        assert len(ids(feed(logged_in, workspace))) == 40
