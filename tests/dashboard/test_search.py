"""Free-text search (`q`): one rule for the feed, the read API and the export, on both databases.

On PostgreSQL the search is served by pg_trgm indexes: for ingest events one on their three
fields joined (ingest migration 0007), for the timeline and workers those of migration 0005; the
last tests check that the plan of a search that matches nothing reads them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ingest.models import Event, TimelineEvent
from sources.services import issue_key
from workspaces import live
from workspaces.models import Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, member):
    client.force_login(member)
    return client


def search(client, ws, q: str) -> list[str]:
    response = client.get(f"/w/{ws.public_id}/events/feed.json", {"q": q})
    assert response.status_code == 200
    return [item["id"] for item in response.json()["items"]]


@pytest.mark.parametrize(
    "fields, query",
    [
        ({"message": "Nightly backup completed"}, "CKUP COMP"),
        ({"external_id": "ord-00412345"}, "412345"),
        ({"metadata": {"invoice": "inv_4711", "host": "db-7"}}, "Inv_47"),
        ({"metadata": {"tags": ["Eu-West-1"]}}, "eu-west"),
    ],
    ids=["message", "externalId", "metadata value", "metadata list value"],
)
def test_it_finds_an_event_by_a_substring_of_each_field_in_any_case(
    logged_in, workspace, make_event, fields, query
):
    hit = make_event(**fields)
    make_event(message="Nightly restore completed", external_id="ord-1",
               metadata={"invoice": "inv_1"})

    assert search(logged_in, workspace, query) == [hit.public_id]


@pytest.mark.parametrize("query", ["LEX CH", "u-4", "ticket-9"],
                         ids=["worker display name", "worker external id", "metadata value"])
def test_it_finds_a_timeline_event_by_its_worker_or_metadata(
    logged_in, workspace, make_timeline, worker, query
):
    hit = make_timeline(metadata={"ticket": "TICKET-93"})
    other = Worker.objects.create(workspace=workspace, display_name="Maria Okafor",
                                  external_id="x-17")
    make_timeline(worker=other, metadata={"ticket": "TICKET-12"})

    assert search(logged_in, workspace, query) == [hit.public_id]


@pytest.mark.parametrize(
    "query, matching, not_matching",
    [("50%", "50% off", "500 off"), ("a_b", "a_b done", "axb done")],
    ids=["percent", "underscore"],
)
def test_percent_and_underscore_are_taken_literally(
    logged_in, workspace, make_event, make_timeline, query, matching, not_matching
):
    hit = make_event(message=matching)
    timeline_hit = make_timeline(metadata={"note": matching})
    make_event(message=not_matching)
    make_timeline(metadata={"note": not_matching})

    assert set(search(logged_in, workspace, query)) == {hit.public_id, timeline_hit.public_id}


def test_a_backslash_is_taken_literally(logged_in, workspace, make_event):
    hit = make_event(message="wrote c:\\tmp")
    make_event(message="wrote c:tmp")

    assert search(logged_in, workspace, "c:\\tmp") == [hit.public_id]


def test_it_finds_nothing_for_a_term_nothing_holds(logged_in, workspace, make_event,
                                                   make_timeline):
    make_event(message="Nightly backup completed", metadata={"k": "v"})
    make_timeline(metadata={"k": "v"})

    assert search(logged_in, workspace, "zebra quantum") == []


def test_a_worker_or_event_of_another_workspace_never_matches(
    logged_in, workspace, other_workspace, make_timeline
):
    from sources.services import create_source

    theirs, _ = create_source(other_workspace, "Theirs")
    their_worker = Worker.objects.create(workspace=other_workspace, display_name="Zoe Tanaka")
    now = timezone.now()
    TimelineEvent.objects.create(workspace=other_workspace, source=theirs, worker=their_worker,
                                 event_type="t", category="support", timestamp=now,
                                 received_at=now, request_id="req_x")
    Event.objects.create(workspace=other_workspace, source=theirs, status="success",
                         message="Zoe Tanaka's job")
    make_timeline()

    assert search(logged_in, workspace, "zoe tanaka") == []


def test_many_matching_workers_are_searched_by_a_subquery_with_the_same_result(
    logged_in, workspace, make_timeline, worker, monkeypatch
):
    second = Worker.objects.create(workspace=workspace, display_name="Alexa Moreau")
    third = Worker.objects.create(workspace=workspace, display_name="Priya Haddad")
    first_hit = make_timeline(age=timedelta(minutes=1))
    second_hit = make_timeline(worker=second)
    make_timeline(worker=third)
    expected = [second_hit.public_id, first_hit.public_id]
    assert search(logged_in, workspace, "alex") == expected

    monkeypatch.setattr(live, "SEARCH_WORKERS_MAX", 1)

    assert search(logged_in, workspace, "alex") == expected


def test_the_read_api_searches_by_the_same_rule(client, workspace, source, make_event,
                                                make_timeline):
    hit = make_event(external_id="ord-00412345")
    timeline_hit = make_timeline(age=timedelta(minutes=1))  # the worker is Alex Chen, u-42
    make_event(message="unrelated")
    secret = issue_key(source, scope="read").secret

    def read(q: str) -> list[str]:
        response = client.get("/api/v1/events", {"q": q}, HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["items"]]

    assert read("0412") == [hit.public_id]
    assert read("alex c") == [timeline_hit.public_id]
    assert read("100%") == []



@pytest.mark.parametrize("q", ["a", "ab", "  ab  "])
def test_a_term_shorter_than_three_characters_is_refused_by_name_everywhere(
    client, logged_in, workspace, source, make_event, q
):
    make_event(message="ab and more")
    feed = logged_in.get(f"/w/{workspace.public_id}/events/feed.json", {"q": q})
    page = logged_in.get(f"/w/{workspace.public_id}/events/", {"q": q})
    secret = issue_key(source, scope="read").secret
    api = client.get("/api/v1/events", {"q": q}, HTTP_AUTHORIZATION=f"Bearer {secret}")

    message = f"q must be at least {live.SEARCH_MIN_LENGTH} characters"
    assert (feed.status_code, feed.json()["error"]) == (
        400, {"code": "invalid_filter", "message": message})
    assert page.status_code == 400 and message in page.content.decode()
    assert api.status_code == 400 and api.json()["error"]["code"] == "invalid_query"
    assert message in api.json()["error"]["message"]


@pytest.mark.parametrize("query", ["backupord", "ord-7{", "p ord-"],
                         ids=["message into externalId", "externalId into metadata",
                              "with a space between"])
def test_a_term_never_matches_across_two_fields(logged_in, workspace, make_event, query):
    make_event(message="Nightly backup", external_id="ord-7", metadata={"host": "db-7"})

    assert search(logged_in, workspace, query) == []


def test_each_field_is_still_found_beside_the_others(logged_in, workspace, make_event):
    hit = make_event(message="Nightly backup", external_id="ord-7", metadata={"host": "db-7"})

    for query in ("backup", "ord-7", "db-7", '"host"'):
        assert search(logged_in, workspace, query) == [hit.public_id], query


def test_an_event_without_metadata_is_found_by_its_message(logged_in, workspace, make_event):
    hit = make_event(message="Nightly backup", metadata=None)

    assert search(logged_in, workspace, "backup") == [hit.public_id]


def test_a_term_holding_the_field_separator_is_refused_by_name_everywhere(
    client, logged_in, workspace, source, make_event
):
    make_event(message="Nightly backup", external_id="ord-7")
    q = f"backup{live.SEARCH_SEPARATOR}ord"
    feed = logged_in.get(f"/w/{workspace.public_id}/events/feed.json", {"q": q})
    secret = issue_key(source, scope="read").secret
    api = client.get("/api/v1/events", {"q": q}, HTTP_AUTHORIZATION=f"Bearer {secret}")

    message = "q must not contain a unit separator character (U+001F)"
    assert (feed.status_code, feed.json()["error"]) == (
        400, {"code": "invalid_filter", "message": message})
    assert api.status_code == 400 and api.json()["error"]["code"] == "invalid_query"
    assert message in api.json()["error"]["message"]


def test_the_search_box_asks_for_the_shortest_term_the_server_takes(logged_in, workspace):
    page = logged_in.get(f"/w/{workspace.public_id}/events/").content.decode()

    assert f'name="q" value="" minlength="{live.SEARCH_MIN_LENGTH}"' in page


def test_three_characters_are_enough(logged_in, workspace, make_event):
    hit = make_event(message="abc and more")
    make_event(message="ab and more")

    assert search(logged_in, workspace, " abc ") == [hit.public_id]

# --- PostgreSQL: the indexes serve the search -------------------------------------------------

TRIGRAM_INDEXES = ("event_search_trgm", "timeline_metadata_trgm", "worker_display_name_trgm",
                   "worker_external_id_trgm")


def _fill(workspace, source, worker, rows: int) -> None:
    """Enough varied rows, analysed, for the planner to weigh an index against reading rows."""
    now = timezone.now()
    Event.objects.bulk_create(
        Event(workspace=workspace, source=source, status="success",
              message=f"Nightly backup {i} for Acme", external_id=f"ord-{i:08d}",
              metadata={"host": f"web-{i % 30}", "invoice": f"inv_{i}"},
              received_at=now - timedelta(seconds=i))
        for i in range(rows)
    )
    TimelineEvent.objects.bulk_create(
        TimelineEvent(workspace=workspace, source=source, worker=worker, event_type="t.done",
                      category="support", timestamp=now, metadata={"ticket": f"ZD-{i}"},
                      request_id="req_x", received_at=now - timedelta(seconds=i))
        for i in range(rows)
    )
    with connection.cursor() as cursor:
        # Rows inserted since the index was built wait in GIN's pending list, which the planner
        # prices as read whole on every search; autovacuum merges it in production.
        for index in TRIGRAM_INDEXES:
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
        for model in (Event, TimelineEvent, Worker):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
        # So few rows fit in a few pages, which reading whole is cheapest: the test asks
        # whether the query can use the indexes (bench/search_lab.py shows when it does).
        cursor.execute("SET LOCAL enable_seqscan = off")


@pytest.mark.postgres
def test_a_search_that_matches_nothing_reads_the_trigram_indexes(workspace, source, worker):
    _fill(workspace, source, worker, 5000)
    filters = live.FeedFilters(q="zebra quantum")
    now = timezone.now()

    events_plan = live.events_query(workspace, filters, now)[:100].explain()
    timeline_plan = live.timeline_query(workspace, filters, now)[:100].explain()

    assert "event_search_trgm" in events_plan, events_plan
    assert "timeline_metadata_trgm" in timeline_plan, timeline_plan


@pytest.mark.postgres
def test_the_events_have_one_trigram_index_and_not_one_per_column():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'ingest_event' "
                       "AND indexdef LIKE '%%gin_trgm_ops%%'")
        names = [row[0] for row in cursor.fetchall()]

    assert names == ["event_search_trgm"]


@pytest.mark.postgres
def test_a_worker_search_that_matches_nothing_reads_the_workers_trigram_indexes(workspace):
    Worker.objects.bulk_create(
        Worker(workspace=workspace, display_name=f"Worker {i}", external_id=f"u-{i}")
        for i in range(5000)
    )
    with connection.cursor() as cursor:
        for index in TRIGRAM_INDEXES[-2:]:
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
        cursor.execute(f"ANALYZE {Worker._meta.db_table}")
        cursor.execute("SET LOCAL enable_seqscan = off")

    plan = live.matching_workers(workspace, "zebra quantum").explain()

    assert "worker_display_name_trgm" in plan and "worker_external_id_trgm" in plan, plan
