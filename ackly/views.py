"""Django-level error handlers: JSON envelope on API paths, plain pages elsewhere."""

import sys

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from ackly.errors import (
    ERROR_CODES,
    error_response,
    is_api_path,
    log_database_unavailable,
    mark_logged,
)


# API paths use bearer keys, never cookies: like the DRF views, the catch-all needs no CSRF
# token, so a POST to an unknown path gets the 404 envelope, not Django's HTML 403.
@csrf_exempt
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    return error_response(request, "not_found", f"No API endpoint at {request.path}.", 404)


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links: the SVG icon in static files."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request.path):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    # Called while Django handles the exception (a dashboard page's first query is in the
    # session middleware, before any view): an outage is one line, not Django's traceback.
    exc = sys.exc_info()[1]
    if exc is not None and log_database_unavailable(request, exc):
        mark_logged(request)
    if is_api_path(request.path):
        return error_response(
            request, "internal_error", ERROR_CODES["internal_error"].description, 500
        )
    return defaults.server_error(request)
