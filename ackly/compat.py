"""Every reliance on a dependency's private or undocumented internals, in one place.

Each function here leans on something a library does not promise; tests/test_compat.py checks
each against the installed version, so an upgrade that changes one fails there, loudly,
instead of somewhere far away (a live update that never arrives, a cache value misread).
Nothing else in the project may use a dependency's underscore names.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache.backends.redis import RedisCache, RedisCacheClient, RedisSerializer
from django.core.handlers.base import BaseHandler

if TYPE_CHECKING:
    from redis import ConnectionPool, Redis

# --- channels-redis -------------------------------------------------------------------------


def group_channel(prefix: str, group: str) -> str:
    """The Redis channel the pub/sub channel layer's `group_send` publishes a group's messages
    to (channels_redis.pubsub.RedisPubSubLoopLayer._get_group_channel_name), so a PUBLISH
    from elsewhere reaches every process's subscribed sockets."""
    return f"{prefix}__group__{group}"


# --- Django's Redis cache -------------------------------------------------------------------

_serializer = RedisSerializer()


def cache_value(raw: bytes) -> Any:
    """A value as Django's Redis cache stores it (its RedisSerializer), read over plain Redis."""
    return _serializer.loads(raw)


_clients: dict[tuple[str, str, int], Any] = {}
_clients_lock = threading.Lock()


class SharedRedisCacheClient(RedisCacheClient):
    """`RedisCacheClient` whose pools and clients are made once per process, not per call
    (ackly.cache explains why). It reads what RedisCacheClient.__init__ sets."""

    # Private, so not in django-stubs.
    _servers: list[str]
    _pool_class: type[ConnectionPool]
    _pool_options: dict[str, Any]
    _client: type[Redis]
    if TYPE_CHECKING:

        def _get_connection_pool_index(self, write: bool) -> int: ...

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        # Backend objects are made per thread / per async context; the clients they share are
        # keyed by server and options, and by process (a forked child makes its own).
        url = self._servers[index]
        slot = (url, repr(sorted(self._pool_options.items())), os.getpid())
        client = _clients.get(slot)
        if client is None:
            with _clients_lock:
                client = _clients.get(slot)
                if client is None:
                    pool = self._pool_class.from_url(url, **self._pool_options)
                    client = _clients[slot] = self._client(connection_pool=pool)
        return client


def use_shared_clients(cache: RedisCache) -> None:
    """Make `cache` (in its __init__) use SharedRedisCacheClient (RedisCache's `_class`)."""
    cache._class = SharedRedisCacheClient  # type: ignore[attr-defined]  # private: not in django-stubs


def cache_client(cache: RedisCache) -> RedisCacheClient:
    """The RedisCacheClient a RedisCache talks through (its cached `_cache`)."""
    return cache._cache  # type: ignore[attr-defined]  # private: not in django-stubs


# --- Django's handler -----------------------------------------------------------------------

_loading = threading.Lock()


def load_middleware_from(
    handler: BaseHandler, paths: list[str], load: Callable[[bool], None], is_async: bool
) -> None:
    """Build `handler`'s chain from `paths` by Django's own `load` (BaseHandler.load_middleware,
    which reads settings.MIDDLEWARE and takes no list): the setting points at `paths` while it
    runs, once at start-up, under a lock."""
    with _loading:
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = paths
        try:
            load(is_async)
        finally:
            settings.MIDDLEWARE = full


# --- Django REST framework -----------------------------------------------------------------


def django_request(request: Any) -> Any:
    """The Django HttpRequest a DRF Request wraps (its `_request`), for code DRF calls with
    its Request only (the exception handler). Views get it from `dispatch` instead."""
    return request._request


# --- CPython --------------------------------------------------------------------------------


def c_compact_encoder(default: Callable[[Any], Any]) -> Callable[[Any], str] | None:
    """Compact UTF-8 JSON text from CPython's C encoder called directly (json.encoder's
    c_make_encoder), without JSONEncoder.encode's per-call set-up; None where there is none.
    Parsed JSON has no cycles, so no marker dict. Same output as JSONEncoder(ensure_ascii=False,
    separators=(",", ":"), allow_nan=False).encode."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:
        return None
    c_encoder = make(
        None, default, encoder.encode_basestring, None, ":", ",", False, False, False
    )
    return lambda value: "".join(c_encoder(value, 0))


def at_interpreter_exit(hook: Callable[[], None]) -> None:
    """Run `hook` when the interpreter starts to exit, BEFORE it joins non-daemon threads
    (concurrent.futures' executor threads among them): threading._register_atexit, what
    concurrent.futures itself uses. `atexit` runs only after that join, too late for a
    watchdog over threads that never finish. Hooks run in reverse order of registration."""
    threading._register_atexit(hook)  # type: ignore[attr-defined]  # private: not in typeshed


# --- Daphne ---------------------------------------------------------------------------------


def daphne_websocket(send: Any) -> Any | None:
    """The autobahn protocol of the Daphne websocket that an ASGI `send` replies on, or None
    (another server, a test communicator, a `send` wrapped by middleware).

    Daphne hands each application instance `partial(server.handle_reply, protocol)`
    (daphne.server.Server.create_application). With the protocol, a frame made once with
    autobahn's public `prepareMessage` goes to many sockets by `sendPreparedMessage`, instead
    of each send encoding the text and copying it into a new frame (workspaces/consumers.py).
    """
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol

    if (
        isinstance(send, partial)
        and getattr(send.func, "__func__", None) is Server.handle_reply
        and len(send.args) == 1
        and isinstance(send.args[0], WebSocketProtocol)
    ):
        return send.args[0]
    return None
