"""Which pages may open a dashboard websocket: the site's own origin, exactly.

A websocket is not covered by the same-origin policy: any page may open one to any host, and
the browser sends the member's session cookie along. The `Origin` header is the only sign of
which page asked, so it must name this site exactly: scheme, host and port. Channels'
`AllowedHostsOriginValidator` compares the host only, which lets a page on another port of
the same host, or on plain http of an https site, read a member's live feed.

The rule is Django's CSRF origin check (`CsrfViewMiddleware._origin_verified`) applied to
the handshake: the Origin must equal the origin of this very request (`scheme://Host`, the
scheme implied by ws/wss or, where `SECURE_PROXY_SSL_HEADER` trusts a proxy, its
X-Forwarded-Proto), or be listed in `CSRF_TRUSTED_ORIGINS`. The Host must be in
`ALLOWED_HOSTS`, as for any Django request: otherwise a rebound DNS name (a page at
http://evil.example whose name now points at this server) would be its own origin.
Matching (default ports, case) is channels' `OriginValidator`, given the exact origins.
"""

from __future__ import annotations

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _allowed_hosts() -> list[str]:
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:  # as HttpRequest.get_host
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return allowed


def _scheme(scope) -> str:
    """http or https, as HttpRequest.scheme would say for this handshake."""
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name, secure_value = proxy
        value = _header(scope, name.removeprefix("HTTP_").lower().replace("_", "-").encode())
        if value is not None:
            return "https" if value.split(",", 1)[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") == "wss" else "http"


def own_origin(scope) -> str | None:
    """`scheme://host[:port]` of this handshake, or None when its Host is not allowed."""
    host = _header(scope, b"x-forwarded-host" if settings.USE_X_FORWARDED_HOST else b"host")
    if not host:
        return None
    host = host.split(",")[-1].strip() if settings.USE_X_FORWARDED_HOST else host.strip()
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    return f"{_scheme(scope)}://{host.lower()}"


def trusted_origins() -> list[str]:
    """CSRF_TRUSTED_ORIGINS in channels' pattern form (`https://*.x` is `https://.x` there).

    Entries without a scheme are left out: channels would match them on any scheme and port
    (Django's system check 4_0.E001 refuses them as well).
    """
    return [
        origin.replace("://*.", "://.", 1)
        for origin in settings.CSRF_TRUSTED_ORIGINS
        if "://" in origin
    ]


class SameOriginValidator:
    """ASGI middleware: refuses a websocket handshake whose Origin is not the site's own.

    A refused handshake is closed before it is accepted (HTTP 403 from the server), as
    channels' OriginValidator does; a missing Origin is refused too.
    """

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        own = own_origin(scope)
        allowed = [own, *trusted_origins()] if own is not None else []
        return await OriginValidator(self.application, allowed)(scope, receive, send)
