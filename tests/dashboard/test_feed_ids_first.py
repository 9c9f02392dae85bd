"""The feed finds a page's ids first, then reads those rows (workspaces.live.newest).

The result must be exactly the newest matching rows in the feed's order, ties included, on
both databases; on PostgreSQL the ids of a page filtered by type and more come from the
type filter's covering index alone (ingest migration 0008).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ingest.models import Event, TimelineEvent
from sources.services import create_source
from workspaces import live

pytestmark = pytest.mark.django_db


def _events(workspace, sources, count: int, now) -> list[Event]:
    """Rows of varied source, status and type, twelve to an instant (two of them matching
    the filter of the first test)."""
    return Event.objects.bulk_create(
        Event(workspace=workspace, source=sources[i % len(sources)],
              status=("success", "failure", "partial")[i % 3],
              event_type=("cert.renewed", "deploy.finished", "cert.expired")[i % 3 if i % 7 else 0],
              message=f"event {i}", received_at=now - timedelta(seconds=i // 12))
        for i in range(count)
    )


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_a_filtered_page_is_the_newest_matching_rows_in_order_ties_included(
    workspace, source, owner, limit
):
    other, _ = create_source(workspace, "Other")
    now = timezone.now()
    rows = _events(workspace, [source, other], 300, now)
    filters = live.FeedFilters(source=other.public_id, status="partial", event_type="cert.",
                               limit=limit, since=now - timedelta(days=7))

    got = [item["id"] for item in live.feed(workspace, filters, now)]

    expected = sorted(
        (e for e in rows if e.source_id == other.pk and e.status == "partial"
         and e.event_type.startswith("cert.")),
        key=lambda e: (e.received_at, e.pk), reverse=True,
    )[:limit]
    assert got == [e.public_id for e in expected]
    assert len(got) == min(limit, 50)  # the filter matches 50 of the 300


def test_a_timeline_page_filtered_by_type_and_category_is_the_newest_matching_rows(
    workspace, source, worker
):
    now = timezone.now()
    rows = TimelineEvent.objects.bulk_create(
        TimelineEvent(workspace=workspace, source=source, worker=worker,
                      event_type=("meeting.held", "ticket.resolved")[i % 2],
                      category=("documentation", "support", "documentation")[i % 3],
                      timestamp=now, request_id="req_x",
                      received_at=now - timedelta(seconds=i // 6))  # two matching per instant
        for i in range(120)
    )
    filters = live.FeedFilters(category="documentation", event_type="meeting.", limit=10)

    got = [item["id"] for item in live.feed(workspace, filters, now)]

    expected = sorted((t for t in rows if t.category == "documentation"
                       and t.event_type == "meeting.held"),
                      key=lambda t: (t.received_at, t.pk), reverse=True)[:10]
    assert got == [t.public_id for t in expected]


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["events", "timeline"])
def test_a_page_filtered_by_type_and_more_finds_its_ids_in_the_covering_index_alone(
    workspace, source, worker, kind
):
    # As at scale: the type is one row in twenty, and its rows seldom match the other filters,
    # so that reading the newest rows until a page is full would read them all.
    now = timezone.now()
    Event.objects.bulk_create(
        Event(workspace=workspace, source=source, status="partial" if i % 200 == 0 else "success",
              event_type="cert.renewed" if i % 20 == 0 else "deploy.finished",
              received_at=now - timedelta(seconds=i))
        for i in range(5000)
    )
    TimelineEvent.objects.bulk_create(
        TimelineEvent(workspace=workspace, source=source, worker=worker,
                      event_type="meeting.held" if i % 20 == 0 else "ticket.resolved",
                      category="documentation" if i % 200 == 0 else "support", timestamp=now,
                      request_id="req_x", received_at=now - timedelta(seconds=i))
        for i in range(5000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ingest_event")
        cursor.execute("ANALYZE ingest_timelineevent")
        # So few rows fit in a few pages, which reading whole is cheapest: the test asks
        # whether the ids can come from the index alone (bench/scale.py measures when they do).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
    if kind == "events":
        filters = live.FeedFilters(source=source.public_id, status="partial", event_type="cert.")
        qs, index = live.events_query(workspace, filters, now), "event_ws_type_covering"
    else:
        filters = live.FeedFilters(category="documentation", event_type="meeting.")
        qs, index = live.timeline_query(workspace, filters, now), "timeline_ws_type_covering"

    plan = live.newest(qs, 100).explain()  # the query the feed runs, its ids' subquery inside

    assert f"Index Only Scan using {index}" in plan, plan
