"""Export from the live page: the current filter as CSV or NDJSON, every row, streamed."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.models import Event
from sources.services import create_source

pytestmark = pytest.mark.django_db


def url(workspace, fmt: str, query: str = "") -> str:
    return f"/w/{workspace.public_id}/events/export.{fmt}{'?' + query if query else ''}"


def body(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_ndjson_holds_every_matching_event_of_both_kinds_newest_first(
    client, owner, workspace, make_event, make_timeline
):
    made = [make_event(timedelta(minutes=700 - i), message=f"event {i}") for i in range(620)]
    timeline = make_timeline(timedelta(minutes=1))
    client.force_login(owner)

    response = client.get(url(workspace, "ndjson"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert 'attachment; filename="ackly-' in response["Content-Disposition"]
    items = [json.loads(line) for line in body(response).splitlines()]
    assert [item["id"] for item in items] == [timeline.public_id] + [
        e.public_id for e in reversed(made)
    ]  # more than one page of 500, nothing twice, nothing left out


def test_csv_follows_the_filter_and_defuses_formulas(client, owner, workspace, source, make_event):
    make_event(status="failure", message="=HYPERLINK(\"http://evil\")", event_type="deploy.x")
    make_event(status="success", message="fine", event_type="deploy.y")
    make_event(status="failure", message="other type", event_type="backup.done")
    client.force_login(owner)

    response = client.get(url(workspace, "csv", "status=failure&eventType=deploy."))

    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert len(rows) == 1
    assert rows[0]["message"] == "'=HYPERLINK(\"http://evil\")"
    assert rows[0]["source"] == source.slug and rows[0]["kind"] == "event"


def test_a_named_range_exports_what_the_page_shows(client, owner, workspace, make_event):
    recent = make_event(timedelta(minutes=5))
    make_event(timedelta(hours=3))
    client.force_login(owner)

    lines = body(client.get(url(workspace, "ndjson", "range=1h"))).splitlines()

    assert [json.loads(line)["id"] for line in lines] == [recent.public_id]


def test_a_bad_filter_is_refused_before_anything_streams(client, owner, workspace):
    client.force_login(owner)

    response = client.get(url(workspace, "csv", "status=exploded"))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_filter"


def test_an_export_holds_only_the_members_workspace(client, outsider, workspace, other_workspace,
                                                   make_event):
    make_event(message="Acme's own")
    theirs, _ = create_source(other_workspace, "Globex")
    Event.objects.create(workspace=other_workspace, source=theirs, status="success",
                         message="Globex's", received_at=timezone.now())
    client.force_login(outsider)

    assert client.get(url(workspace, "csv")).status_code == 404
    mine = body(client.get(url(other_workspace, "ndjson")))
    assert "Globex's" in mine and "Acme's own" not in mine


def test_only_known_formats_exist(client, owner, workspace):
    client.force_login(owner)

    response = client.get(f"/w/{workspace.public_id}/events/export.xlsx", follow=True)
    assert response.status_code == 404
