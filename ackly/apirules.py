"""Django's own rules for an API request answered outside Django's handler (the fast lane).

The ingest fast lane (ingest.fastlane) answers its common case on the event loop. So that its
answers are the ones the API handler's middleware would give, it re-derives nothing from
settings: it makes Django's own request object from the ASGI scope (ASGIRequest) and asks
Django's code, through `ApiRules.for_scope`:

* whether Django would serve the request at all: the Host check (`HttpRequest.get_host`,
  ALLOWED_HOSTS) and the request side of every middleware of settings.API_MIDDLEWARE that
  has one (SecurityMiddleware's HTTPS redirect, CommonMiddleware's checks). A request any of
  them would answer, or that raises, is handed to Django, which answers it as always;
* the headers the response side of those middleware adds to an API answer of that request
  (X-Frame-Options, X-Content-Type-Options, Referrer-Policy, Cross-Origin-Opener-Policy,
  HSTS on a secure request, ...), read off a response they have processed.

A middleware added to API_MIDDLEWARE later is asked too. One written as a plain callable
(ackly's request id, metrics, health and exception middleware) has no separate hooks to ask:
the fast lane does their part itself with their own functions (the request id's rule and
header, `ackly.requestid.request_id_of`; the 500, `ackly.errors.error_response`), and
tests/test_apirules.py proves its answers carry exactly the headers the full handler's do.
`request_headers` reads a scope's headers by Django's rule for repeated ones.

What Django decides depends on the request's headers, not on its body or its key: it is
remembered per distinct set of the other headers (and scheme and server), so a client that
keeps sending alike pays for it once.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from ackly.requestid import REQUEST_ID_HEADER

# Headers that differ from request to request of one client and that Django's host, scheme
# and middleware rules do not read: left out of what a verdict is remembered by.
# (A client's X-Request-Id is read by nothing: ackly.requestid.request_id_of.)
PER_REQUEST_HEADERS = frozenset({
    b"authorization", b"idempotency-key", b"content-length", REQUEST_ID_HEADER.lower().encode(),
    b"x-forwarded-for", b"traceparent", b"tracestate",
})
# Set per answer by the caller (its body, its id), not by these middleware.
_OWN_HEADERS = frozenset({"content-type", "content-length", REQUEST_ID_HEADER.lower()})
MAX_REMEMBERED = 1024


class _Unreachable(Exception):
    pass


def _no_view(request: HttpRequest) -> HttpResponse:
    raise _Unreachable("only the middleware's hooks are called")


Headers = list[tuple[bytes, bytes]]


class ApiRules:
    """The hooks of settings.API_MIDDLEWARE, asked for requests the fast lane would serve."""

    def __init__(self, middleware_paths: list[str] | None = None) -> None:
        paths = settings.API_MIDDLEWARE if middleware_paths is None else middleware_paths
        # Only those with hooks are made (a plain callable's __init__ is never run twice).
        classes = [import_string(path) for path in paths]
        instances = [
            cls(_no_view) for cls in classes
            if hasattr(cls, "process_request") or hasattr(cls, "process_response")
        ]
        self.request_hooks: list[Callable[[HttpRequest], Any]] = [
            m.process_request for m in instances if hasattr(m, "process_request")
        ]
        # The response side runs in reverse order of the list, as in the handler's chain.
        self.response_hooks: list[Callable[[HttpRequest, HttpResponse], HttpResponse]] = [
            m.process_response for m in reversed(instances) if hasattr(m, "process_response")
        ]
        self.remembered: dict[tuple[Any, ...], Headers | None] = {}

    def for_scope(self, scope: dict[str, Any]) -> Headers | None:
        """The headers Django's middleware adds to an API answer of this request, or None when
        Django would not serve it as it is (a Host not allowed, a redirect to HTTPS, ...)."""
        server = scope.get("server")  # servers send lists or tuples: made hashable
        shape = (
            scope.get("scheme"), None if server is None else tuple(server),
            scope.get("root_path", ""),
            tuple([(n, v) for n, v in scope["headers"] if n not in PER_REQUEST_HEADERS]),
        )
        try:
            return self.remembered[shape]
        except KeyError:
            pass
        verdict = self.judge(request_of(scope))
        if len(self.remembered) >= MAX_REMEMBERED:
            self.remembered.clear()
        self.remembered[shape] = verdict
        return verdict

    def judge(self, request: HttpRequest) -> Headers | None:
        """`for_scope` for a request object, never remembered."""
        try:
            request.get_host()
            for hook in self.request_hooks:
                if hook(request) is not None:
                    return None
        except Exception:  # noqa: BLE001 - DisallowedHost, PermissionDenied…: Django answers
            return None
        return [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.finish(request, HttpResponse(status=201)).items()
            if name.lower() not in _OWN_HEADERS
        ]

    def finish(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """`response` through the response side of the middleware, as the handler sends it."""
        for hook in self.response_hooks:
            response = hook(request, response)
        return response


def request_headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    """The request's headers by name, a repeated header's values joined by commas in order:
    Django's rule (ASGIRequest builds META so), for code that reads headers off the scope
    without making Django's request (the fast lane). So `Authorization` sent twice is refused
    by both executors alike, and two Idempotency-Key headers name the same key in both;
    tests/test_apirules.py holds it to Django's META."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        seen = headers.get(name)
        headers[name] = value if seen is None else seen + b"," + value
    return headers


def request_of(scope: dict[str, Any], body: bytes = b"") -> ASGIRequest:
    """Django's request object for an ASGI scope (what its ASGI handler makes)."""
    return ASGIRequest(scope, io.BytesIO(body))


def asgi_headers(response: HttpResponse) -> Headers:
    """A response's headers as Django's ASGI handler sends them (no cookies on API answers)."""
    return [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
    ]
