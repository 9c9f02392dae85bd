"""The real URL layout plus a plain Django view under /api/ that fails (for the 500 tests)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from ackly.urls import handler404, handler500  # noqa: F401
from ackly.urls import urlpatterns as real_urlpatterns


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret internal detail")


urlpatterns = [path("api/boom", boom), *real_urlpatterns]
