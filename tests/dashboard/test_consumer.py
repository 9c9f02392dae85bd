"""The dashboard websocket: who is let in, which group they hear, and what reaches the page."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from autobahn.websocket.protocol import PreparedMessage, WebSocketServerFactory
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.models import Session
from django.core import mail
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ackly.asgi import application
from ackly.routing import websocket_urlpatterns
from ingest.broadcast import workspace_group
from workspaces.consumers import ROOM_LOST, SESSION_MOVED, _rooms
from workspaces.models import Membership

# Transactional: the consumer reads from another thread (plans come back after each flush).
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
]


@pytest.fixture(autouse=True)
async def _hand_back_thread_connections():
    """The consumer queries from channels' sync thread: close that thread's connection after each
    test, or PostgreSQL refuses to drop the test database while the session is still open."""
    yield
    await database_sync_to_async(connections.close_all)()


def path_for(ws) -> str:
    return f"/ws/workspaces/{ws.public_id}/"


def routed(path: str, user) -> WebsocketCommunicator:
    """The consumer behind the URL router, with the user the auth middleware would have set."""
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    return communicator


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    # This runs in a throwaway thread: hand its connection back rather than leak it.
    connections.close_all()
    return f"{name}={client.cookies[name].value}".encode()


def through_asgi(path: str, cookie: bytes | None, origin: bytes = b"http://testserver"):
    """The full production stack: origin check, session auth, router, consumer."""
    headers = [(b"origin", origin), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def broadcast(ws, payload: dict) -> None:
    await get_channel_layer().group_send(
        workspace_group(ws.public_id), {"type": "ackly.message", "payload": payload}
    )


async def test_a_member_is_accepted_and_hears_the_workspaces_broadcasts(member, workspace):
    communicator = routed(path_for(workspace), member)
    connected, _ = await communicator.connect()
    assert connected
    payload = {"type": "events", "items": [{"kind": "event", "id": "6634a1f2c8d9e3b4a2f10001",
                                            "status": "success", "message": "hi"}]}
    await broadcast(workspace, payload)
    assert await communicator.receive_json_from(timeout=2) == payload
    await communicator.disconnect()


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "timeline", "items": [{"kind": "timeline", "id": "tle_1", "category": "sales"}]},
        {"type": "snapshot", "item": {"snapshotType": "tickets_open", "metrics": {"open": 3}}},
        {"type": "rejections", "items": [{"source": {"id": "app_1"}, "code": "invalid_key",
                                          "count": 1}]},
    ],
    ids=["timeline", "snapshot", "rejections"],
)
async def test_every_message_shape_is_relayed_as_json_text_unchanged(owner, workspace, payload):
    communicator = routed(path_for(workspace), owner)
    assert (await communicator.connect())[0]
    await broadcast(workspace, payload)
    assert await communicator.receive_json_from(timeout=2) == payload
    await communicator.disconnect()


async def test_an_anonymous_visitor_is_refused_with_4401(workspace):
    connected, code = await routed(path_for(workspace), AnonymousUser()).connect()
    assert (connected, code) == (False, 4401)


async def test_a_non_member_is_refused_with_4403(outsider, workspace, other_workspace):
    connected, code = await routed(path_for(workspace), outsider).connect()
    assert (connected, code) == (False, 4403)


async def test_an_unknown_workspace_is_refused_with_4403(member):
    connected, code = await routed("/ws/workspaces/org_nope/", member).connect()
    assert (connected, code) == (False, 4403)


async def test_the_socket_is_push_only(member, workspace):
    communicator = routed(path_for(workspace), member)
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data='{"type": "events", "items": []}')
    await communicator.send_to(text_data="not json")
    # Nothing echoes back, nothing reaches the group, and the socket stays open.
    assert await communicator.receive_nothing(timeout=0.3)
    await broadcast(workspace, {"type": "events", "items": []})
    assert await communicator.receive_json_from(timeout=2) == {"type": "events", "items": []}
    await communicator.disconnect()


async def test_a_message_to_one_workspace_never_reaches_anothers_socket(
    member, outsider, workspace, other_workspace
):
    ours = routed(path_for(workspace), member)
    theirs = routed(path_for(other_workspace), outsider)
    assert (await ours.connect())[0] and (await theirs.connect())[0]

    await broadcast(workspace, {"type": "events", "items": [{"id": "only-for-acme"}]})
    await broadcast(other_workspace, {"type": "events", "items": [{"id": "only-for-globex"}]})

    assert (await ours.receive_json_from(timeout=2))["items"] == [{"id": "only-for-acme"}]
    assert (await theirs.receive_json_from(timeout=2))["items"] == [{"id": "only-for-globex"}]
    assert await ours.receive_nothing(timeout=0.3)
    assert await theirs.receive_nothing(timeout=0.3)
    await ours.disconnect()
    await theirs.disconnect()


async def test_a_closed_socket_leaves_the_group(member, workspace):
    communicator = routed(path_for(workspace), member)
    assert (await communicator.connect())[0]
    await communicator.disconnect()
    layer = get_channel_layer()
    if hasattr(layer, "groups"):  # the in-memory layer exposes its membership
        assert not layer.groups.get(workspace_group(workspace.public_id))


async def test_a_processs_sockets_of_one_workspace_share_one_subscription(
    member, owner, workspace
):
    first, second = routed(path_for(workspace), member), routed(path_for(workspace), owner)
    assert (await first.connect())[0] and (await second.connect())[0]
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):  # it exposes its membership
        assert len(layer.groups[workspace_group(workspace.public_id)]) == 1
    await broadcast(workspace, {"type": "events", "items": [{"id": "e1"}]})
    assert (await first.receive_json_from(timeout=2))["items"] == [{"id": "e1"}]
    assert (await second.receive_json_from(timeout=2))["items"] == [{"id": "e1"}]
    await first.disconnect()
    # The other socket still hears the workspace.
    await broadcast(workspace, {"type": "events", "items": [{"id": "e2"}]})
    assert (await second.receive_json_from(timeout=2))["items"] == [{"id": "e2"}]
    await second.disconnect()


async def test_messages_within_the_flush_interval_share_one_frame_in_order(
    member, workspace, monkeypatch
):
    monkeypatch.setattr("workspaces.consumers.FLUSH_INTERVAL", 0.5)
    communicator = routed(path_for(workspace), member)
    assert (await communicator.connect())[0]
    await broadcast(workspace, {"type": "events", "items": [{"id": "e1"}]})
    # Quiet before: the first goes out at once, alone.
    assert await communicator.receive_json_from(timeout=2) == {
        "type": "events", "items": [{"id": "e1"}]
    }
    for name in ("e2", "e3"):
        await broadcast(workspace, {"type": "events", "items": [{"id": name}]})
    await broadcast(workspace, {"type": "timeline", "items": [{"id": "t1"}]})
    await broadcast(workspace, {"type": "events", "items": [{"id": "e4"}]})
    await broadcast(workspace, {"type": "snapshot", "item": {"snapshotType": "s"}})
    # The snapshot goes alone, after what was pending (one frame per kind, items in order).
    assert await communicator.receive_json_from(timeout=2) == {
        "type": "events", "items": [{"id": "e2"}, {"id": "e3"}, {"id": "e4"}]
    }
    assert await communicator.receive_json_from(timeout=2) == {
        "type": "timeline", "items": [{"id": "t1"}]
    }
    assert await communicator.receive_json_from(timeout=2) == {
        "type": "snapshot", "item": {"snapshotType": "s"}
    }
    await broadcast(workspace, {"type": "events", "items": [{"id": "e5"}]})
    # Within the interval of the last frame: it waits for the timer, then goes.
    assert await communicator.receive_nothing(timeout=0.2)
    assert (await communicator.receive_json_from(timeout=2))["items"] == [{"id": "e5"}]
    await communicator.disconnect()


class SlowSocket:
    """A room's socket whose sends take `seconds` (as sending to a thousand sockets does)."""

    live = True
    ended = False
    wire = None

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def send(self, text_data: str) -> None:
        await asyncio.sleep(self.seconds)


