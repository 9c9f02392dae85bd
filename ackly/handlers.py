"""The API paths' own Django handlers: the same project, with `settings.API_MIDDLEWARE`.

An ingest request went through every dashboard middleware (sessions, CSRF, authentication,
messages, WhiteNoise, common) and used none of them: bearer keys, csrf_exempt views, no
static files under /api. Profiled, that chain was ~0.4 ms of a single event's ~2 ms of CPU.
`ackly.wsgi` and `ackly.asgi` send API paths (`ackly.errors.is_api_path`) here and every
other path to Django's own handler with the full `settings.MIDDLEWARE`. Under ASGI the lean
chain is also sync from top to bottom, so a request crosses from the event loop to a thread
once instead of at every sync/async boundary of the full chain.

The test client always uses the full chain; the servers in tests/ use these.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIHandler

from ackly.compat import load_middleware_from


class _ApiMiddleware(BaseHandler):
    """Builds the handler's middleware chain from settings.API_MIDDLEWARE (a mixin: its
    `super()` is the handler class it precedes)."""

    def load_middleware(self, is_async: bool = False) -> None:
        load_middleware_from(self, settings.API_MIDDLEWARE, super().load_middleware, is_async)


class ApiWSGIHandler(_ApiMiddleware, WSGIHandler):
    pass


class ApiASGIHandler(_ApiMiddleware, ASGIHandler):
    pass
