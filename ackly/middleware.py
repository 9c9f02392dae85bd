"""API paths answer the error envelope for an exception in any view, with DEBUG on or off."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

from ackly.errors import is_api_path, response_for_exception


class ApiExceptionMiddleware:
    """Django shows its HTML debug page (DEBUG) or calls handler500; an API client gets JSON.

    DRF views already answer through `api_exception_handler`; this covers plain Django views
    under /api/ so no API path ever shows HTML or a stack trace. The trace goes to the log,
    except for a database outage (`ackly.errors.database_unavailable`): one line per request.

    A Host that is not allowed is refused here too, before CommonMiddleware would answer
    Django's HTML 400.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request.path):
            # CommonMiddleware (below) would raise DisallowedHost and Django answer its HTML
            # 400 page: checked here first, so the refusal is the envelope too.
            try:
                request.get_host()
            except DisallowedHost as exc:
                return response_for_exception(request, exc)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        return response_for_exception(request, exception)