async def test_after_a_frame_that_took_long_to_send_messages_wait_as_long_and_share_the_next(
    member, workspace, monkeypatch
):
    monkeypatch.setattr("workspaces.consumers.FLUSH_INTERVAL", 0.01)
    communicator = routed(path_for(workspace), member)
    assert (await communicator.connect())[0]
    room = _rooms[asyncio.get_running_loop()][workspace_group(workspace.public_id)]
    slow = SlowSocket(0.3)
    room.sockets.add(slow)
    await broadcast(workspace, {"type": "events", "items": [{"id": "e1"}]})
    assert (await communicator.receive_json_from(timeout=2))["items"] == [{"id": "e1"}]
    # Sent while the room was still sending e1 (0.3 s): past FLUSH_INTERVAL after it, yet one
    # frame, not one per message each costing the room another 0.3 s.
    for name in ("e2", "e3"):
        await broadcast(workspace, {"type": "events", "items": [{"id": name}]})
    assert (await communicator.receive_json_from(timeout=3))["items"] == [
        {"id": "e2"}, {"id": "e3"}
    ]
    room.sockets.discard(slow)
    await communicator.disconnect()


class Wire:
    """What a room sees of a socket Daphne holds: its autobahn protocol (ackly.compat)."""

    STATE_OPEN, STATE_CLOSING = 3, 2

    def __init__(self, factory: WebSocketServerFactory, state: int = STATE_OPEN) -> None:
        self.factory = factory
        self.state = state
        self.frames: list[PreparedMessage] = []

    def sendPreparedMessage(self, frame: PreparedMessage) -> None:  # noqa: N802 - autobahn's name
        self.frames.append(frame)


