"""POST /api/ingest: the field table and the response table of SPEC §3."""

from __future__ import annotations

import json
import re

import pytest

from ingest.models import Event

URL = "/api/ingest"
SEED = (
    '{"status": "success", "message": "Nightly backup completed", "eventType": "backup", '
    '"durationMs": 4820, "metadata": { "sizeBytes": 104857600 }}'
)
HEX24 = re.compile(r"[0-9a-f]{24}")


@pytest.fixture
def post(client, auth_header):
    def send(body, path: str = URL, content_type: str = "application/json", **extra):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return client.generic("POST", path, data, content_type=content_type, **{**auth_header, **extra})

    return send


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


@pytest.mark.django_db
def test_it_stores_the_seed_example(post, source):
    response = post(SEED)
    assert response.status_code == 201
    event_id = response.json()["id"]
    assert HEX24.fullmatch(event_id)
    event = Event.objects.get(public_id=event_id)
    assert (event.status, event.message, event.event_type) == ("success", "Nightly backup completed", "backup")
    assert event.duration_ms == 4820
    assert event.metadata == {"sizeBytes": 104857600}
    assert event.source_id == source.pk and event.workspace_id == source.workspace_id
