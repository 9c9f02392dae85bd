"""Dashboard sessions end when idle, and at the latest a fixed time after sign-in.

Idle: `SESSION_COOKIE_AGE` is `SESSION_IDLE_TIMEOUT_SECONDS`, and a signed-in request renews
the session's expiry (the database row's and the cookie's). Django's way,
`SESSION_SAVE_EVERY_REQUEST`, would write the session row on every page and feed request;
here a request writes it only when the last renewal is a minute old or more, so the timeout
is exact to a minute and a busy page costs at most one write a minute. An expired session is
not loaded at all (the session backend filters on its expiry): the visitor is anonymous and
signs in again, and a websocket handshake with it is refused 4401.

Absolute: `SESSION_MAX_AGE_SECONDS` after sign-in the session is ended (logged out) however
active it is, so a stolen cookie kept alive by use does not last forever. The sign-in time is
written at login (`user_logged_in`); a session made without it (seeded by a script) starts
its clock at its first request.

Dashboard websockets follow the same two rules: the handshake and each socket's periodic
recheck (workspaces/consumers.py) refuse a session that expired or is past its maximum age
(`past_max_age`, the one rule both use), so an open socket ends with its session.

API paths run the lean middleware chain without sessions (ackly/handlers.py): none of this
costs the ingest path anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

SIGNED_IN_AT = "ackly_signed_in_at"
RENEWED_AT = "ackly_renewed_at"
RENEW_EVERY_SECONDS = 60


@receiver(user_logged_in, dispatch_uid="ackly.sessions.stamp_sign_in")
def stamp_sign_in(sender, request: HttpRequest, user, **kwargs) -> None:
    """Start both clocks at sign-in (the session is saved anyway then)."""
    now = int(time.time())
    request.session[SIGNED_IN_AT] = now
    request.session[RENEWED_AT] = now


def past_max_age(session_data, now: int | None = None) -> bool:
    """Whether a session (its data, as a mapping) is older than SESSION_MAX_AGE_SECONDS.

    A session without the sign-in stamp has not had its first request yet: not past it.
    """
    signed_in_at = session_data.get(SIGNED_IN_AT)
    if signed_in_at is None:
        return False
    return (now if now is not None else int(time.time())) - signed_in_at >= (
        settings.SESSION_MAX_AGE_SECONDS
    )


class SessionTimeoutMiddleware:
    """Ends sessions past SESSION_MAX_AGE_SECONDS; renews the idle expiry at most once a minute.

    Goes after AuthenticationMiddleware (it reads request.user).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            self._check(request)
        return self.get_response(request)

    @staticmethod
    def _check(request: HttpRequest) -> None:
        session = request.session
        now = int(time.time())
        if session.get(SIGNED_IN_AT) is None:
            session[SIGNED_IN_AT] = now
        if past_max_age(session, now):
            logout(request)  # flushes the session; the request goes on as an anonymous one
            return
        if now - session.get(RENEWED_AT, 0) >= RENEW_EVERY_SECONDS:
            session[RENEWED_AT] = now  # modified: saved with a fresh SESSION_COOKIE_AGE expiry
