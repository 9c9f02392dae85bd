"""ASGI entry point: HTTP through Django, websockets through Channels (docs/architecture.md, Realtime)."""

import os
import sys

from django.core.asgi import get_asgi_application

from ackly.startup import require_collected_static

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ackly.settings")
# DEBUG=0 without collectstatic exits with the reason instead of answering 500 on every page;
# before the middleware is built, or WhiteNoise's would first warn of a missing STATIC_ROOT.
require_collected_static()
# Django must be set up before anything imports models (the routing below does).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from ackly.errors import is_api_path  # noqa: E402
from ackly.handlers import ApiASGIHandler  # noqa: E402
from ackly.memory import freeze_loaded_objects  # noqa: E402
from ackly.origins import SameOriginValidator  # noqa: E402
from ackly.routing import websocket_urlpatterns  # noqa: E402
from ackly.shutdown import install as install_exit_guard  # noqa: E402
from ackly.sockets import socket_auth  # noqa: E402
from ingest.fastlane import FastLane  # noqa: E402

# A SIGTERM must end the process even when request threads wait on the stopped loop. Not in a
# test run that imports this module: a slow pytest exit must never turn into exit status 1.
if "pytest" not in sys.modules:
    install_exit_guard()


class BodyLimitGuard:
    """Hands Django at most limit + 1 bytes of an API request body, however it is streamed.

    Django's ASGI handler would spool a chunked body of any size to disk before the view
    runs; capped here, the ingest pipeline sees limit + 1 bytes and answers 413 in the
    envelope (after auth, so the refusal is counted against its source). The rest of the
    body is discarded as it arrives.

    A Content-Length over the limit is not waited for at all: the app is handed an empty body
    at once, and the pipeline's `read_body` refuses the declared length (the same 413, from
    the same code, before a byte of the body has arrived). The fast lane hands such a request
    over, as it does any body that does not parse.
    """

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.cap = limit + 1

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api"):
            return await self.app(scope, receive, send)
        received = 0
        capped = False
        declared_too_large = _declared_length(scope) >= self.cap

        async def capped_receive():
            nonlocal received, capped, declared_too_large
            if declared_too_large:
                declared_too_large = False
                capped = True  # what the client sends anyway is discarded below
                return {"type": "http.request", "body": b"", "more_body": False}
            while capped:
                message = await receive()
                if message["type"] != "http.request":  # the disconnect Django listens for
                    return message
            message = await receive()
            if message["type"] != "http.request":
                return message
            body = message.get("body", b"")
            if received + len(body) < self.cap:
                received += len(body)
                return message
            capped = message.get("more_body", False)
            return {"type": "http.request", "body": body[: self.cap - received], "more_body": False}

        return await self.app(scope, capped_receive, send)


def _declared_length(scope) -> int:
    """The request's Content-Length, or -1 without one (chunked) or with one not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return -1


class ApiRouter:
    """API paths to the lean API handler (ackly/handlers.py), the rest to Django's own."""

    def __init__(self, api, default) -> None:
        self.api = api
        self.default = default

    async def __call__(self, scope, receive, send):
        app = self.api if is_api_path(scope["path"]) else self.default
        return await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        # The common case of POST /api/ingest and POST /api/v1/ingest/events is served by the
        # fast lane (ingest/fastlane.py) on the event loop; the rest reaches Django unchanged.
        "http": BodyLimitGuard(
            FastLane(ApiRouter(ApiASGIHandler(), django_asgi_app)),
            settings.INGEST_MAX_BODY_BYTES,
        ),
        # The handshake's Origin must be this site's exact origin (ackly/origins.py); the
        # session and user are resolved once, at the handshake (ackly/sockets.py).
        "websocket": SameOriginValidator(socket_auth(URLRouter(websocket_urlpatterns))),
    }
)

freeze_loaded_objects()
