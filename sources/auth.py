"""The one authentication class both ingest APIs use: `Authorization: Bearer ak_live_…`.

Key guessing is limited per client address (`AUTH_FAILURE_LIMIT`, e.g. 20 per minute): a
well-formed key that does not exist costs an indexed query, so failures are counted in the
shared cache, and an address past the limit is answered 429 `rate_limited` with Retry-After
*before* the query. The counter is read only when the key is not in the shared key cache (a
valid key in use is a cache hit and pays nothing) and written only when a key is not found.
So a valid key keeps working from a blocked address while it is cached; one that has to be
looked up is refused like a guess until the window ends. Malformed keys cost no query and
are not counted; revoked and expired keys exist and are not guesses.
"""

from __future__ import annotations

import ipaddress
import math
import time

from django.conf import settings
from django.core.cache import caches
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from ackly.clientip import client_ip
from ackly.errors import (
    APIError,
    InvalidKey,
    KeyExpired,
    KeyRevoked,
    MissingAuthorization,
    RateLimited,
    WrongKeyScope,
)
from ackly.requestid import bind_tenant
from ingest.ratelimits import incr_windows, window_timeout
from sources.keys import KeyContext, cached_key, digest_of, load_key, scope_of

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def failure_limit() -> tuple[int, int]:
    """AUTH_FAILURE_LIMIT ("20/m") as (failures, window seconds)."""
    count, _, unit = settings.AUTH_FAILURE_LIMIT.partition("/")
    return int(count), _UNIT_SECONDS[unit]


def failure_counter(address: str, now: float) -> tuple[str, int]:
    """The name of the address's counter in the 'default' cache for the window of `now`, and
    the seconds left in that window (for a caller that reads the counter its own way)."""
    _, window = failure_limit()
    start = int(now // window) * window
    return f"authfail:{_counted_as(address)}:{start}", max(1, math.ceil(start + window - now))


def _counted_as(address: str) -> str:
    """An IPv6 client counts per /64, the block one host is normally given (not 2**64 counters)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False).network_address)
    return address


def past_failure_limit(failures: int | None) -> bool:
    """Whether an address with `failures` unknown keys this window is refused (429)."""
    return (failures or 0) >= failure_limit()[0]


def refuse_if_guessing(address: str) -> None:
    """429 rate_limited when `address` has had AUTH_FAILURE_LIMIT unknown keys this window."""
    name, retry_after = failure_counter(address, time.time())
    if past_failure_limit(caches["default"].get(name)):
        limit, window = failure_limit()
        raise RateLimited(
            f"More than {limit} requests with unknown keys from this address in {window}s; "
            "retry after Retry-After seconds with a valid key.",
            headers={"Retry-After": str(retry_after)},
        )


def count_failure(address: str) -> None:
    """Count one unknown key against `address` (one cache round trip, on the failure path)."""
    name, _ = failure_counter(address, time.time())
    incr_windows([name], window_timeout(failure_limit()[1]))


def authenticate_key(
    header: str | None, address: str | None = None, scope: str = "ingest"
) -> KeyContext:
    """The key context for an Authorization header, or the documented 401/403 error.

    A header that is not `Bearer <key>`, a key that is malformed, or one whose prefix names
    another scope than the endpoint's (403 wrong_key_scope) is refused before any database or
    cache access (`bearer_secret`). With the client's `address`, unknown keys are counted and an
    address past AUTH_FAILURE_LIMIT is refused with 429 before the database is asked. A known
    key is then checked by `key_refusal`.
    """
    digest = digest_of(bearer_secret(header, scope))
    context = cached_key(digest)
    if context is None:
        if address is not None:
            refuse_if_guessing(address)
        context = load_key(digest)
    if context is None:
        if address is not None:
            count_failure(address)
        raise InvalidKey("The key does not exist.")
    bind_tenant(context.workspace_public_id, context.source_public_id)  # for the log lines
    refusal = key_refusal(context, scope)
    if refusal is not None:
        raise refusal
    return context


def bearer_secret(header: str | None, scope: str = "ingest") -> str:
    """The key an Authorization header sends, checked without any look-up (both ingest
    executors ask this), or the documented error."""
    if not header:
        raise MissingAuthorization("The Authorization header is missing; send 'Bearer <key>'.")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise MissingAuthorization("The Authorization header must be 'Bearer <key>'.")
    prefixed = scope_of(secret)
    if prefixed is None:
        raise InvalidKey(
            "The key is malformed: expected 'ak_live_' (or 'ak_read_') and 40 letters or digits."
        )
    if prefixed != scope:
        raise _wrong_scope(scope)
    return secret


def key_refusal(context: KeyContext, scope: str = "ingest") -> APIError | None:
    """Why a known key may not be used at an endpoint of `scope` now (403 wrong_key_scope,
    401 key_revoked / key_expired), or None. Both ingest executors ask this."""
    if context.scope != scope:  # the row's scope decides, should a prefix ever disagree
        return _wrong_scope(scope)
    if context.revoked_at is not None:
        return KeyRevoked("The key was revoked.")
    if context.expires_at is not None and context.expires_at <= timezone.now():
        return KeyExpired("The key expired at " + context.expires_at.isoformat() + ".")
    return None


def _wrong_scope(wanted: str) -> APIError:
    if wanted == "read":
        return WrongKeyScope("This endpoint reads events: use a read key ('ak_read_…').")
    return WrongKeyScope("A read key cannot send events: use an ingest key ('ak_live_…').")


class BearerKeyAuthentication(BaseAuthentication):
    """Attaches the KeyContext as `request.auth`; there is no user on API requests."""

    def authenticate(self, request: Request) -> tuple[None, KeyContext]:
        return None, authenticate_key(request.META.get("HTTP_AUTHORIZATION"), client_ip(request))

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ackly"'
