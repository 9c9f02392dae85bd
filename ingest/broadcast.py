"""Live updates to a workspace's dashboard sessions through the channel layer (SPEC §6).

`broadcast` never raises: the channel layer (Redis) being down must not fail an ingest that
has already committed. Callers queue it with `transaction.on_commit`, so nothing is sent for
a rolled-back transaction and a dashboard never shows an event that was not stored.

Sync code (the ingest views) sends through one background thread per process that runs its
own event loop (`_Sender`), and waits at most SEND_TIMEOUT_SECONDS for it:

* Under Daphne, `async_to_sync` from a view's thread runs the send on the server's event loop.
  A SIGTERM stops that loop; a thread waiting there never wakes, and the interpreter's exit
  joins the executor's threads, so Daphne hung forever (reproduced 4 of 4 times under load).
  The sender's loop is not the server's, keeps running until the process ends (daemon
  thread), and the wait is bounded, so a shutdown never waits on a broadcast.
* Without a running loop (the test client, WSGI servers) `async_to_sync` started a thread,
  an event loop and a new Redis connection for every request; the sender reuses one loop and
  its channel-layer connection pool.

The in-memory layer (no REDIS_URL: development and tests) is not thread-safe: its queues wake
receivers on the caller's loop. It keeps `async_to_sync` on the caller's loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# The dashboard consumer's handler is `ackly_message`: it sends `payload` as JSON text.
MESSAGE_TYPE = "ackly.message"

# How long an ingest request waits for its broadcast; past it the send is cancelled and
# logged (the dashboard catches up over HTTP). Bounds a SIGTERM's wait on a slow Redis too.
SEND_TIMEOUT_SECONDS = 2.0


def workspace_group(workspace_public_id: str) -> str:
    """The group every live session of one workspace joins (ASCII alnum/-/_/. only, < 100)."""
    return f"ws.{workspace_public_id}"


class _Sender:
    """A daemon thread running an event loop that only sends channel-layer messages."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._run, name="ackly-broadcast-sender", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def alive(self) -> bool:
        """False in a forked child (the thread did not survive the fork) or after a crash."""
        return self.pid == os.getpid() and self.thread.is_alive()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float) -> None:
        """Run `coro` on the sender's loop; wait at most `timeout` s, then cancel it and raise."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _get_sender() -> _Sender:
    global _sender
    sender = _sender
    if sender is None or not sender.alive():
        with _sender_lock:
            if _sender is None or not _sender.alive():
                _sender = _Sender()
            sender = _sender
    return sender


def broadcast(workspace_public_id: str, message: dict[str, Any]) -> None:
    """Send one message to the workspace's group now; log a warning if the layer fails."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        group = workspace_group(workspace_public_id)
        event = {"type": MESSAGE_TYPE, "payload": message}
        if isinstance(layer, InMemoryChannelLayer):
            async_to_sync(layer.group_send)(group, event)
        else:
            _get_sender().run(layer.group_send(group, event), SEND_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001 - any layer failure (Redis down, full channel) is non-fatal
        logger.warning(
            "Broadcast to workspace %s failed; live sessions will catch up over HTTP",
            workspace_public_id,
            exc_info=True,
        )


def broadcast_on_commit(workspace_public_id: str, message: dict[str, Any]) -> None:
    """Queue `broadcast` for after the current transaction commits (never on rollback)."""
    transaction.on_commit(lambda: broadcast(workspace_public_id, message))
