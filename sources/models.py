from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone

from ackly.ids import new_public_id


def new_source_id() -> str:
    return new_public_id("app")


def new_key_id() -> str:
    return new_public_id("key")


class SourceQuerySet(models.QuerySet):
    def for_workspace(self, workspace) -> SourceQuerySet:
        return self.filter(workspace=workspace)


class Source(models.Model):
    """A collection point for events (the v1 API's *app*)."""

    public_id = models.CharField(max_length=40, unique=True, default=new_source_id, editable=False)
    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, related_name="sources"
    )
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    # The v1 API's eventType whitelist; empty allows none. The ingest API ignores it.
    allowed_event_types = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = SourceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "slug"], name="source_unique_slug"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


class KeyScope(models.TextChoices):
    INGEST = "ingest", "Ingest (send events)"
    READ = "read", "Read (GET /api/v1/events)"


class KeyQuerySet(models.QuerySet):
    def usable(self, now: datetime | None = None) -> KeyQuerySet:
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class Key(models.Model):
    """A secret of one source, to send its events (ingest) or read the workspace's (read).
    Only its SHA-256 digest and a short prefix are stored."""

    public_id = models.CharField(max_length=40, unique=True, default=new_key_id, editable=False)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="keys")
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise the key.")
    # Authentication looks keys up by this (unique index).
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # What the key may do; its secret's prefix says the same (sources.keys.KEY_PREFIXES).
    scope = models.CharField(
        max_length=10, choices=KeyScope.choices, default=KeyScope.INGEST, editable=False
    )

    objects = KeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.public_id})"

    def status_at(self, now: datetime | None = None) -> KeyStatus:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return KeyStatus.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyStatus.EXPIRED
        return KeyStatus.ACTIVE

    @property
    def status(self) -> KeyStatus:
        return self.status_at()
