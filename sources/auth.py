"""The one authentication class both ingest APIs use: `Authorization: Bearer ak_live_…`."""

from __future__ import annotations

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from ackly.errors import InvalidKey, KeyExpired, KeyRevoked, MissingAuthorization
from sources.keys import KeyContext, digest_of, is_well_formed, lookup_key


def authenticate_key(header: str | None) -> KeyContext:
    """The key context for an Authorization header, or the documented 401 error.

    A header that is not `Bearer <key>`, or a key that is malformed, is refused before any
    database or cache access.
    """
    if not header:
        raise MissingAuthorization("The Authorization header is missing; send 'Bearer <key>'.")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise MissingAuthorization("The Authorization header must be 'Bearer <key>'.")
    if not is_well_formed(secret):
        raise InvalidKey("The key is malformed: expected 'ak_live_' and 40 letters or digits.")
    context = lookup_key(digest_of(secret))
    if context is None:
        raise InvalidKey("The key does not exist.")
    if context.revoked_at is not None:
        raise KeyRevoked("The key was revoked.")
    if context.expires_at is not None and context.expires_at <= timezone.now():
        raise KeyExpired("The key expired at " + context.expires_at.isoformat() + ".")
    return context


class BearerKeyAuthentication(BaseAuthentication):
    """Attaches the KeyContext as `request.auth`; there is no user on API requests."""

    def authenticate(self, request: Request) -> tuple[None, KeyContext]:
        return None, authenticate_key(request.META.get("HTTP_AUTHORIZATION"))

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ackly"'
