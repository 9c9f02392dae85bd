"""Sources and their keys: create, issue, rotate, revoke. The secret leaves only as a return value."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from sources.keys import digest_of, generate_secret, visible_prefix
from sources.models import Key, KeyScope, Source
from workspaces import audit


class SourceLimitReached(Exception):
    pass


class SlugTaken(ValueError):
    pass


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its secret: the only moment the secret exists outside the caller's hands."""

    key: Key
    secret: str


def _new_key(
    source: Source, expires_at: datetime | None = None, scope: str = KeyScope.INGEST
) -> IssuedKey:
    secret = generate_secret(scope)
    key = Key.objects.create(
        source=source, prefix=visible_prefix(secret), digest=digest_of(secret),
        expires_at=expires_at, scope=scope,
    )
    return IssuedKey(key=key, secret=secret)


@transaction.atomic
def issue_key(
    source: Source, expires_at: datetime | None = None, actor=None, scope: str = KeyScope.INGEST
) -> IssuedKey:
    """A new key for the source (its others keep working): an ingest key, or a read key
    (`scope="read"`); `actor` goes into the audit log."""
    issued = _new_key(source, expires_at, scope)
    record_key_created(issued.key, actor)
    return issued


def record_key_created(key: Key, actor=None) -> None:
    """The audit entry of a new key (the admin's add form stores its key itself)."""
    details = {"source": key.source.public_id, "prefix": key.prefix, "scope": key.scope}
    if key.expires_at:
        details["expires_at"] = key.expires_at.isoformat()
    audit.record(key.source.workspace_id, "key.created", key, actor=actor, details=details)


def normalize_event_types(types) -> list[str]:
    seen: dict[str, None] = {}
    for item in types or ():
        item = str(item).strip()
        if item:
            seen.setdefault(item, None)
    return list(seen)


@transaction.atomic
def create_source(
    workspace, name: str, slug: str | None = None, allowed_event_types=(), actor=None
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
    record_source_created(source, actor)
    return source, issue_key(source, actor=actor)


def record_source_created(source: Source, actor=None) -> None:
    details = {"name": source.name, "slug": source.slug}
    audit.record(source.workspace_id, "source.created", source, actor=actor, details=details)


def record_source_changed(source: Source, changed: Iterable[str], actor=None) -> None:
    """The audit entry of an edit: which fields changed, and the name and slug they have now."""
    details = {"fields": sorted(changed), "name": source.name, "slug": source.slug}
    audit.record(source.workspace_id, "source.updated", source, actor=actor, details=details)


@transaction.atomic
def delete_source(source: Source, actor=None) -> None:
    """Delete the source, its keys and the alert rules narrowed to it, each rule logged as
    deleting it by hand logs it (the database refuses while timeline rows reference it)."""
    from alerts.services import delete_rules_of_source  # alerts builds on sources, not the reverse

    details = {"name": source.name, "slug": source.slug}
    audit.record(source.workspace_id, "source.deleted", source, actor=actor, details=details)
    delete_rules_of_source(source, actor=actor)
    source.delete()


@transaction.atomic
def rotate_key(source: Source, grace: timedelta | None = None, actor=None) -> IssuedKey:
    """Issue a new ingest key; the source's current ingest keys stop now, or at the end of the
    grace period (read keys are not rotated: each is revoked on its own)."""
    now = timezone.now()
    stopping = []
    keys = Key.objects.select_for_update().filter(source=source, scope=KeyScope.INGEST)
    for key in keys.usable(now):
        stopping.append(key.public_id)
        if grace:
            end = now + grace
            key.expires_at = min(key.expires_at, end) if key.expires_at else end
            key.save(update_fields=["expires_at"])
        else:
            key.revoked_at = now
            key.save(update_fields=["revoked_at"])
    issued = _new_key(source)
    details = {
        "source": source.public_id,
        "prefix": issued.key.prefix,
        "stopping": stopping,
        "grace_seconds": int(grace.total_seconds()) if grace else 0,
    }
    audit.record(source.workspace_id, "key.rotated", issued.key, actor=actor, details=details)
    return issued


@transaction.atomic
def revoke_key(key: Key, actor=None) -> Key:
    """Revoke the key now; revoking a revoked key changes nothing and logs nothing."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        details = {"source": key.source.public_id, "prefix": key.prefix}
        audit.record(key.source.workspace_id, "key.revoked", key, actor=actor, details=details)
    return key


# When each key's last_used_at was last written by this process. In process memory on purpose:
# no request pays a cache round trip to find out (the shared-cache marker it replaced cost one
# on every request), and the statement itself skips a key another process wrote less than an
# interval ago, so N processes write at most one row version a minute per key between them.
_last_touched: dict[int, datetime] = {}

# Both lanes record use with this one statement, in a transaction of its own after the request's
# write (never inside it: the write transactions lock counter rows, and a key row locked there
# too is what let a batch and a group of single events wait on each other in a cycle). It never
# waits: a key row another transaction holds (a concurrent touch, a rotation) is skipped.
_TOUCH_SQL = (
    f"UPDATE {Key._meta.db_table} SET last_used_at = %s WHERE id IN ("
    f"SELECT id FROM {Key._meta.db_table} WHERE id = ANY(%s::bigint[]) "
    "AND (last_used_at IS NULL OR last_used_at <= %s) FOR NO KEY UPDATE SKIP LOCKED)"
)


def due_for_touch(key_id: int, now: datetime) -> bool:
    """Whether this process should write the key's last_used_at now (see `claim_touches`)."""
    last = _last_touched.get(key_id)
    return last is None or (now - last).total_seconds() >= settings.KEY_LAST_USED_INTERVAL_SECONDS


def claim_touches(key_ids: Iterable[int], now: datetime) -> list[int]:
    """Those of the keys whose last_used_at this process writes now, in id order; each is
    marked as written, so a concurrent request of the same process does not write it too."""
    due = sorted({key_id for key_id in key_ids if due_for_touch(key_id, now)})
    for key_id in due:
        _last_touched[key_id] = now
    return due


def touch_statement(key_ids: list[int], now: datetime) -> tuple[str, list]:
    """PostgreSQL: the statement recording the keys' use at `now`, and its parameters. Run it
    outside any transaction that locks other rows (see `_TOUCH_SQL`)."""
    return _TOUCH_SQL, [now, key_ids, _stale_before(now)]


def _stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.KEY_LAST_USED_INTERVAL_SECONDS)


def touch_key(key_id: int, now: datetime | None = None) -> None:
    """Record use at most once a minute per key: one tiny UPDATE in autocommit, not per request."""
    now = now or timezone.now()
    if not claim_touches([key_id], now):
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(*touch_statement([key_id], now))
    else:  # SQLite: one writer at a time, no row lock to skip
        since = _stale_before(now)
        Key.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=since), pk=key_id
        ).update(last_used_at=now)
