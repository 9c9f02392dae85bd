"""The dashboard's live feed: one push-only websocket per page, one group per workspace.

Every ingest request sends one message to the workspace's group (SPEC §6). In each process
a `Room` per workspace listens to that group ONCE for all of the process's sockets of that
workspace: it hears each message once, and sends each frame's JSON text, made once, to
every socket. A socket per subscriber made the process decode and handle every message once
per socket (50 sockets: 50 times).

While a workspace is quiet, a message goes out at once, in a frame of its own. When messages
come faster than one per FLUSH_INTERVAL, the list messages of one kind (`events`, `timeline`,
`rejections`) that arrive within the interval go out as ONE frame of the same shape carrying
all their items, so a busy workspace costs ~1/FLUSH_INTERVAL frames a second per socket,
not one per request. `snapshot` messages go out alone, in order (anything pending first).
The pages handle a frame's `items` as a list already: a merged frame looks like any other.

A room that can no longer hear its group closes its sockets (code ROOM_LOST): the pages
reconnect with backoff and fetch what they missed over HTTP (SPEC §6). Every
HEARTBEAT_SECONDS a room sends a heartbeat through its group (it hears its own by id); when
that send fails (Redis down) or the heartbeat is not back within HEARTBEAT_SECONDS (the
group subscription was lost), the room is closed. A new room hears one heartbeat before its
first socket is accepted: a subscription made while the layer was reconnecting can be lost
(seen once in ~12 runs of the fault tests), and such a room would accept sockets it cannot
feed. A room that cannot subscribe at all refuses the socket, which
the page retries the same way. (A Redis blip shorter than a heartbeat can go unnoticed; the
next reconnect or reload of the page fetches what it missed.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from ackly.metrics import socket_closed, socket_opened
from ingest.broadcast import MESSAGE_TYPE, workspace_group
from workspaces.models import Membership

logger = logging.getLogger(__name__)

# Close codes before accept (SPEC §6): the page stops retrying on these.
NOT_LOGGED_IN = 4401
NOT_A_MEMBER = 4403

# The longest a message waits to share a frame (only when the previous frame left less than
# this long ago). Adds at most this to the live latency of a busy workspace.
FLUSH_INTERVAL = 0.02
MERGEABLE = frozenset({"events", "timeline", "rejections"})

HEARTBEAT_TYPE = "ackly.heartbeat"
# Long enough that a busy room's queue never delays its heartbeat past it.
HEARTBEAT_SECONDS = 5.0
_room_ids = itertools.count(1)
# A socket whose room lost its group (the page reconnects on any code but 4401/4403; servers
# send only 1000 and 3000-4999).
ROOM_LOST = 4000


class Room:
    """One workspace's sockets in this process, and the one channel that hears its group."""

    def __init__(self, rooms: dict[str, Room], layer: Any, group: str) -> None:
        self.rooms = rooms
        self.layer = layer
        self.group = group
        self.sockets: set[WorkspaceConsumer] = set()
        self.pending: dict[str, list] = {}
        self.last_frame = float("-inf")
        self.timer: asyncio.TimerHandle | None = None
        self.channel: str | None = None
        self.tasks: list[asyncio.Task] = []
        self.heard = asyncio.Event()
        self.id = next(_room_ids)
        self.closed = False

    async def open(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._listen())]
        await self.hear_itself()  # raises when the group does not carry it back
        self.tasks.append(loop.create_task(self._heartbeat()))

    async def close(self) -> None:
        """Stop listening (idempotent); the sockets are the caller's business."""
        if self.closed:
            return
        self.closed = True
        if self.rooms.get(self.group) is self:
            del self.rooms[self.group]
        if self.timer is not None:
            self.timer.cancel()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        if self.channel is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:  # noqa: BLE001 - the layer may be the thing that failed
                logger.debug("group_discard failed for %s", self.group, exc_info=True)

    async def lost(self, why: str) -> None:
        """The group may have said things this room did not hear: close every socket."""
        logger.warning("Live feed of %s lost (%s): closing %d socket(s) so pages catch up",
                       self.group, why, len(self.sockets))
        await self.close()
        for socket in list(self.sockets):
            with contextlib.suppress(Exception):  # already closing
                await socket.close(code=ROOM_LOST)
        self.sockets.clear()

    async def hear_itself(self) -> None:
        """Send a heartbeat through the group and wait for it (TimeoutError after a while)."""
        self.heard.clear()
        async with asyncio.timeout(HEARTBEAT_SECONDS):
            await self.layer.group_send(self.group, {"type": HEARTBEAT_TYPE, "room": self.id})
            await self.heard.wait()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.hear_itself()
            except Exception as exc:  # noqa: BLE001 - a failed send or a heartbeat not heard
                await self.lost(type(exc).__name__)
                return

    async def _listen(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            kind = message.get("type")
            if kind == HEARTBEAT_TYPE:
                if message.get("room") == self.id:  # other processes' rooms heartbeat too
                    self.heard.set()
            elif kind == MESSAGE_TYPE:
                try:
                    await self.add(message["payload"])
                except Exception:  # noqa: BLE001 - one bad message must not end the feed
                    logger.exception("Dropped a live message for %s", self.group)

    async def add(self, payload: dict[str, Any]) -> None:
        kind, items = payload.get("type"), payload.get("items")
        if kind not in MERGEABLE or not isinstance(items, list):
            await self.flush()
            await self._send(payload)
            return
        self.pending.setdefault(kind, []).extend(items)
        if self.timer is not None:
            return  # a flush is due already
        loop = asyncio.get_running_loop()
        wait = self.last_frame + FLUSH_INTERVAL - loop.time()
        if wait <= 0:
            await self.flush()
        else:
            self.timer = loop.call_later(wait, lambda: loop.create_task(self.flush()))

    async def flush(self) -> None:
        """Send what is pending: one frame per kind."""
        self.timer = None
        pending, self.pending = self.pending, {}
        for kind, items in pending.items():
            await self._send({"type": kind, "items": items})

    async def _send(self, payload: dict[str, Any]) -> None:
        self.last_frame = asyncio.get_running_loop().time()
        text = json.dumps(payload, separators=(",", ":"))
        for socket in list(self.sockets):
            if not socket.live:
                continue  # not accepted yet: its page catches up over HTTP once it opens
            try:
                await socket.send(text_data=text)
            except Exception:  # noqa: BLE001 - a socket closing under us; its disconnect follows
                self.sockets.discard(socket)


# Rooms per event loop (a server has one; tests make one per test) and workspace group.
_rooms: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Room]] = (
    weakref.WeakKeyDictionary()
)


