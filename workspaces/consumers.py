"""The dashboard's live feed: one push-only websocket per page, one group per workspace."""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from ingest.broadcast import workspace_group
from workspaces.models import Membership

# Close codes before accept (SPEC §6): the page stops retrying on these.
NOT_LOGGED_IN = 4401
NOT_A_MEMBER = 4403


class WorkspaceConsumer(AsyncWebsocketConsumer):
    """Accepts only a logged-in member of the workspace in the URL, then relays its broadcasts."""

    group: str | None = None

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
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Push-only: whatever the page sends is ignored."""

    async def ackly_message(self, event: dict) -> None:
        """A broadcast from ingest: `{"type": "ackly.message", "payload": {...}}`."""
        await self.send(text_data=json.dumps(event["payload"], separators=(",", ":")))

    @database_sync_to_async
    def _is_member(self, user_id: int, org_id: str) -> bool:
        return Membership.objects.filter(user_id=user_id, workspace__public_id=org_id).exists()
