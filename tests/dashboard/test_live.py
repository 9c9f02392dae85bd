"""The live events page and the event detail page: who may see them and what they show."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from ingest.models import Event, Rejection
from sources.services import create_source

pytestmark = pytest.mark.django_db


def live_url(ws) -> str:
    return f"/w/{ws.public_id}/events/"


def test_a_visitor_is_sent_to_the_login_page(client, workspace):
    response = client.get(live_url(workspace))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("persona", ["owner", "member"])
def test_owners_and_members_see_the_live_page(client, request, persona, workspace, make_event):
    make_event(message="nightly backup done", event_type="backup.finished")
    client.force_login(request.getfixturevalue(persona))

    response = client.get(live_url(workspace))

    assert response.status_code == 200
    page = response.content.decode()
    assert "nightly backup done" in page
    assert "backup.finished" in page
    assert f"/ws/workspaces/{workspace.public_id}/" in page  # the socket the page opens
    assert 'id="live-chart"' in page
    assert "js/live.js" in page


def test_an_outsider_gets_a_404_and_learns_nothing(client, outsider, workspace, other_workspace):
    client.force_login(outsider)
    assert client.get(live_url(workspace)).status_code == 404
    assert client.get(f"/w/{workspace.public_id}/events/feed.json").status_code == 404


def test_the_workspace_root_leads_to_the_live_page(client, member, workspace):
    client.force_login(member)
    response = client.get(f"/w/{workspace.public_id}/")
    assert response["Location"] == live_url(workspace)


def test_the_page_lists_both_kinds_newest_first(
    client, owner, workspace, make_event, make_timeline
):
    make_event(age=timedelta(minutes=3), message="oldest-row")
    make_timeline(age=timedelta(minutes=2), event_type="call.logged")
    make_event(age=timedelta(minutes=1), message="newest-row", status="failure")
    client.force_login(owner)

    page = client.get(live_url(workspace)).content.decode()

    assert page.index("newest-row") < page.index("call.logged") < page.index("oldest-row")
    assert "Alex Chen" in page  # the timeline row's worker


def test_each_row_has_the_markup_live_js_gives_rows_that_arrive_later(
    client, owner, workspace, source, make_event, make_timeline
):
    # static/js/live.js renderRow builds the same elements; workspaces/rows.py writes these.
    source.name = 'Ops & "Billing"'
    source.save(update_fields=["name"])
    event = make_event(age=timedelta(minutes=1), message="<b>backup</b>", event_type="",
                       external_id="job-7", duration_ms=1534.0)
    step = make_timeline(event_type="call.logged", category="communication", duration=95)
    client.force_login(owner)

    page = client.get(live_url(workspace)).content.decode()

    def row(item, at) -> str:
        received = at.isoformat().replace("+00:00", "Z")
        exact = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return (
            f'<li class="row row-{item["kind"]}" data-id="{item["id"]}" data-received="{received}">\n'
            f'  <a class="row-link" href="/w/{workspace.public_id}/events/{item["id"]}/">\n'
            f'    <span class="badge badge-{item["badge"]}" title="{item["label"]}">'
            f'<span class="badge-text">{item["label"]}</span></span>\n'
            '    <span class="row-main">\n'
            f'      <span class="row-type" title="{item["type"]}">{item["type"]}</span>\n'
            f'      <span class="row-message" title="{item["text"]}">{item["text"]}</span>\n'
            '    </span>\n'
            '    <span class="row-source" title="Ops &amp; &quot;Billing&quot;">'
            'Ops &amp; &quot;Billing&quot;</span>\n'
            f'    <span class="row-worker" title="{item["worker"]}">{item["worker"]}</span>\n'
            f'    <span class="row-duration">{item["duration"]}</span>\n'
            f'    <time class="row-time" datetime="{exact}" data-when="relative" '
            f'title="{at:%Y-%m-%d %H:%M:%S} UTC">{at:%Y-%m-%d %H:%M} UTC</time>\n'
            '  </a>\n'
            '</li>\n'
        )

    assert row({"kind": "timeline", "id": step.public_id, "badge": "timeline",
                "label": "communication", "type": "call.logged", "text": "Alex Chen",
                "worker": "Alex Chen", "duration": "1 m 35 s"}, step.received_at) in page
    assert row({"kind": "event", "id": event.public_id, "badge": "success", "label": "success",
                "type": "—", "text": "&lt;b&gt;backup&lt;/b&gt;", "worker": "job-7",
                "duration": "1.5 s"}, event.received_at) in page


def test_message_text_is_escaped(client, owner, workspace, make_event):
    make_event(message="<script>alert(1)</script>")
    client.force_login(owner)
    page = client.get(live_url(workspace)).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_rows_past_the_plans_retention_are_never_shown(client, owner, free_workspace):
    source, _ = create_source(free_workspace, "Cron")
    from ingest.models import Event

    for days, text in [(6, "inside-retention"), (8, "past-retention")]:
        Event.objects.create(
            workspace=free_workspace, source=source, status="success", message=text,
            received_at=timezone.now() - timedelta(days=days),
        )
    client.force_login(owner)
    page = client.get(live_url(free_workspace)).content.decode()
    assert "inside-retention" in page
    assert "past-retention" not in page


def test_the_page_filters_server_side(client, owner, workspace, make_event):
    make_event(status="failure", message="disk full")
    make_event(status="success", message="all good")
    client.force_login(owner)
    page = client.get(live_url(workspace), {"status": "failure"}).content.decode()
    assert "disk full" in page
    assert "all good" not in page


def test_the_rejections_panel_sums_the_last_day_by_source_and_code(
    client, owner, workspace, source, other_workspace
):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for h, n in [(0, 3), (2, 4)]:
        Rejection.objects.create(
            workspace=workspace, source=source, code="invalid_key", hour=hour - timedelta(hours=h),
            count=n,
        )
    Rejection.objects.create(
        workspace=workspace, source=source, code="rate_limited", hour=hour - timedelta(hours=30),
        count=99,
    )
    foreign, _ = create_source(other_workspace, "Globex app")
    Rejection.objects.create(
        workspace=other_workspace, source=foreign, code="quota_exceeded", hour=hour, count=5
    )
    client.force_login(owner)

    response = client.get(live_url(workspace))

    rejections = response.context["rejections"]
    assert rejections == [
        {"source": {"id": source.public_id, "name": source.name}, "code": "invalid_key", "count": 7}
    ]


def test_the_chart_counts_events_per_quarter_hour_by_status(client, owner, workspace, make_event,
                                                            make_timeline):
    make_event(status="success")
    make_event(status="success")
    make_event(status="failure", age=timedelta(hours=2))
    make_timeline()
    make_event(status="failure", age=timedelta(hours=30))  # outside the chart
    client.force_login(owner)

    chart = client.get(live_url(workspace)).context["chart"]

    # 24 whole UTC hours and the current one, in quarters: any zone's hours are sums of them.
    start = datetime.fromisoformat(chart["start"])
    assert chart["stepSeconds"] == 900
    assert start.minute == start.second == 0
    assert all(len(counts) == 100 for counts in chart["series"].values())
    now = timezone.now()
    current = (now - start) // timedelta(minutes=15)
    assert 96 <= current < 100
    assert chart["series"]["success"][current] == 2
    assert chart["series"]["timeline"][current] == 1
    assert sum(chart["series"]["success"]) == 2
    assert sum(chart["series"]["failure"]) == 1
    two_hours_ago = (now - timedelta(hours=2) - start) // timedelta(minutes=15)
    assert chart["series"]["failure"][two_hours_ago] == 1


def test_the_chart_puts_an_event_in_the_quarter_of_its_minute(client, owner, workspace, source):
    """Minutes 0-14, 15-29, 30-44 and 45-59 of an hour are four buckets (the +05:30 and +05:45
    zones' hours start inside a UTC hour)."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for minute, n in ((0, 1), (14, 1), (15, 2), (44, 3), (45, 4)):
        for _ in range(n):
            Event.objects.create(workspace=workspace, source=source,
                                 status="partial", received_at=start + timedelta(minutes=minute))
    client.force_login(owner)

    chart = client.get(live_url(workspace)).context["chart"]

    first = datetime.fromisoformat(chart["start"])
    at = (start - first) // timedelta(minutes=15)
    assert chart["series"]["partial"][at:at + 4] == [2, 2, 3, 4]


class TestEventDetail:
    def test_a_member_sees_the_metadata_as_escaped_pretty_json(self, client, member, workspace,
                                                               make_event):
        event = make_event(metadata={"b": 1, "a": {"html": "<b>bold</b>"}}, message="hello")
        client.force_login(member)

        response = client.get(f"/w/{workspace.public_id}/events/{event.public_id}/")

        assert response.status_code == 200
        page = response.content.decode()
        assert '&quot;a&quot;: {\n    &quot;html&quot;: &quot;&lt;b&gt;bold&lt;/b&gt;&quot;' in page
        assert "<b>bold</b>" not in page

    def test_a_timeline_event_shows_its_worker(self, client, owner, workspace, make_timeline):
        item = make_timeline(metadata={"ticket": 7})
        client.force_login(owner)
        response = client.get(f"/w/{workspace.public_id}/events/{item.public_id}/")
        assert response.status_code == 200
        assert "Alex Chen" in response.content.decode()

    def test_an_outsider_is_refused_even_with_the_events_id(self, client, outsider, workspace,
                                                           other_workspace, make_event):
        event = make_event()
        client.force_login(outsider)
        assert client.get(f"/w/{workspace.public_id}/events/{event.public_id}/").status_code == 404
        # Nor through their own workspace's URL.
        url = f"/w/{other_workspace.public_id}/events/{event.public_id}/"
        assert client.get(url).status_code == 404

    def test_a_visitor_is_sent_to_log_in(self, client, workspace, make_event):
        event = make_event()
        response = client.get(f"/w/{workspace.public_id}/events/{event.public_id}/")
        assert response.status_code == 302

    def test_an_event_past_retention_is_gone(self, client, owner, workspace, make_event):
        event = make_event(age=timedelta(days=91))
        client.force_login(owner)
        assert client.get(f"/w/{workspace.public_id}/events/{event.public_id}/").status_code == 404
