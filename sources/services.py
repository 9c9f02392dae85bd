"""Sources and their keys: create, issue, rotate, revoke. The secret leaves only as a return value."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from sources.keys import digest_of, generate_secret, visible_prefix
from sources.models import Key, Source


class SourceLimitReached(Exception):
    pass


class SlugTaken(ValueError):
    pass


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its secret: the only moment the secret exists outside the caller's hands."""

    key: Key
    secret: str


def issue_key(source: Source, expires_at: datetime | None = None) -> IssuedKey:
    secret = generate_secret()
    key = Key.objects.create(
        source=source, prefix=visible_prefix(secret), digest=digest_of(secret), expires_at=expires_at
    )
    return IssuedKey(key=key, secret=secret)


def normalize_event_types(types) -> list[str]:
    seen: dict[str, None] = {}
    for item in types or ():
        item = str(item).strip()
        if item:
            seen.setdefault(item, None)
    return list(seen)


@transaction.atomic
def create_source(
    workspace, name: str, slug: str | None = None, allowed_event_types=()
) -> tuple[Source, IssuedKey]:
    """A new source with its first key; refuses past the plan's source limit."""
    from workspaces.models import Workspace

    # Lock the workspace so two concurrent creations cannot both pass the limit check.
    workspace = Workspace.objects.select_for_update().select_related("plan").get(pk=workspace.pk)
    max_sources = workspace.plan.max_sources
    if max_sources is not None and workspace.sources.count() >= max_sources:
        raise SourceLimitReached(
            f"The {workspace.plan.name} plan allows {max_sources} sources; "
            "delete one or upgrade the plan."
        )
    slug = slugify(slug or name)[:100] or "source"
    if Source.objects.filter(workspace=workspace, slug=slug).exists():
        raise SlugTaken(f"a source with slug {slug!r} already exists in this workspace")
    source = Source.objects.create(
        workspace=workspace,
        name=name,
        slug=slug,
        allowed_event_types=normalize_event_types(allowed_event_types),
    )
    return source, issue_key(source)


@transaction.atomic
def rotate_key(source: Source, grace: timedelta | None = None) -> IssuedKey:
    """Issue a new key; the source's current keys stop now, or at the end of the grace period."""
    now = timezone.now()
    for key in Key.objects.select_for_update().filter(source=source).usable(now):
        if grace:
            end = now + grace
            key.expires_at = min(key.expires_at, end) if key.expires_at else end
            key.save(update_fields=["expires_at"])
        else:
            key.revoked_at = now
            key.save(update_fields=["revoked_at"])
    return issue_key(source)


def revoke_key(key: Key) -> Key:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


# When each key's last_used_at was last written by this process. In process memory on purpose:
# N processes write at most N tiny UPDATEs a minute per key, and no request pays a cache
# round trip to find out (the shared-cache marker it replaced cost one on every request).
_last_touched: dict[int, datetime] = {}


def due_for_touch(key_id: int, now: datetime) -> bool:
    """Whether this process should write the key's last_used_at now (see `touched`)."""
    from django.conf import settings

    last = _last_touched.get(key_id)
    return last is None or (now - last).total_seconds() >= settings.KEY_LAST_USED_INTERVAL_SECONDS


def touched(key_id: int, now: datetime) -> None:
    """The key's last_used_at was written (committed) at `now`."""
    _last_touched[key_id] = now


def touch_key(key_id: int, now: datetime | None = None) -> None:
    """Record use at most once a minute per key per process: one tiny UPDATE, not per request."""
    now = now or timezone.now()
    if due_for_touch(key_id, now):
        touched(key_id, now)
        Key.objects.filter(pk=key_id).update(last_used_at=now)
