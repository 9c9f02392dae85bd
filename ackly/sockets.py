"""Whose a dashboard websocket is: its session and user, resolved once, at the handshake.

Channels' `AuthMiddlewareStack` resolves them the same way (its `get_user`, which checks the
session's password hash against the current SECRET_KEY only: see docs/decisions.md before
adding SECRET_KEY_FALLBACKS), but its `SessionMiddleware` also wraps the application's `send`
for the socket's whole life, to save a modified session on `http.response.start`: a message
a websocket never sends. The wrapper looked at the session on every frame to every socket
(about a sixth of a busy Daphne's time with 1,000 sockets), and it hid the server's own
`send` from the consumer (ackly.compat.daphne_websocket). This stack sets the same scope
(`cookies`, `session`, `user`) and hands `send` through as the server gave it. What a socket
may do after the handshake is the consumer's business (workspaces/consumers.py): it checks
the session, user and membership again on every account notice and every RECHECK_SECONDS.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware
from django.conf import settings


class HandshakeSessionMiddleware:
    """Puts the session the handshake's cookie names in scope["session"] (loaded on first use)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if "cookies" not in scope:
            raise ValueError("HandshakeSessionMiddleware must run inside CookieMiddleware")
        store = import_module(settings.SESSION_ENGINE).SessionStore
        session = store(scope["cookies"].get(settings.SESSION_COOKIE_NAME))
        return await self.inner(dict(scope, session=session), receive, send)


def socket_auth(inner: Any) -> CookieMiddleware:
    """Cookies, session and user in the scope, as AuthMiddlewareStack sets them; `send` untouched."""
    return CookieMiddleware(HandshakeSessionMiddleware(AuthMiddleware(inner)))
