"""Live updates to a workspace's dashboard sessions through the channel layer (SPEC §6).

`broadcast` never raises: the channel layer (Redis) being down must not fail an ingest that
has already committed. Callers queue it with `transaction.on_commit`, so nothing is sent for
a rolled-back transaction and a dashboard never shows an event that was not stored.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# The dashboard consumer's handler is `ackly_message`: it sends `payload` as JSON text.
MESSAGE_TYPE = "ackly.message"


def workspace_group(workspace_public_id: str) -> str:
    """The group every live session of one workspace joins (ASCII alnum/-/_/. only, < 100)."""
    return f"ws.{workspace_public_id}"


def broadcast(workspace_public_id: str, message: dict[str, Any]) -> None:
    """Send one message to the workspace's group now; log a warning if the layer fails."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(
            workspace_group(workspace_public_id), {"type": MESSAGE_TYPE, "payload": message}
        )
    except Exception:  # noqa: BLE001 - any layer failure (Redis down, full channel) is non-fatal
        logger.warning(
            "Broadcast to workspace %s failed; live sessions will catch up over HTTP",
            workspace_public_id,
            exc_info=True,
        )


def broadcast_on_commit(workspace_public_id: str, message: dict[str, Any]) -> None:
    """Queue `broadcast` for after the current transaction commits (never on rollback)."""
    transaction.on_commit(lambda: broadcast(workspace_public_id, message))
