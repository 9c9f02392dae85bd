"""Request ids: every response carries X-Request-Id, and every log line carries the same id."""

import contextvars
import logging
from collections.abc import Callable
from typing import cast

from django.http import HttpRequest, HttpResponse

from ackly.ids import new_request_id

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# The public ids of the workspace and source whose key authenticated the request, for logs.
current_tenant: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar(
    "tenant", default=("-", "-")
)


def bind_tenant(workspace_id: str, source_id: str) -> None:
    """Every later log line of this request (or task) names this workspace and source."""
    current_tenant.set((workspace_id, source_id))


class _IdentifiedRequest(HttpRequest):
    """A request once it has an id (an attribute of ours: Django's HttpRequest has none)."""

    request_id: str


# The response header that names the request's id, on every API answer of both executors.
REQUEST_ID_HEADER = "X-Request-Id"


def request_id_of(given: str | None) -> str:
    """The rule for a request's id, in both executors: the id it was given already (a v1
    batch's, named in its body; an idempotent replay's, the first request's), else a new one,
    `req_` + a ULID (ackly.ids). An X-Request-Id sent by the client is never taken: the id
    names the server's own log lines and stored rows, so the server alone makes it."""
    return new_request_id() if given is None else given


def get_request_id(request: HttpRequest) -> str:
    """The request's id, made on first use (error handlers may run before the middleware)."""
    given: str | None = getattr(request, "request_id", None)
    request_id = request_id_of(given)
    if given is None:
        set_request_id(request, request_id)
    return request_id


def set_request_id(request: HttpRequest, request_id: str) -> None:
    """The request's id from now on: its X-Request-Id and its later log lines name it."""
    cast(_IdentifiedRequest, request).request_id = request_id
    current_request_id.set(request_id)


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Set, not reset afterwards: Django logs a 4xx/5xx (django.request) after the middleware
        # chain has returned, and that line must carry the ids too. Each request sets its own
        # (under ASGI each request also runs in a context of its own).
        current_request_id.set(get_request_id(request))
        current_tenant.set(("-", "-"))
        response = self.get_response(request)
        # Read again: the view may re-point the id (an idempotent replay answers with the
        # first request's).
        response[REQUEST_ID_HEADER] = get_request_id(request)
        return response


class RequestIdLogFilter(logging.Filter):
    """Adds request_id, workspace_id and source_id to every record (ids, never a key)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        record.workspace_id, record.source_id = current_tenant.get()
        return True
