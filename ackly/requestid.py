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


def get_request_id(request: HttpRequest) -> str:
    """The request's id, made on first use (error handlers may run before the middleware)."""
    request_id: str | None = getattr(request, "request_id", None)
    if request_id is None:
        request_id = new_request_id()
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
        request_id = get_request_id(request)
        current_request_id.set(request_id)
        current_tenant.set(("-", "-"))
        response = self.get_response(request)
        # The view may re-point the id (an idempotent replay answers with the first request's).
        response["X-Request-Id"] = getattr(request, "request_id", request_id)
        return response


class RequestIdLogFilter(logging.Filter):
    """Adds request_id, workspace_id and source_id to every record (ids, never a key)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        record.workspace_id, record.source_id = current_tenant.get()
        return True