async def join(group: str, socket: WorkspaceConsumer) -> Room:
    """The socket's room (made and subscribed for the first socket); raises if the layer fails."""
    rooms = _rooms.setdefault(asyncio.get_running_loop(), {})
    room = rooms.get(group)
    if room is not None:
        room.sockets.add(socket)
        return room
    room = rooms[group] = Room(rooms, get_channel_layer(), group)
    room.sockets.add(socket)
    try:
        await room.open()
    except BaseException:
        # Never leave a room that hears nothing for later sockets to join; the ones that
        # joined while it was opening are closed with it (this one refuses itself).
        room.sockets.discard(socket)
        await room.lost("subscribe failed")
        raise
    return room


async def leave(room: Room, socket: WorkspaceConsumer) -> None:
    room.sockets.discard(socket)
    if not room.sockets:
        await room.close()


class WorkspaceConsumer(AsyncWebsocketConsumer):
    """Accepts only a logged-in member of the workspace in the URL, then relays its broadcasts."""

    # No channel of its own: the socket's Room hears the group for all the process's sockets
    # of the workspace (with pub/sub, a channel per socket was a SUBSCRIBE per socket).
    channel_layer_alias = None
    room: Room | None = None
    live = False  # accepted: frames may be sent

    async def connect(self) -> None:
        user = self.scope.get("user")
        org_id = self.scope["url_route"]["kwargs"]["org_id"]
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_LOGGED_IN)
            return
        if not await self._is_member(user.pk, org_id):
            await self.close(code=NOT_A_MEMBER)
            return
        # In the room before the page hears "open": whatever commits after the page's
        # catch-up fetch (sent on open) reaches it live.
        try:
            self.room = await join(workspace_group(org_id), self)
        except Exception:  # noqa: BLE001 - the channel layer is down: the page retries
            logger.warning("Refused a live socket for %s: the channel layer failed", org_id)
            await self.close()
            return
        await self.accept()
        self.live = True
        socket_opened()

    async def disconnect(self, code: int) -> None:
        if self.live:
            self.live = False  # counted once, however often the socket is told it closed
            socket_closed()
        if self.room is not None:
            await leave(self.room, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Push-only: whatever the page sends is ignored."""

    @database_sync_to_async
    def _is_member(self, user_id: int, org_id: str) -> bool:
        return Membership.objects.filter(user_id=user_id, workspace__public_id=org_id).exists()
