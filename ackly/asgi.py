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

from ackly.errors import InvalidBody, is_api_path  # noqa: E402
from ackly.handlers import ApiASGIHandler  # noqa: E402
from ackly.memory import freeze_loaded_objects  # noqa: E402
from ackly.origins import SameOriginValidator  # noqa: E402
from ackly.routing import websocket_urlpatterns  # noqa: E402
from ackly.shutdown import install as install_exit_guard  # noqa: E402
from ackly.sockets import socket_auth  # noqa: E402
from ingest.fastlane import FastLane  # noqa: E402
from ingest.jsonbody import declared_length, over_limit  # noqa: E402

# A SIGTERM must end the process even when request threads wait on the stopped loop. Not in a
# test run that imports this module: a slow pytest exit must never turn into exit status 1.
if "pytest" not in sys.modules:
    install_exit_guard()


class BodyLimitGuard:
    """Hands Django at most `limit` + 1 bytes of an API request body, however it is streamed.

    `limit` is the documented body limit (settings.INGEST_MAX_BODY_BYTES), and what is over it
    is decided by the ingest pipeline's one rule (ingest.jsonbody): a body of exactly `limit`
    bytes passes whole; of a longer one Django is handed the first `limit` + 1 bytes, enough for
    the pipeline to see it is over, and the rest is discarded as it arrives. Django's ASGI
    handler would otherwise spool a chunked body of any size to disk before the view runs. The
    pipeline answers 413 in the envelope (after auth, so the refusal is counted against its
    source).

    A declared Content-Length over the limit is not waited for at all: the app is handed an
    empty body at once, and the pipeline's `read_body` refuses the declared length (the same
    413, from the same code, before a byte of the body has arrived). Nor is a Content-Length
    that declares no one length (values that differ, or one not a number: RFC 9112 §6.3): the
    body's end is unknown, so the app is handed an empty body, the pipeline answers 400
    `invalid_body`, and the answer closes the connection. The fast lane hands such requests
    over, as it does any body that does not parse.
    """

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api"):
            return await self.app(scope, receive, send)
        cap = self.limit + 1  # one byte over the limit shows that a body is over it
        received = 0
        capped = False
        # A repeated header's values joined by commas, as Django's request (and request_headers)
        # joins them, without building every header's entry on each request.
        declared = b",".join(v for name, v in scope["headers"] if name == b"content-length")
        framing_unknown = False
        try:
            not_waited_for = bool(declared) and over_limit(
                declared_length(declared.decode("latin-1")), self.limit
            )
        except InvalidBody:
            not_waited_for = framing_unknown = True

        async def capped_receive():
            nonlocal received, capped, not_waited_for
            if not_waited_for:
                not_waited_for = False
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
            if received + len(body) < cap:
                received += len(body)
                return message
            capped = message.get("more_body", False)
            return {"type": "http.request", "body": body[: cap - received], "more_body": False}

        async def closing_send(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"connection", b"close")]}
            await send(message)

        return await self.app(scope, capped_receive, closing_send if framing_unknown else send)


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
