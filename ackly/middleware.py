"""API paths answer the error envelope for an exception in any view, with DEBUG on or off."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from ackly.errors import is_api_path, response_for_exception


class ApiExceptionMiddleware:
    """Django shows its HTML debug page (DEBUG) or calls handler500; an API client gets JSON.

    DRF views already answer through `api_exception_handler`; this covers plain Django views
    under /api/ so no API path ever shows HTML or a stack trace. The trace goes to the log.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        return response_for_exception(request, exception)