class WiredSocket:
    live = True
    ended = False

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.texts: list[str] = []

    async def send(self, text_data: str) -> None:
        self.texts.append(text_data)


async def test_a_frame_for_daphnes_sockets_is_made_once_and_sent_to_each_open_one(
    member, workspace
):
    communicator = routed(path_for(workspace), member)
    assert (await communicator.connect())[0]
    room = _rooms[asyncio.get_running_loop()][workspace_group(workspace.public_id)]
    factory = WebSocketServerFactory()
    first, second = WiredSocket(Wire(factory)), WiredSocket(Wire(factory))
    closing = WiredSocket(Wire(factory, state=Wire.STATE_CLOSING))
    room.sockets.update((first, second, closing))
    await broadcast(workspace, {"type": "events", "items": [{"id": "é1"}]})
    text = await communicator.receive_from(timeout=2)  # the test's socket: the ASGI way
    frame = first.wire.frames[0]
    assert second.wire.frames == [frame]  # one frame object, made once
    # A server's unmasked text frame of the same JSON text, UTF-8.
    assert frame.payloadHybi == b"\x81" + bytes([len(text.encode())]) + text.encode()
    # A socket Daphne is closing gets nothing from the room (an ASGI send to it would raise):
    # its disconnect follows.
    assert closing.wire.frames == [] and closing.texts == []
    room.sockets.difference_update((first, second, closing))
    await communicator.disconnect()


async def test_a_room_that_could_not_subscribe_is_not_kept_for_the_next_socket(
    member, workspace, monkeypatch
):
    layer = get_channel_layer()
    real_group_add = layer.group_add
    calls = []

    async def fails_once(group, channel):
        calls.append(group)
        if len(calls) == 1:
            raise ConnectionError("Redis is down")
        await real_group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", fails_once)
    refused = routed(path_for(workspace), member)
    assert not (await refused.connect())[0]  # the page retries, as on any close
    retried = routed(path_for(workspace), member)
    assert (await retried.connect())[0]
    await broadcast(workspace, {"type": "events", "items": [{"id": "e1"}]})
    assert (await retried.receive_json_from(timeout=2))["items"] == [{"id": "e1"}]
    await retried.disconnect()


