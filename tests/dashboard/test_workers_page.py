"""The Workers pages: the searchable list, a worker's timeline and snapshot cards, the JSON feed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.models import Snapshot, TimelineEvent
from ingest.views import TIMELINE_MAX_PAGE
from workspaces.models import Worker

pytestmark = pytest.mark.django_db


def list_url(ws) -> str:
    return f"/w/{ws.public_id}/workers/"


def worker_url(ws, worker) -> str:
    return f"/w/{ws.public_id}/workers/{worker.public_id}/"


@pytest.fixture
def make_snapshot(source, worker):
    def make(
        snapshot_type: str, metrics: dict, age: timedelta = timedelta(0), **fields
    ) -> Snapshot:
        moment = timezone.now() - age
        return Snapshot.objects.create(
            workspace=source.workspace,
            source=source,
            worker=fields.pop("worker", worker),
            snapshot_type=snapshot_type,
            metrics=metrics,
            timestamp=moment,
            received_at=moment,
            request_id="req_test",
            **fields,
        )

    return make


# ---- access ------------------------------------------------------------------------------------


def test_a_visitor_is_sent_to_the_login_page(client, workspace, worker):
    for path in (list_url(workspace), worker_url(workspace, worker)):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("persona", ["owner", "member"])
def test_members_and_owners_see_the_list_and_a_worker(client, request, persona, workspace, worker):
    client.force_login(request.getfixturevalue(persona))
    listing = client.get(list_url(workspace))
    detail = client.get(worker_url(workspace, worker))
    feed = client.get(worker_url(workspace, worker) + "feed.json")
    assert listing.status_code == 200 and "Alex Chen" in listing.content.decode()
    assert detail.status_code == 200 and "Alex Chen" in detail.content.decode()
    assert feed.status_code == 200 and feed.json()["worker"]["id"] == worker.public_id


def test_an_outsider_gets_404_everywhere(client, outsider, other_workspace, workspace, worker):
    client.force_login(outsider)
    assert client.get(list_url(workspace)).status_code == 404
    assert client.get(worker_url(workspace, worker)).status_code == 404
    assert client.get(worker_url(workspace, worker) + "feed.json").status_code == 404


def test_a_worker_of_another_workspace_is_404(client, owner, workspace, other_workspace):
    foreign = Worker.objects.create(workspace=other_workspace, display_name="Globex Gina")
    client.force_login(owner)
    assert client.get(worker_url(workspace, foreign)).status_code == 404
    assert client.get(worker_url(workspace, foreign) + "feed.json").status_code == 404
    assert "Globex Gina" not in client.get(list_url(workspace)).content.decode()


# ---- list and search ---------------------------------------------------------------------------


@pytest.fixture
def crew(workspace, worker):
    return [
        worker,
        Worker.objects.create(workspace=workspace, display_name="Bea Berg", external_id="crm-7"),
        Worker.objects.create(workspace=workspace, display_name="Cy Ng", email="CY@Acme.test"),
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alex", {"Alex Chen"}),  # display name, case-insensitive
        ("crm-", {"Bea Berg"}),  # externalId
        ("cy@acme", {"Cy Ng"}),  # email
        ("CY@ACME.TEST", {"Cy Ng"}),  # email stored lower-cased, searched case-insensitively
        ("nobody", set()),
    ],
)
def test_the_search_covers_name_external_id_and_email(
    client, owner, workspace, crew, query, expected
):
    client.force_login(owner)
    response = client.get(list_url(workspace), {"q": query})
    assert response.status_code == 200
    page = response.content.decode()
    shown = {w.display_name for w in crew if w.display_name in page}
    assert shown == expected
    assert "3 workers in this workspace" in page
    assert f"{len(expected)} match" in page


def test_the_list_counts_each_workers_events_of_the_last_day(
    client, owner, workspace, crew, make_timeline
):
    alex, bea, _ = crew
    make_timeline()
    make_timeline(age=timedelta(hours=23))
    make_timeline(age=timedelta(hours=25))  # older than the day counted
    make_timeline(worker=bea)
    client.force_login(owner)

    response = client.get(list_url(workspace))

    assert response.status_code == 200
    rows = {w.display_name: w.event_count for w in response.context["workers"]}
    assert rows == {"Alex Chen": 2, "Bea Berg": 1, "Cy Ng": 0}
    assert "Events (24 h)" in response.content.decode()


def test_the_lists_last_event_is_the_newest_inside_retention(
    client, owner, workspace, crew, make_timeline
):
    alex, bea, cy = crew
    make_timeline(age=timedelta(days=3))
    newest = make_timeline(age=timedelta(days=2))
    make_timeline(worker=bea, age=timedelta(days=120))  # past Pro's 90-day retention
    client.force_login(owner)

    response = client.get(list_url(workspace))

    last = {w.display_name: w.last_event_at for w in response.context["workers"]}
    assert last == {"Alex Chen": newest.timestamp, "Bea Berg": None, "Cy Ng": None}


# ---- a worker's page ---------------------------------------------------------------------------


def test_the_timeline_lists_this_workers_events_newest_first(
    client, owner, workspace, crew, make_timeline
):
    alex, bea, _ = crew
    make_timeline(age=timedelta(hours=3), event_type="call.logged")
    make_timeline(age=timedelta(hours=1), event_type="ticket.resolved", duration=540)
    make_timeline(worker=bea, event_type="deal.won", category="sales")
    client.force_login(owner)

    response = client.get(worker_url(workspace, alex))

    assert response.status_code == 200
    page = response.content.decode()
    assert page.index("ticket.resolved") < page.index("call.logged")
    assert "deal.won" not in page
    assert "540 s" in page
    assert f"/ws/workspaces/{workspace.public_id}/" in page
    assert "js/workers.js" in page


def test_timeline_rows_past_retention_are_not_shown(client, owner, free_workspace):
    from sources.services import create_source

    src, _ = create_source(free_workspace, "Free source", allowed_event_types=["x.y"])
    worker = Worker.objects.create(workspace=free_workspace, display_name="Dora")
    now = timezone.now()
    for age_days, event_type in [(1, "fresh.event"), (6, "older.event"), (8, "expired.event")]:
        moment = now - timedelta(days=age_days)
        TimelineEvent.objects.create(
            workspace=free_workspace,
            source=src,
            worker=worker,
            event_type=event_type,
            category="support",
            timestamp=moment,
            received_at=moment,
            request_id="req_t",
        )
    client.force_login(owner)

    page = client.get(worker_url(free_workspace, worker)).content.decode()
    feed = client.get(worker_url(free_workspace, worker) + "feed.json").json()

    assert "fresh.event" in page and "older.event" in page
    assert "expired.event" not in page  # Free keeps 7 days
    assert [i["eventType"] for i in feed["timeline"]] == ["fresh.event", "older.event"]


def test_the_timeline_is_paginated(client, owner, workspace, worker, make_timeline):
    for n in range(55):
        make_timeline(age=timedelta(minutes=n), event_type=f"step.{n:02d}")
    client.force_login(owner)

    first = client.get(worker_url(workspace, worker)).content.decode()
    second = client.get(worker_url(workspace, worker), {"page": 2}).content.decode()

    assert "step.00" in first and "step.49" in first and "step.50" not in first
    assert "step.50" in second and "step.54" in second and "step.00" not in second
    # The timeline is not counted (millions of rows for a busy worker): no "of N".
    assert "Page 1<" in first and "Older" in first and "Newer" not in first
    assert "Page 2<" in second and "Older" not in second and "Newer" in second



def test_a_page_number_past_the_deepest_page_shows_the_deepest_page(
    client, owner, workspace, worker, make_timeline
):
    make_timeline(event_type="step.only")
    client.force_login(owner)

    response = client.get(worker_url(workspace, worker), {"page": "1" * 50})

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Page {TIMELINE_MAX_PAGE}<" in page and "step.only" not in page and "Newer" in page

def test_metadata_is_pretty_json_and_escaped(client, owner, workspace, worker, make_timeline):
    make_timeline(metadata={"ticket": "T-1", "note": "<script>alert(1)</script>"})
    client.force_login(owner)

    page = client.get(worker_url(workspace, worker)).content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Indented, one key per line (jsonb may reorder keys, so no order is assumed).
    assert '<pre class="json">{\n  &quot;' in page
    assert "\n  &quot;ticket&quot;: &quot;T-1&quot;" in page


def test_snapshot_cards_show_value_unit_and_label(client, owner, workspace, worker, make_snapshot):
    make_snapshot(
        "tickets_open",
        {
            "open": 12,
            "status": "busy",
            "sla": {"value": 98.5, "unit": "%", "label": "SLA met"},
            "queue": {"value": "long"},
        },
    )
    make_snapshot("calls_today", {"calls": 4})
    client.force_login(owner)

    response = client.get(worker_url(workspace, worker))

    assert response.status_code == 200
    page = response.content.decode()
    assert page.index("calls_today") < page.index("tickets_open")
    assert '<dt>open</dt><dd><span class="snap-value">12</span></dd>' in page
    assert '<dt>status</dt><dd><span class="snap-value">busy</span></dd>' in page
    assert (
        '<dt>SLA met</dt><dd><span class="snap-value">98.5</span> <span class="snap-unit">%</span>'
        in page
    )
    assert '<dt>queue</dt><dd><span class="snap-value">long</span></dd>' in page


def test_snapshots_of_other_workers_are_not_shown(client, owner, workspace, crew, make_snapshot):
    alex, bea, _ = crew
    make_snapshot("tickets_open", {"open": 1}, worker=bea)
    client.force_login(owner)
    page = client.get(worker_url(workspace, alex)).content.decode()
    assert "tickets_open" not in page
    assert "No snapshot yet" in page


def test_the_feed_returns_cards_and_the_first_timeline_page(
    client, owner, workspace, worker, make_timeline, make_snapshot
):
    make_timeline(age=timedelta(minutes=2), event_type="call.logged")
    make_timeline(age=timedelta(minutes=1), event_type="ticket.resolved", metadata={"a": 1})
    make_snapshot("tickets_open", {"open": {"value": 3, "unit": "tickets"}})
    client.force_login(owner)

    response = client.get(worker_url(workspace, worker) + "feed.json")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert [i["eventType"] for i in body["timeline"]] == ["ticket.resolved", "call.logged"]
    assert body["timeline"][0]["metadata"] == {"a": 1}
    assert body["timeline"][0]["worker"] == {"id": worker.public_id, "displayName": "Alex Chen",
                                             "externalId": worker.external_id}
    (card,) = body["snapshots"]
    assert card["snapshotType"] == "tickets_open"
    assert card["metrics"] == {"open": {"value": 3, "unit": "tickets"}}
    assert card["worker"]["id"] == worker.public_id
