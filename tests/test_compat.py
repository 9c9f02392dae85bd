"""Each reliance on a dependency's internals (ackly/compat.py) still holds for the installed one.

An upgrade that renames or changes one of them fails here, by name, rather than as a live
update that never arrives or a cache value read wrongly.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from channels_redis.pubsub import RedisPubSubLoopLayer
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCacheClient
from django.core.handlers.wsgi import WSGIHandler
from django.test import RequestFactory
from rest_framework.request import Request

from ackly.cache import AcklyRedisCache
from ackly.compat import (
    SharedRedisCacheClient,
    at_interpreter_exit,
    c_compact_encoder,
    cache_client,
    cache_value,
    daphne_websocket,
    django_request,
    group_channel,
    load_middleware_from,
)

ROOT = Path(__file__).resolve().parent.parent


def test_the_group_channel_is_the_one_channels_redis_publishes_a_groups_messages_to():
    layer = RedisPubSubLoopLayer(hosts=["redis://127.0.0.1:6379/15"], prefix="ackly-test")
    assert group_channel("ackly-test", "ws.org_1") == layer._get_group_channel_name("ws.org_1")


@pytest.mark.redis
def test_a_value_djangos_redis_cache_stored_reads_back_over_plain_redis():
    cache = caches["auth"]
    client = redis.Redis.from_url(settings.REDIS_URL)
    for name, value in (("compat:object", {"a": [1, "é"], "b": None}), ("compat:count", 7)):
        cache.set(name, value, 30)
        assert cache_value(client.get(cache.make_key(name))) == value
    cache.delete_many(["compat:object", "compat:count"])


def test_the_shared_client_reads_what_djangos_redis_cache_client_sets():
    plain = RedisCacheClient(["redis://127.0.0.1:6379/15"])
    for name in ("_servers", "_pool_class", "_pool_options", "_client", "_get_connection_pool_index"):
        assert hasattr(plain, name), name
    cache = AcklyRedisCache("redis://127.0.0.1:6379/15", {})
    client = cache_client(cache)
    assert isinstance(client, SharedRedisCacheClient)
    # One redis.Redis per server, options and process, whichever backend object asks.
    other = cache_client(AcklyRedisCache("redis://127.0.0.1:6379/15", {}))
    assert client.get_client(write=True) is other.get_client(write=False)


class _Recorder:
    built: list[str] = []

    def __init__(self, get_response):
        self.get_response = get_response
        _Recorder.built.append("built")

    def __call__(self, request):
        return self.get_response(request)


def test_a_handler_is_built_from_the_list_given_and_the_setting_is_left_as_it_was():
    full = settings.MIDDLEWARE
    _Recorder.built.clear()
    handler = WSGIHandler.__new__(WSGIHandler)
    load_middleware_from(handler, [f"{__name__}._Recorder"], handler.load_middleware, False)
    assert _Recorder.built == ["built"]
    assert settings.MIDDLEWARE is full


def test_the_c_encoder_writes_what_jsons_compact_encoder_writes():
    fallback = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    encode = c_compact_encoder(fallback.default)
    assert encode is not None  # CPython has it
    for value in ({"é": [1, 2.5, None, True], "b": {"c": "d\n\"q\""}}, [], "x", 10**30):
        assert encode(value) == fallback.encode(value)
    with pytest.raises(ValueError):
        encode({"n": float("nan")})


def test_an_exit_hook_runs_before_the_interpreter_joins_its_threads():
    # The thread waits for the hook: were the hook run after the join (as atexit's are), the
    # process would never end.
    code = (
        "import threading\n"
        "from ackly.compat import at_interpreter_exit\n"
        "done = threading.Event()\n"
        "threading.Thread(target=done.wait).start()\n"
        "at_interpreter_exit(lambda: (print('hook'), done.set()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "ackly.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (0, "hook\n"), result.stderr
    assert callable(at_interpreter_exit)


def test_the_django_request_is_the_one_drf_wraps():
    request = RequestFactory().post("/api/ingest")
    assert django_request(Request(request)) is request


async def test_daphne_hands_an_application_the_send_of_its_websockets_protocol():
    sends = []

    async def application(scope, receive, send):
        sends.append(send)

    server = Server(application, endpoints=["tcp:port=0:interface=127.0.0.1"])  # never run
    protocol = WebSocketProtocol()
    server.connections = {protocol: {}}  # as Server.run sets it up, and a connection adds itself
    server.create_application(protocol, {"type": "websocket"})
    await asyncio.sleep(0)
    assert daphne_websocket(sends[0]) is protocol
    assert daphne_websocket(application) is None  # anything else is not taken for it


# --- The calls a live room makes on a Daphne socket (workspaces/consumers.py Room._send) ---


def _open_daphne_socket():
    """Daphne's own websocket protocol on a string transport, open as after the handshake."""
    from daphne.ws_protocol import WebSocketFactory
    from twisted.internet.testing import StringTransport

    protocol = WebSocketFactory(None).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.client_addr = ["127.0.0.1", 1]
    protocol.state = protocol.STATE_OPEN
    return protocol, transport


def test_a_prepared_frame_is_the_bytes_daphnes_own_send_writes():
    protocol, transport = _open_daphne_socket()
    text = '{"type":"events","items":[{"id":"é1"}]}'

    protocol.sendPreparedMessage(protocol.factory.prepareMessage(text.encode()))
    prepared = transport.value()
    transport.clear()
    protocol.handle_reply({"type": "websocket.send", "text": text})

    assert prepared == transport.value() != b""


def test_daphne_refuses_an_asgi_send_to_a_closing_socket_so_the_room_skips_it():
    from autobahn.exception import Disconnected

    protocol, transport = _open_daphne_socket()
    protocol.state = protocol.STATE_CLOSING

    with pytest.raises(Disconnected):
        protocol.handle_reply({"type": "websocket.send", "text": "x"})
    assert transport.value() == b""