async def test_a_room_whose_heartbeat_does_not_come_back_closes_its_sockets(
    member, workspace, monkeypatch
):
    monkeypatch.setattr("workspaces.consumers.HEARTBEAT_SECONDS", 0.2)
    communicator = routed(path_for(workspace), member)
    assert (await communicator.connect())[0]
    layer = get_channel_layer()
    real_group_send = layer.group_send

    async def heartbeats_lost(group, message):
        if message["type"] == "ackly.heartbeat":
            raise ConnectionError("Redis is down")
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", heartbeats_lost)
    closed = await communicator.receive_output(timeout=3)
    assert closed == {"type": "websocket.close", "code": 4000}
    # The next socket of the workspace gets a fresh room that hears the group.
    monkeypatch.undo()
    again = routed(path_for(workspace), member)
    assert (await again.connect())[0]
    await broadcast(workspace, {"type": "events", "items": [{"id": "e2"}]})
    assert (await again.receive_json_from(timeout=2))["items"] == [{"id": "e2"}]
    await again.disconnect()


async def test_a_room_that_does_not_hear_itself_refuses_its_first_socket(
    member, workspace, monkeypatch
):
    """A subscription lost while the layer reconnects must not yield a deaf room that accepts."""
    monkeypatch.setattr("workspaces.consumers.HEARTBEAT_SECONDS", 0.2)
    layer = get_channel_layer()
    real_group_send = layer.group_send

    async def heartbeats_vanish(group, message):
        if message["type"] != "ackly.heartbeat":
            await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", heartbeats_vanish)
    assert not (await routed(path_for(workspace), member).connect())[0]
    monkeypatch.undo()
    retried = routed(path_for(workspace), member)
    assert (await retried.connect())[0]
    await broadcast(workspace, {"type": "events", "items": [{"id": "e3"}]})
    assert (await retried.receive_json_from(timeout=2))["items"] == [{"id": "e3"}]
    await retried.disconnect()


class TestThroughTheFullStack:
    async def test_a_logged_in_member_is_accepted_by_session_cookie(self, member, workspace):
        cookie = await asyncio.to_thread(session_cookie, member)
        communicator = through_asgi(path_for(workspace), cookie)
        connected, _ = await communicator.connect()
        assert connected
        await broadcast(workspace, {"type": "events", "items": []})
        assert await communicator.receive_json_from(timeout=2) == {"type": "events", "items": []}
        await communicator.disconnect()

    async def test_the_consumer_sends_with_the_servers_own_send_not_a_session_wrapper(
        self, member, workspace
    ):
        """The session is resolved once at the handshake; frames do not pass through it
        (and a room can see the server's socket behind `send`: ackly.compat)."""
        cookie = await asyncio.to_thread(session_cookie, member)
        communicator = through_asgi(path_for(workspace), cookie)
        assert (await communicator.connect())[0]
        room = _rooms[asyncio.get_running_loop()][workspace_group(workspace.public_id)]
        (consumer,) = room.sockets
        assert consumer.base_send == communicator.output_queue.put
        assert consumer.scope["session"].session_key == cookie.decode().split("=", 1)[1]
        assert consumer.scope["user"].pk == member.pk
        await communicator.disconnect()

    async def test_no_session_is_refused_with_4401(self, workspace):
        connected, code = await through_asgi(path_for(workspace), None).connect()
        assert (connected, code) == (False, 4401)

    async def test_an_outsiders_session_is_refused_with_4403(self, outsider, workspace):
        cookie = await asyncio.to_thread(session_cookie, outsider)
        connected, code = await through_asgi(path_for(workspace), cookie).connect()
        assert (connected, code) == (False, 4403)

    async def test_a_foreign_origin_is_refused_even_for_a_member(self, member, workspace):
        cookie = await asyncio.to_thread(session_cookie, member)
        communicator = through_asgi(path_for(workspace), cookie, origin=b"https://evil.example")
        connected, _ = await communicator.connect()
        assert not connected


