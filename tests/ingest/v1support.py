"""Helpers for the developer-API tests: posting JSON with a key, a live group listener."""

from __future__ import annotations

import json
import re
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from ingest.broadcast import workspace_group

REQUEST_ID = re.compile(r"^req_[0-9A-HJKMNP-TV-Z]{26}$")
IN_MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def seed_event(**overrides: Any) -> dict[str, Any]:
    """The seed's own example event."""
    event = {
        "eventType": "ticket.resolved",
        "category": "project_management",
        "actor": {"externalId": "crm-user-42"},
        "duration": 240,
        "metadata": {"ticket_id": "SUP-431"},
    }
    event.update(overrides)
    return event


def post_json(client, path: str, body: Any, auth: dict[str, str], **extra: Any):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data, content_type="application/json", **auth, **extra)


def post_events(client, events: list[Any], auth: dict[str, str], query: str = "", **extra: Any):
    return post_json(client, "/api/v1/ingest/events" + query, {"events": events}, auth, **extra)


class GroupListener:
    """A channel joined to a workspace's group, as a dashboard session would be."""

    def __init__(self, workspace_public_id: str) -> None:
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(workspace_group(workspace_public_id), self.channel)

    def messages(self) -> list[dict[str, Any]]:
        """Every payload received so far (the in-memory layer holds them until read)."""
        received = []
        while True:
            try:
                message = async_to_sync(self._receive_nowait)()
            except LookupError:
                return received
            received.append(message["payload"])

    async def _receive_nowait(self) -> dict[str, Any]:
        queue = self.layer.channels.get(self.channel)
        if queue is None or queue.empty():
            raise LookupError
        _expiry, message = queue.get_nowait()
        return message

