"""After commit, one live message per request to the workspace's group (SPEC §6, §10)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from django.utils import timezone

from ackly.errors import InvalidBody
from ingest.api import IngestView
from ingest.broadcast import broadcast, workspace_group
from ingest.models import Event, Rejection
from sources.services import revoke_key

URL = "/api/ingest"
SEED = (
    '{"status": "success", "message": "Nightly backup completed", "eventType": "backup", '
    '"durationMs": 4820, "metadata": { "sizeBytes": 104857600 }}'
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def post(client, auth_header):
    def send(body: str = SEED, path: str = URL):
        return client.post(path, body, content_type="application/json", **auth_header)

    return send


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    """A real InMemoryChannelLayer (also under REDIS_URL: its client binds to one event loop)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.pop("default", None)
    yield
    channel_layers.backends.pop("default", None)


@pytest.fixture
def listener(workspace):
    """A channel in the workspace's group; listener(timeout) -> the next message or None."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(workspace_group(workspace.public_id), channel)

    async def _receive(timeout: float):
        try:
            return await asyncio.wait_for(layer.receive(channel), timeout)
        except TimeoutError:
            return None

    yield lambda timeout=2.0: async_to_sync(_receive)(timeout)
    async_to_sync(layer.group_discard)(workspace_group(workspace.public_id), channel)


def test_group_names_are_valid_channels_group_names(workspace):
    name = workspace_group(workspace.public_id)
    assert len(name) < 100
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)


def test_a_stored_event_is_broadcast_after_commit(
    post, listener, source, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post()
    assert response.status_code == 201
    assert len(callbacks) == 1
    assert listener(0.05) is None  # not before commit
    callbacks[0]()
    message = listener()
    assert message["type"] == "ackly.message"
    payload = message["payload"]
    assert payload["type"] == "events"
    [item] = payload["items"]
    event = Event.objects.get()
    assert item == {
        "kind": "event",
        "id": response.json()["id"],
        "status": "success",
        "message": "Nightly backup completed",
        "description": "",
        "eventType": "backup",
        "externalId": "",
        "durationMs": 4820,
        "metadata": {"sizeBytes": 104857600},
        "source": {"id": source.public_id, "slug": "crm-hub", "name": "CRM Hub"},
        "receivedAt": event.received_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    assert listener(0.05) is None  # exactly one message


def test_nothing_is_broadcast_or_stored_on_rollback(
    post, listener, monkeypatch, django_capture_on_commit_callbacks
):
    original = IngestView.store

    def store_then_fail(self, validated, ctx):
        original(self, validated, ctx)
        raise InvalidBody("refused after writing")

    monkeypatch.setattr(IngestView, "store", store_then_fail)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post()
    assert response.status_code == 400
    assert Event.objects.count() == 0
    # Only the rejections message of the refusal itself is queued, never the event.
    [callback_message] = [listener()]
    assert callback_message["payload"]["type"] == "rejections"
    assert len(callbacks) == 1
    assert listener(0.05) is None


def test_a_dry_run_broadcasts_nothing(post, listener, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert post(path=URL + "?dryRun=true").status_code == 201
    assert callbacks == []
    assert listener(0.05) is None


def test_a_failing_channel_layer_still_stores_and_logs_a_warning(
    post, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()

    async def refuse(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(layer, "group_send", refuse)
    with (
        caplog.at_level(logging.WARNING, logger="ingest.broadcast"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = post()
    assert response.status_code == 201
    assert Event.objects.filter(public_id=response.json()["id"]).exists()
    assert any("Broadcast to workspace" in r.getMessage() for r in caplog.records)


def test_broadcast_without_a_layer_is_a_no_op(monkeypatch, workspace):
    monkeypatch.setattr("ingest.broadcast.get_channel_layer", lambda: None)
    broadcast(workspace.public_id, {"type": "events", "items": []})


# --- rejections ---------------------------------------------------------------------------------


def test_refusals_are_counted_per_source_code_and_hour(post, source):
    post('{"status": "nope"}')
    post("not json")
    post('{"status": "success", "durationMs": NaN}')
    rejection = Rejection.objects.get()
    now = timezone.now()
    assert (rejection.source_id, rejection.workspace_id) == (source.pk, source.workspace_id)
    assert (rejection.code, rejection.count) == ("invalid_body", 3)
    assert rejection.hour == now.replace(minute=0, second=0, microsecond=0)


def test_a_refusal_is_broadcast_as_a_rejections_message(
    post, listener, source, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post('{"status": "nope"}')
    payload = listener()["payload"]
    assert payload["type"] == "rejections"
    [item] = payload["items"]
    assert item["source"] == {"id": source.public_id, "slug": "crm-hub", "name": "CRM Hub"}
    assert (item["code"], item["count"]) == ("invalid_body", 1)
    assert item["at"].endswith("Z")


def test_a_revoked_key_refusal_is_broadcast(
    post, listener, source_and_key, django_capture_on_commit_callbacks
):
    revoke_key(source_and_key[1].key)
    with django_capture_on_commit_callbacks(execute=True):
        assert post().status_code == 401
    assert listener()["payload"]["items"][0]["code"] == "key_revoked"


def test_success_counts_no_rejection(post):
    post()
    assert Rejection.objects.count() == 0