class TestASocketEndsWithItsSessionAndMembership:
    """Logout, a password change, deactivation, removal, the workspace's deletion and an expired
    session each close the sockets they concern within a second (STYLE.md, Realtime)."""

    PASSWORD = "correct-horse-battery"

    @staticmethod
    @database_sync_to_async
    def signed_in(user) -> Client:
        """A browser signed in as `user` (its own session)."""
        client = Client()
        client.force_login(user)
        return client

    @staticmethod
    def cookie_of(client: Client) -> bytes:
        name = settings.SESSION_COOKIE_NAME
        return f"{name}={client.cookies[name].value}".encode()

    async def open(self, client: Client, ws) -> WebsocketCommunicator:
        communicator = through_asgi(path_for(ws), self.cookie_of(client))
        connected, _ = await communicator.connect()
        assert connected
        return communicator

    @staticmethod
    async def closed_with(communicator: WebsocketCommunicator) -> int:
        output = await communicator.receive_output(timeout=1)
        assert output["type"] == "websocket.close", output
        return output["code"]

    @staticmethod
    async def still_open(communicator: WebsocketCommunicator, ws) -> None:
        await broadcast(ws, {"type": "events", "items": [{"id": "still-here"}]})
        assert (await communicator.receive_json_from(timeout=2))["items"] == [{"id": "still-here"}]
        await communicator.disconnect()

    async def test_logging_out_closes_that_sessions_sockets_with_4401_and_no_others(
        self, member, workspace
    ):
        browser, other_browser = await self.signed_in(member), await self.signed_in(member)
        first = await self.open(browser, workspace)
        second = await self.open(browser, workspace)
        elsewhere = await self.open(other_browser, workspace)

        response = await database_sync_to_async(browser.post)(reverse("logout"))
        assert response.status_code == 302

        assert await self.closed_with(first) == 4401
        assert await self.closed_with(second) == 4401
        await self.still_open(elsewhere, workspace)

    async def test_a_password_change_closes_the_other_sessions_sockets_with_4401(
        self, member, workspace
    ):
        changer, other_browser = await self.signed_in(member), await self.signed_in(member)
        own = await self.open(changer, workspace)
        elsewhere = await self.open(other_browser, workspace)

        response = await database_sync_to_async(changer.post)(reverse("password_change"), {
            "old_password": self.PASSWORD,
            "new_password1": "a-new-unusual-passphrase", "new_password2": "a-new-unusual-passphrase",
        })
        assert response.status_code == 302

        assert await self.closed_with(elsewhere) == 4401
        # The changing session goes on under a new key: its socket reconnects with it.
        assert await self.closed_with(own) == SESSION_MOVED
        assert SESSION_MOVED not in (4401, 4403)
        again = await self.open(changer, workspace)
        await self.still_open(again, workspace)
        connected, code = await through_asgi(
            path_for(workspace), self.cookie_of(other_browser)
        ).connect()
        assert (connected, code) == (False, 4401)

    async def test_a_password_reset_by_email_closes_every_sessions_sockets_with_4401(
        self, member, workspace
    ):
        first = await self.open(await self.signed_in(member), workspace)
        second = await self.open(await self.signed_in(member), workspace)

        @database_sync_to_async
        def reset_from_another_browser():
            browser = Client()
            browser.post(reverse("password_reset"), {"email": member.email})
            link = re.search(r"https?://testserver(/account/reset/\S+/)", mail.outbox[0].body)
            form_url = browser.get(link.group(1))["Location"]
            password = "a-new-unusual-passphrase"
            saved = browser.post(form_url, {"new_password1": password, "new_password2": password})
            assert saved.status_code == 302

        await reset_from_another_browser()
        assert await self.closed_with(first) == 4401
        assert await self.closed_with(second) == 4401

    async def test_deactivating_the_user_closes_every_socket_with_4401(
        self, member, workspace
    ):
        first = await self.open(await self.signed_in(member), workspace)
        second = await self.open(await self.signed_in(member), workspace)

        @database_sync_to_async
        def deactivate():
            user = get_user_model().objects.get(pk=member.pk)  # as the admin loads it
            user.is_active = False
            user.save()

        await deactivate()
        assert await self.closed_with(first) == 4401
        assert await self.closed_with(second) == 4401

    async def test_saving_the_user_without_changing_credentials_closes_nothing(
        self, member, workspace
    ):
        socket = await self.open(await self.signed_in(member), workspace)

        @database_sync_to_async
        def rename():
            user = get_user_model().objects.get(pk=member.pk)
            user.first_name = "Mario"
            user.save()

        await rename()
        await self.still_open(socket, workspace)

    async def test_removal_from_the_workspace_closes_its_sockets_with_4403_and_no_others(
        self, member, workspace, free_workspace
    ):
        await database_sync_to_async(Membership.objects.create)(
            workspace=free_workspace, user=member
        )
        browser = await self.signed_in(member)
        removed = await self.open(browser, workspace)
        kept = await self.open(browser, free_workspace)

        await database_sync_to_async(
            Membership.objects.filter(workspace=workspace, user=member).delete
        )()

        assert await self.closed_with(removed) == 4403
        await self.still_open(kept, free_workspace)

    async def test_deleting_the_workspace_closes_every_members_socket_with_4403(
        self, owner, member, workspace
    ):
        owners = await self.open(await self.signed_in(owner), workspace)
        members = await self.open(await self.signed_in(member), workspace)

        await database_sync_to_async(workspace.delete)()

        assert await self.closed_with(owners) == 4403
        assert await self.closed_with(members) == 4403

    async def test_deleting_the_user_closes_every_socket_with_4401(self, member, workspace):
        socket = await self.open(await self.signed_in(member), workspace)
        await database_sync_to_async(get_user_model().objects.filter(pk=member.pk).delete)()
        assert await self.closed_with(socket) in (4401, 4403)  # both notices race; either ends it

    async def test_a_session_that_expires_while_open_closes_its_socket_with_4401(
        self, member, workspace, monkeypatch
    ):
        monkeypatch.setattr("workspaces.consumers.RECHECK_SECONDS", 0.3)
        browser = await self.signed_in(member)
        socket = await self.open(browser, workspace)
        assert await socket.receive_nothing(timeout=0.5)  # checked, and still valid

        @database_sync_to_async
        def expire():  # what the idle timeout does: the row's expiry passes, nothing is sent
            key = browser.cookies[settings.SESSION_COOKIE_NAME].value
            Session.objects.filter(session_key=key).update(
                expire_date=timezone.now() - timedelta(seconds=1)
            )

        await expire()
        assert await self.closed_with(socket) == 4401

    async def test_a_notice_for_one_user_never_closes_anothers_socket(
        self, owner, member, workspace
    ):
        owners = await self.open(await self.signed_in(owner), workspace)
        members_browser = await self.signed_in(member)
        members = await self.open(members_browser, workspace)
        await database_sync_to_async(members_browser.post)(reverse("logout"))
        assert await self.closed_with(members) == 4401
        await self.still_open(owners, workspace)


class BrokenWire:
    """A Daphne socket whose prepared-frame write raises (a transport error, or an autobahn
    upgrade that changed the calls the room makes)."""

    STATE_OPEN = 3
    state = 3

    def __init__(self) -> None:
        self.factory = WebSocketServerFactory()

    def sendPreparedMessage(self, frame) -> None:  # noqa: N802 - autobahn's name
        raise AttributeError("sendPreparedMessage")


async def test_a_socket_the_room_cannot_write_to_is_closed_so_its_page_reconnects(
    member, workspace
):
    communicator = routed(path_for(workspace), member)
    assert (await communicator.connect())[0]
    room = _rooms[asyncio.get_running_loop()][workspace_group(workspace.public_id)]
    (consumer,) = room.sockets
    consumer.wire = BrokenWire()

    await broadcast(workspace, {"type": "events", "items": [{"id": "e1"}]})

    # Not left open and deaf: closed as when a room loses its group, so the page reconnects
    # and catches up over HTTP.
    assert await communicator.receive_output(timeout=1) == {
        "type": "websocket.close", "code": ROOM_LOST}
    await communicator.disconnect()
