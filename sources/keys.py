"""Key secrets and the cached look-up by digest that authentication uses."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import caches
from django.db import transaction

from billing.services import WorkspaceLimits, limits_of

# A key's scope is in its secret's prefix as well as in its row: an ingest key (`ak_live_`)
# only sends events, a read key (`ak_read_`) only reads them, and either is refused at the other
# kind of endpoint before any look-up.
KEY_PREFIXES = {"ingest": "ak_live_", "read": "ak_read_"}
KEY_PREFIX = KEY_PREFIXES["ingest"]
KEY_RANDOM_LENGTH = 40
KEY_VISIBLE_PREFIX_LENGTH = len(KEY_PREFIX) + 4
_BASE62 = string.digits + string.ascii_letters
KEY_PATTERN = re.compile(rf"{KEY_PREFIX}[0-9A-Za-z]{{{KEY_RANDOM_LENGTH}}}")
_ANY_KEY_PATTERN = re.compile(rf"(ak_live_|ak_read_)[0-9A-Za-z]{{{KEY_RANDOM_LENGTH}}}")
_SCOPE_OF_PREFIX = {prefix: scope for scope, prefix in KEY_PREFIXES.items()}


def generate_secret(scope: str = "ingest") -> str:
    """The scope's prefix + 40 base62 characters (~238 bits): 48 characters, found by secret
    scanners."""
    return KEY_PREFIXES[scope] + "".join(secrets.choice(_BASE62) for _ in range(KEY_RANDOM_LENGTH))


def scope_of(secret: str) -> str | None:
    """The scope a well-formed secret's prefix names ("ingest" or "read"); None when malformed."""
    match = _ANY_KEY_PATTERN.fullmatch(secret)
    return _SCOPE_OF_PREFIX[match.group(1)] if match else None


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def visible_prefix(secret: str) -> str:
    return secret[:KEY_VISIBLE_PREFIX_LENGTH]


def is_well_formed(secret: str) -> bool:
    """Whether the secret is shaped like an ingest key (the only kind that may send events)."""
    return KEY_PATTERN.fullmatch(secret) is not None


@dataclass(frozen=True)
class KeyContext:
    """Everything authentication attaches to a request, small enough to cache as one value.

    It carries its workspace's plan limits too, so an ingest request reads ONE cache entry
    before it counts its burst (one Redis round trip fewer than a separate limits entry).
    A change to a plan or workspace drops the entries of every key of the workspaces it
    touches (`billing.services.forget_workspace_limits`).
    """

    key_id: int
    key_public_id: str
    revoked_at: datetime | None
    expires_at: datetime | None
    source_id: int
    source_public_id: str
    source_slug: str
    source_name: str
    allowed_event_types: frozenset[str]
    workspace_id: int
    workspace_public_id: str
    limits: WorkspaceLimits
    # "ingest" or "read"; a default, so a cached entry written before scopes existed still reads.
    scope: str = "ingest"


def _cache_key(digest: str) -> str:
    return f"key:{digest}"


def key_cache_name(digest: str) -> str:
    """The key's entry in the 'auth' cache (the fast lane reads it over Redis, ingest.fastlane)."""
    return _cache_key(digest)


def lookup_key(digest: str) -> KeyContext | None:
    """The key with this digest, from the shared auth cache or one indexed query."""
    context = cached_key(digest)
    return context if context is not None else load_key(digest)


def cached_key(digest: str) -> KeyContext | None:
    """The key with this digest if the shared auth cache holds it (no query)."""
    return caches["auth"].get(_cache_key(digest))


def load_key(digest: str) -> KeyContext | None:
    """The key with this digest from one indexed query, then kept in the shared auth cache."""
    from sources.models import Key

    key = Key.objects.select_related("source__workspace__plan").filter(digest=digest).first()
    if key is None:
        return None
    context = KeyContext(
        key_id=key.pk,
        key_public_id=key.public_id,
        revoked_at=key.revoked_at,
        expires_at=key.expires_at,
        source_id=key.source_id,
        source_public_id=key.source.public_id,
        source_slug=key.source.slug,
        source_name=key.source.name,
        allowed_event_types=frozenset(key.source.allowed_event_types or ()),
        workspace_id=key.source.workspace_id,
        workspace_public_id=key.source.workspace.public_id,
        limits=limits_of(key.source.workspace),
        scope=key.scope,
    )
    caches["auth"].set(_cache_key(digest), context, settings.AUTH_CACHE_SECONDS)
    return context


def forget_keys(*digests: str) -> None:
    """Drop cached look-ups now and again after commit, so revocation holds on the next request."""
    keys = [_cache_key(d) for d in digests]
    if not keys:
        return
    caches["auth"].delete_many(keys)
    transaction.on_commit(lambda: caches["auth"].delete_many(keys))
