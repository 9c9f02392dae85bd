"""The dashboard's live feed: one push-only websocket per page, one group per workspace.

Every ingest request sends one message to the workspace's group (SPEC §6). A socket relays
them as they come while it is quiet; when they come faster than one per FLUSH_INTERVAL, the
list messages of one kind (`events`, `timeline`, `rejections`) that arrive within the
interval go out as ONE frame of the same shape carrying all their items, so a busy workspace
costs each socket ~1/FLUSH_INTERVAL frames a second, not one per request. `snapshot`
messages are relayed alone, in order (anything pending goes first). The pages handle a
frame's `items` as a list already: they cannot tell a merged frame from a single one.
"""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from ingest.broadcast import workspace_group
from workspaces.models import Membership

# Close codes before accept (SPEC §6): the page stops retrying on these.
NOT_LOGGED_IN = 4401
NOT_A_MEMBER = 4403

# The longest a message waits to share a frame (only when the previous frame left less than
# this long ago). Adds at most this to the live latency of a busy workspace.
FLUSH_INTERVAL = 0.02
MERGEABLE = frozenset({"events", "timeline", "rejections"})


class WorkspaceConsumer(AsyncWebsocketConsumer):
    """Accepts only a logged-in member of the workspace in the URL, then relays its broadcasts."""

    group: str | None = None
    _last_frame = float("-inf")
    _flush_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, list] = {}

    async def connect(self) -> None:
        user = self.scope.get("user")
        org_id = self.scope["url_route"]["kwargs"]["org_id"]
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_LOGGED_IN)
            return
        if not await self._is_member(user.pk, org_id):
            await self.close(code=NOT_A_MEMBER)
            return
        self.group = workspace_group(org_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Push-only: whatever the page sends is ignored."""

    async def ackly_message(self, event: dict) -> None:
        """A broadcast from ingest: `{"type": "ackly.message", "payload": {...}}`."""
        payload = event["payload"]
        kind, items = payload.get("type"), payload.get("items")
        if kind not in MERGEABLE or not isinstance(items, list):
            await self._flush()
            await self._send(payload)
            return
        self._pending.setdefault(kind, []).extend(items)
        if self._flush_timer is not None:
            return  # a flush is due already
        loop = asyncio.get_running_loop()
        wait = self._last_frame + FLUSH_INTERVAL - loop.time()
        if wait <= 0:
            await self._flush()
        else:
            self._flush_timer = loop.call_later(wait, lambda: loop.create_task(self._flush()))

    async def _flush(self) -> None:
        """Send what is pending: one frame per kind."""
        self._flush_timer = None
        pending, self._pending = self._pending, {}
        for kind, items in pending.items():
            await self._send({"type": kind, "items": items})

    async def _send(self, payload: dict) -> None:
        self._last_frame = asyncio.get_running_loop().time()
        await self.send(text_data=json.dumps(payload, separators=(",", ":")))

    @database_sync_to_async
    def _is_member(self, user_id: int, org_id: str) -> bool:
        return Membership.objects.filter(user_id=user_id, workspace__public_id=org_id).exists()
