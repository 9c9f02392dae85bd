"""Documentation pages: the quick start and one section per error code (the docsUrl targets)."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from ackly.errors import ERROR_CODES


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "docs/index.html", {"error_codes": ERROR_CODES.values()})


def error_code(request: HttpRequest, code: str) -> HttpResponse:
    spec = ERROR_CODES.get(code)
    if spec is None:
        raise Http404("No such error code")
    return render(request, "docs/error_code.html", {"error": spec})
