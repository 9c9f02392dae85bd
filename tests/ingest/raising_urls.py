"""The real URL layout plus plain Django views under /api/: one that fails (the 500 tests),
one that says which middleware ran (tests/test_api_handlers.py)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from ackly.urls import handler404, handler500  # noqa: F401
from ackly.urls import urlpatterns as real_urlpatterns


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret internal detail")


def middleware_seen(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"session": hasattr(request, "session"), "user": hasattr(request, "user")})


urlpatterns = [
    path("api/boom", boom),
    path("api/middleware-seen", middleware_seen),
    path("middleware-seen", middleware_seen),
    *real_urlpatterns,
]
