"""The dashboard's live feed: one push-only websocket per page, one group per workspace.

Every ingest request sends one message to the workspace's group (SPEC §6). In each process
a `Room` per workspace listens to that group ONCE for all of the process's sockets of that
workspace: it hears each message once, and sends each frame's JSON text, made once, to
every socket. A socket per subscriber made the process decode and handle every message once
per socket (50 sockets: 50 times).

While a workspace is quiet, a message goes out at once, in a frame of its own. After a frame,
the list messages of one kind (`events`, `timeline`, `rejections`) wait for the next one,
which leaves as long after the last frame was sent as sending it took (at least
FLUSH_INTERVAL, at most FLUSH_INTERVAL_MAX); it goes out as ONE frame of the same shape
carrying all their items. Sending a frame costs the process's one event loop time per socket:
under Daphne the room frames the text once (autobahn's prepared message) and each socket
costs Twisted's write of the same bytes, ~22 us; under another server each socket's ASGI
send encodes and frames it again. A room of 1,000 sockets so spends tens of milliseconds on
each frame: waiting as long again keeps the sending to about half of the loop's time, and a
busy room's messages share bigger frames instead of queueing behind the sending (1,000
sockets at 1,000 events/s: ~30 frames a second per socket; 50 sockets: ~1/FLUSH_INTERVAL).
`snapshot` messages go out alone, in order (anything pending first). The pages handle a
frame's `items` as a list already: a merged frame looks like any other.

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

A socket lives no longer than the session and membership that opened it. Each process keeps
one `Line` per signed-in user with sockets in it: a channel in the user's group
(`user_group`), which workspaces/signals.py tells when the account changes. "end" closes
the sockets of one session (logout) or all of them (user deleted) with 4401; "recheck"
makes each socket (or those of one workspace, on a membership's deletion) check its session,
user and membership again (`access_code`): 4401 when the session is over or the user is
inactive, 4403 when the membership is gone. A password change makes every other session's
stored hash stale (4401); the session that changed it lives on under a new key, so its
sockets close with SESSION_MOVED and reconnect with the browser's new cookie. Every
RECHECK_SECONDS each socket checks again anyway: sessions that expire (idle or absolute
timeout, ackly/sessions.py) end their sockets within that time, and so does a change whose
message was lost (a Redis blip, a queryset `update()` that sends no signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import weakref
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare, salted_hmac

from ackly.compat import daphne_websocket
from ackly.metrics import socket_closed, socket_opened
from ackly.sessions import past_max_age
from ingest.broadcast import MESSAGE_TYPE, workspace_group
from workspaces.models import Membership, Workspace

logger = logging.getLogger(__name__)

# Close codes before accept (SPEC §6) and when the session or membership ends: the page
# stops retrying on these.
NOT_LOGGED_IN = 4401
NOT_A_MEMBER = 4403
# The socket's session moved to a new key (the password was changed in it): the page
# reconnects, and the handshake decides with the browser's new cookie.
SESSION_MOVED = 4001

ACCOUNT_TYPE = "ackly.account"
# Every socket checks its session, user and membership again this often (with jitter, so a
# process's sockets do not all query at once): two indexed queries each.
RECHECK_SECONDS = 60.0
# A password change is seen (post_save) a moment before Django moves the changing session to
# a new key (update_session_auth_hash, same request): a socket whose session still holds the
# old hash looks again after this long before it is told it is signed out.
MOVE_GRACE_SECONDS = 0.3

# The least time between a room's frames of list messages, and the most: between them, a room
# waits as long as sending its last frame to its sockets took. Adds at most FLUSH_INTERVAL to
# the live latency of a small busy room.
FLUSH_INTERVAL = 0.02
FLUSH_INTERVAL_MAX = 0.1
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
        self.next_frame = float("-inf")  # loop time before which pending lists wait
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
        wait = self.next_frame - loop.time()
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
        loop = asyncio.get_running_loop()
        started = loop.time()
        text = json.dumps(payload, separators=(",", ":"))
        frame = None  # the websocket frame, made once for every socket Daphne holds
        for socket in list(self.sockets):
            if not socket.live or socket.ended:
                continue  # not accepted yet (its page catches up over HTTP), or being closed
            try:
                wire = socket.wire
                if wire is None:  # another server: the ASGI way
                    await socket.send(text_data=text)
                elif wire.state == wire.STATE_OPEN:
                    if frame is None:
                        frame = wire.factory.prepareMessage(text.encode())
                    wire.sendPreparedMessage(frame)
                # else: Daphne is closing it (an ASGI send would raise); its disconnect follows
            except Exception:  # noqa: BLE001 - never leave a socket open that hears nothing
                logger.warning("Could not send a frame to a socket of %s: closing it",
                               self.group, exc_info=True)
                self.sockets.discard(socket)
                socket.spawn(socket.end(ROOM_LOST))  # the page reconnects and catches up
        sent = loop.time()
        self.next_frame = sent + max(FLUSH_INTERVAL, min(sent - started, FLUSH_INTERVAL_MAX))


def user_group(user_pk: int) -> str:
    """The group every socket of one user joins. Only the server names groups: knowing it
    gives a browser nothing, and it carries account notices, never workspace data."""
    return f"user.{user_pk}"


def session_tag(session_key: str) -> str:
    """Names a session in account notices without sending its key through Redis."""
    return salted_hmac("ackly.sockets.session", session_key).hexdigest()[:32]


class Line:
    """One user's sockets in this process, and the one channel that hears the user's group."""

    def __init__(self, lines: dict[str, Line], layer: Any, group: str) -> None:
        self.lines = lines
        self.layer = layer
        self.group = group
        self.sockets: set[WorkspaceConsumer] = set()
        self.channel: str | None = None
        self.task: asyncio.Task | None = None
        self.opened = asyncio.Event()
        self.closed = False

    async def open(self) -> None:
        try:
            self.channel = await self.layer.new_channel()
            await self.layer.group_add(self.group, self.channel)
            self.task = asyncio.get_running_loop().create_task(self._listen())
        finally:
            self.opened.set()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.lines.get(self.group) is self:
            del self.lines[self.group]
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        if self.channel is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:  # noqa: BLE001 - the layer may be the thing that failed
                logger.debug("group_discard failed for %s", self.group, exc_info=True)

    async def _listen(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            if message.get("type") != ACCOUNT_TYPE:
                continue
            try:
                self.hear(message)
            except Exception:  # noqa: BLE001 - one bad notice must not end the line
                logger.exception("Dropped an account notice for %s", self.group)

    def hear(self, message: dict[str, Any]) -> None:
        action = message.get("do")
        for socket in list(self.sockets):
            if action == "end":
                session = message.get("session")
                if session is None or session == socket.session_tag:
                    socket.spawn(socket.end(NOT_LOGGED_IN))
            elif action == "recheck":
                workspace = message.get("workspace")
                if workspace is None or workspace == socket.workspace_pk:
                    socket.spawn(socket.recheck(grace=True))


# Lines per event loop and user group.
_lines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Line]] = (
    weakref.WeakKeyDictionary()
)


async def join_line(group: str, socket: WorkspaceConsumer) -> Line:
    """The socket's line (made and subscribed for the user's first socket); raises if the
    layer fails."""
    lines = _lines.setdefault(asyncio.get_running_loop(), {})
    line = lines.get(group)
    if line is None:
        line = lines[group] = Line(lines, get_channel_layer(), group)
        line.sockets.add(socket)
        try:
            await line.open()
        except BaseException:
            line.sockets.discard(socket)
            await line.close()
            raise
        return line
    line.sockets.add(socket)
    await line.opened.wait()  # a notice sent before the subscription would be lost
    if line.closed:
        line.sockets.discard(socket)
        raise ConnectionError(f"the line of {group} could not subscribe")
    return line


async def leave_line(line: Line, socket: WorkspaceConsumer) -> None:
    line.sockets.discard(socket)
    if not line.sockets:
        await line.close()


def _session_store(session_key: str):
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


def _hash_holds(session_hash: Any, user) -> bool:
    """Django's own test (django.contrib.auth.get_user), fallback secret keys included."""
    if not isinstance(session_hash, str):
        return False
    return any(
        constant_time_compare(session_hash, candidate)
        for candidate in [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    )


STALE = -1  # the session holds an old password's hash (a close code after the grace)


def access_code(
    session_key: str | None, user_pk: int, workspace_pk: int, opened_with: str
) -> int | None:
    """None while the socket may stay open; else why not: 4401, 4403, SESSION_MOVED or STALE.

    `opened_with` is the user's session auth hash when the socket opened. A socket opened
    without a session (tests that set scope["user"] directly) is checked for its user and
    membership only.
    """
    membership = (
        Membership.objects.filter(user_id=user_pk, workspace_id=workspace_pk, user__is_active=True)
        .select_related("user")
        .first()
    )
    if membership is not None:
        user = membership.user
    else:
        user = get_user_model()._default_manager.filter(pk=user_pk, is_active=True).first()
        if user is None:
            return NOT_LOGGED_IN
    if session_key is not None:
        store = _session_store(session_key)
        data = store.load()  # {} when missing or expired
        if not data:
            moved = (not constant_time_compare(opened_with, user.get_session_auth_hash())
                     and not store.exists(session_key))
            return SESSION_MOVED if moved else NOT_LOGGED_IN
        if str(data.get(SESSION_KEY)) != user._meta.pk.value_to_string(user):
            return NOT_LOGGED_IN
        if past_max_age(data):  # as the dashboard's pages would sign it out
            return NOT_LOGGED_IN
        if not _hash_holds(data.get(HASH_SESSION_KEY), user):
            return STALE
    return None if membership is not None else NOT_A_MEMBER


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
    """Accepts only a logged-in member of the workspace in the URL, then relays its broadcasts
    until the session or the membership ends."""

    # No channel of its own: the socket's Room hears the group for all the process's sockets
    # of the workspace (with pub/sub, a channel per socket was a SUBSCRIBE per socket), and its
    # Line hears the user's group for all the process's sockets of the user.
    channel_layer_alias = None
    room: Room | None = None
    line: Line | None = None
    live = False  # accepted: frames may be sent
    # Under Daphne, the socket's autobahn protocol: a room sends it each frame made once
    # (ackly.compat.daphne_websocket); None under other servers and in tests.
    wire: Any = None
    ended = False  # told to close: no more frames, no more checks
    session_key: str | None = None
    session_tag: str | None = None
    workspace_pk: int | None = None
    user_pk: int | None = None
    opened_with = ""

    async def connect(self) -> None:
        self.tasks: set[asyncio.Task] = set()
        user = self.scope.get("user")
        org_id = self.scope["url_route"]["kwargs"]["org_id"]
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_LOGGED_IN)
            return
        session = self.scope.get("session")
        if session is not None and session.session_key:
            self.session_key = session.session_key
            self.session_tag = session_tag(session.session_key)
        self.opened_with = user.get_session_auth_hash()
        self.user_pk = user.pk
        # On the user's line before the check: a logout or removal committed after the check
        # is heard; one committed before it is seen by the check.
        try:
            self.line = await join_line(user_group(user.pk), self)
        except Exception:  # noqa: BLE001 - the channel layer is down: the page retries
            logger.warning("Refused a live socket for %s: the channel layer failed", org_id)
            await self.close()
            return
        self.workspace_pk = await self._workspace_pk(org_id)
        code: int | None = NOT_A_MEMBER
        if self.workspace_pk is not None:
            code = await self._access_code(user.pk)
        if code is not None:
            await self.end(NOT_A_MEMBER if code == NOT_A_MEMBER else NOT_LOGGED_IN)
            return
        if self.ended:  # told to close while checking
            return
        # In the room before the page hears "open": whatever commits after the page's
        # catch-up fetch (sent on open) reaches it live.
        try:
            self.room = await join(workspace_group(org_id), self)
        except Exception:  # noqa: BLE001 - the channel layer is down: the page retries
            logger.warning("Refused a live socket for %s: the channel layer failed", org_id)
            await self.close()
            return
        if self.ended:  # told to close while joining the room
            return
        await self.accept()
        self.wire = daphne_websocket(self.base_send)
        self.live = True
        socket_opened()
        self.spawn(self._recheck_every())

    async def disconnect(self, code: int) -> None:
        self.ended = True
        if self.live:
            self.live = False  # counted once, however often the socket is told it closed
            socket_closed()
        for task in list(getattr(self, "tasks", ())):
            if task is not asyncio.current_task():
                task.cancel()
        if self.room is not None:
            await leave(self.room, self)
        if self.line is not None:
            await leave_line(self.line, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Push-only: whatever the page sends is ignored."""

    def spawn(self, coroutine) -> None:
        """Run `coroutine` beside the socket; cancelled when it disconnects."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def end(self, code: int) -> None:
        """Close the socket now, with `code`; nothing more is sent to it."""
        if self.ended:
            return
        self.ended = True
        if self.room is not None:
            self.room.sockets.discard(self)  # no frame after the close
        with contextlib.suppress(Exception):  # already closing
            await self.close(code=code)

    async def recheck(self, grace: bool = False) -> None:
        """Check the session, user and membership again; end the socket when one is over."""
        if self.ended or self.workspace_pk is None or self.user_pk is None:
            return
        code = await self._access_code(self.user_pk)
        if code == STALE and grace:
            await asyncio.sleep(MOVE_GRACE_SECONDS)
            code = await self._access_code(self.user_pk)
        if code is not None and not self.ended:
            await self.end(NOT_LOGGED_IN if code == STALE else code)

    async def _recheck_every(self) -> None:
        while not self.ended:
            await asyncio.sleep(RECHECK_SECONDS * random.uniform(0.9, 1.1))  # noqa: S311
            try:
                await self.recheck()
            except Exception:  # noqa: BLE001 - the database is down: the next round tries again
                logger.warning("Could not recheck a live socket's session", exc_info=True)

    async def _access_code(self, user_pk: int) -> int | None:
        return await database_sync_to_async(access_code)(
            self.session_key, user_pk, self.workspace_pk, self.opened_with
        )

    @database_sync_to_async
    def _workspace_pk(self, org_id: str) -> int | None:
        return Workspace.objects.filter(public_id=org_id).values_list("pk", flat=True).first()
