"""Request ids: every response carries X-Request-Id, and every log line carries the same id."""

import contextvars
import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from ackly.ids import new_request_id

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def get_request_id(request: HttpRequest) -> str:
    """The request's id, made on first use (error handlers may run before the middleware)."""
    request_id = getattr(request, "request_id", None)
    if request_id is None:
        request_id = new_request_id()
        request.request_id = request_id
        current_request_id.set(request_id)
    return request_id


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = get_request_id(request)
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        # The view may re-point the id (an idempotent replay answers with the first request's).
        response["X-Request-Id"] = getattr(request, "request_id", request_id)
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True
