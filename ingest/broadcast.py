"""Live updates to a workspace's dashboard sessions through the channel layer (SPEC §6).

`broadcast` never raises: the channel layer (Redis) being down must not fail an ingest that
has already committed. Callers queue it with `transaction.on_commit`, so nothing is sent for
a rolled-back transaction and a dashboard never shows an event that was not stored.

How a message leaves sync code (the ingest views):

* With the Redis pub/sub layer (REDIS_URL): one PUBLISH on a synchronous Redis client made
  once per process, on the request's own thread, with the layer's serializer and the channel
  name its `group_send` publishes to, so every process's subscribed sockets receive it
  exactly as from `group_send` (tests/ingest/test_broadcast_shutdown.py pins that). No event
  loop is involved: `async_to_sync` ran the send on Daphne's loop (a SIGTERM that stopped the
  loop while a thread waited there hung the process forever), and the private sender loop
  that fixed it cost ~0.5 ms of CPU per request. Short socket timeouts bound the wait on a
  dead or stalled Redis.
* Any other layer (in memory: development and tests) is not thread-safe: its queues wake
  receivers on the caller's loop. It gets `async_to_sync(layer.group_send)`.

A failed send is logged as a warning at most once per WARN_INTERVAL_SECONDS (a Redis outage
must not write one traceback per request); the dashboards catch up over HTTP.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.db import transaction

from ackly.compat import group_channel
from ackly.metrics import broadcast_failed

logger = logging.getLogger(__name__)

# The dashboard consumer's handler is `ackly_message`: it sends `payload` as JSON text.
MESSAGE_TYPE = "ackly.message"

# A broadcast waits at most this long for Redis (connect, then the PUBLISH's reply).
CONNECT_TIMEOUT_SECONDS = 0.25
SEND_TIMEOUT_SECONDS = 0.5
WARN_INTERVAL_SECONDS = 10.0


def workspace_group(workspace_public_id: str) -> str:
    """The group every live session of one workspace joins (ASCII alnum/-/_/. only, < 100)."""
    return f"ws.{workspace_public_id}"


class _Publisher:
    """A synchronous Redis client for the pub/sub layer's first (only) host, per process."""

    def __init__(self, layer_config: dict[str, Any]) -> None:
        hosts = layer_config.get("hosts") or ["redis://127.0.0.1:6379"]
        if len(hosts) != 1 or not isinstance(hosts[0], str):
            raise ValueError("the pub/sub broadcast supports one Redis URL in CHANNEL_LAYERS")
        self.pid = os.getpid()
        self.prefix = layer_config.get("prefix", "asgi")
        self.client = redis.Redis.from_url(
            hosts[0],
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=SEND_TIMEOUT_SECONDS,
        )

    def publish(self, layer: RedisPubSubChannelLayer, group: str, event: dict[str, Any]) -> None:
        self.client.publish(group_channel(self.prefix, group), serialized(layer, event))


# msgpack (the Redis layer's format) holds integers in [-2**63, 2**64 - 1]; JSON, and so an
# event's metadata or a snapshot's metrics, has no such bound.
_MSGPACK_INT_MIN, _MSGPACK_INT_MAX = -(2**63), 2**64 - 1


def serialized(layer: RedisPubSubChannelLayer, message: dict[str, Any]) -> bytes:
    """The layer's bytes for `message`; an integer msgpack cannot hold is sent as the float a
    browser's JSON.parse makes of it anyway, or as its digits past a float's range. Only a
    message that fails is walked (the common case costs nothing); the stored value and the
    HTTP feed keep every digit."""
    try:
        return layer.serialize(message)
    except OverflowError:
        return layer.serialize(_packable(message))


def _packable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _packable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_packable(item) for item in value]
    if isinstance(value, int) and not _MSGPACK_INT_MIN <= value <= _MSGPACK_INT_MAX:
        try:
            return float(value)
        except OverflowError:
            return str(value)
    return value


def layer_prefix() -> str:
    return settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "asgi")


_publisher: _Publisher | None = None
_publisher_lock = threading.Lock()
_last_warning = float("-inf")


def _get_publisher() -> _Publisher:
    global _publisher
    publisher = _publisher
    if publisher is None or publisher.pid != os.getpid():
        with _publisher_lock:
            if _publisher is None or _publisher.pid != os.getpid():
                _publisher = _Publisher(settings.CHANNEL_LAYERS["default"].get("CONFIG", {}))
            publisher = _publisher
    return publisher


def send_to_group(group: str, event: dict[str, Any]) -> None:
    """Send one event to a channel-layer group from synchronous code; raises if the layer fails.

    With Redis, through this process's synchronous publisher (no event loop involved);
    otherwise through the layer's own `group_send`.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, RedisPubSubChannelLayer):
        _get_publisher().publish(layer, group, event)
    else:
        async_to_sync(layer.group_send)(group, event)


def broadcast(workspace_public_id: str, message: dict[str, Any]) -> None:
    """Send one message to the workspace's group now; log a warning if the layer fails."""
    try:
        send_to_group(
            workspace_group(workspace_public_id), {"type": MESSAGE_TYPE, "payload": message}
        )
    except Exception:  # noqa: BLE001 - any layer failure (Redis down) is non-fatal
        warn_failed(workspace_public_id)


def warn_failed(workspace_public_id: str) -> None:
    """Count a failed broadcast and log it (call from an except block), at most once per interval."""
    global _last_warning
    broadcast_failed()
    now = time.monotonic()
    if now - _last_warning >= WARN_INTERVAL_SECONDS:
        _last_warning = now
        logger.warning(
            "Broadcast to workspace %s failed; live sessions will catch up over HTTP "
            "(further failures within %.0fs are not logged)",
            workspace_public_id, WARN_INTERVAL_SECONDS, exc_info=True,
        )


def broadcast_on_commit(workspace_public_id: str, message: dict[str, Any]) -> None:
    """Queue `broadcast` for after the current transaction commits (never on rollback)."""
    transaction.on_commit(lambda: broadcast(workspace_public_id, message))
