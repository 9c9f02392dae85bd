"""Content-Security-Policy for every page Django renders (Django 5.2 has none built in).

The dashboard's pages load their scripts and styles from /static/ and carry no inline script,
style element, style attribute or event-handler attribute (tests/reliability/test_csp.py
checks the templates), so the policy allows only the site itself. The live pages' websocket
is named with its exact origin in `connect-src` (`ws://host` or `wss://host`): CSP Level 3
lets 'self' match it, browsers that implement only Level 2 do not.

One page needs more: the interactive API reference at /docs/api/ (drf-spectacular's Swagger
UI template, served by its split view so that Swagger UI's start-up script is a file of its
own) styles itself with an inline style element and Swagger UI sets style attributes, so that
page alone gets 'unsafe-inline' for styles. No page allows inline script.

API paths run the lean middleware chain (ackly/handlers.py) and answer JSON: no policy there.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"

_BASE = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}

# Pages (by URL name) that cannot do without inline code, and what they get on top.
RELAXED: dict[str, dict[str, str]] = {
    "docs-api": {"style-src": "'self' 'unsafe-inline'"},
}


def policy_for(request: HttpRequest) -> str:
    """The policy of this page: the base one, the websocket origin, any page's relaxation."""
    directives = dict(_BASE)
    try:
        host = request.get_host()
    except DisallowedHost:  # the 400 for a Host not in ALLOWED_HOSTS: no socket to allow
        host = None
    if host:
        directives["connect-src"] = f"'self' {'wss' if request.is_secure() else 'ws'}://{host}"
    match = getattr(request, "resolver_match", None)
    if match is not None:
        directives.update(RELAXED.get(match.url_name or "", {}))
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class ContentSecurityPolicyMiddleware:
    """Sets Content-Security-Policy on every response that has none yet."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER not in response:
            response[HEADER] = policy_for(request)
        return response
