"""The real URL layout plus dashboard pages that fail: 500 and 403 (tests/test_error_pages.py)."""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import path

from ackly.urls import handler404, handler500  # noqa: F401
from ackly.urls import urlpatterns as real_urlpatterns


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret internal detail")


def forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("secret reason")


urlpatterns = [
    path("boom/", boom),
    path("forbidden/", forbidden),
    path("api/boom", boom),
    *real_urlpatterns,
]
