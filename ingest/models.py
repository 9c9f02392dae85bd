from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone

from ackly.ids import new_event_id, new_public_id


def new_timeline_event_id() -> str:
    return new_public_id("tle")


class EventStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    PARTIAL = "partial", "Partial"


class Category(models.TextChoices):
    COMMUNICATION = "communication", "Communication"
    DEVELOPMENT = "development", "Development"
    PROJECT_MANAGEMENT = "project_management", "Project management"
    DOCUMENTATION = "documentation", "Documentation"
    SUPPORT = "support", "Support"
    SALES = "sales", "Sales"
    OPERATIONS = "operations", "Operations"


class WorkspaceScopedQuerySet(models.QuerySet):
    time_field = "received_at"

    def for_workspace(self, workspace) -> WorkspaceScopedQuerySet:
        return self.filter(workspace=workspace)

    def since(self, moment: datetime) -> WorkspaceScopedQuerySet:
        return self.filter(**{f"{self.time_field}__gte": moment})

    def before(self, moment: datetime) -> WorkspaceScopedQuerySet:
        return self.filter(**{f"{self.time_field}__lt": moment})


class Event(models.Model):
    """One ingest-API event. Immutable."""

    public_id = models.CharField(max_length=24, unique=True, default=new_event_id, editable=False)
    # No index of their own: event_ws_recent and event_source_recent lead with these.
    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, db_index=False, related_name="+"
    )
    source = models.ForeignKey(
        "sources.Source", on_delete=models.CASCADE, db_index=False, related_name="events"
    )
    status = models.CharField(max_length=10, choices=EventStatus.choices)
    message = models.TextField(blank=True, default="")
    description = models.TextField(blank=True, default="")
    event_type = models.CharField(max_length=100, blank=True, default="")
    external_id = models.CharField(max_length=255, blank=True, default="")
    duration_ms = models.FloatField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    objects = WorkspaceScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The live page (newest first), the catch-up fetch and purge_expired's cut-off.
            models.Index(fields=["workspace", "-received_at"], name="event_ws_recent"),
            # The live page filtered by source.
            models.Index(fields=["source", "-received_at"], name="event_source_recent"),
            # The live page filtered by event type, a prefix (LIKE 'deploy.%'): only the matching
            # rows are read, where event_ws_recent would read every row of the workspace to
            # find none. Pattern ops serve LIKE whatever the database's collation. It carries
            # every other column the filters test, and the id: the feed finds a page's ids from
            # it alone (an index-only scan, workspaces.live.newest), so a type with other
            # filters that match few of its rows reads index pages, not a row per candidate.
            models.Index(
                fields=["workspace", "event_type", "-received_at"], name="event_ws_type_covering",
                opclasses=["", "varchar_pattern_ops", ""], include=["source", "status", "id"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status}"


class TimelineEvent(models.Model):
    """One v1 event on a worker's monitoring timeline. Immutable."""

    public_id = models.CharField(
        max_length=40, unique=True, default=new_timeline_event_id, editable=False
    )
    # No index of its own: timeline_ws_recent leads with it (as worker's is led by
    # timeline_worker_recent). Every index is paid for on every insert of a batch.
    #
    # No per-row foreign keys either: the database checks these three references once per
    # statement instead, with triggers (migration ingest.0003, docs/performance.md). A row's
    # source and worker must exist and belong to its workspace; they are locked until COMMIT
    # as a foreign key locks them, and deleting one that still has timeline rows fails.
    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, db_index=False, db_constraint=False,
        related_name="+",
    )
    # No index of its own: timeline_source_recent leads with it.
    source = models.ForeignKey(
        "sources.Source", on_delete=models.CASCADE, db_index=False, db_constraint=False,
        related_name="timeline",
    )
    worker = models.ForeignKey(
        "workspaces.Worker", on_delete=models.CASCADE, db_index=False, db_constraint=False,
        related_name="timeline",
    )
    event_type = models.CharField(max_length=100)
    category = models.CharField(max_length=20, choices=Category.choices)
    timestamp = models.DateTimeField()
    duration = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds.")
    metadata = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=40)
    received_at = models.DateTimeField(default=timezone.now)

    objects = WorkspaceScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The live page, the catch-up fetch and purge_expired.
            models.Index(fields=["workspace", "-received_at"], name="timeline_ws_recent"),
            # A worker's timeline on the workers page.
            models.Index(fields=["worker", "-timestamp"], name="timeline_worker_recent"),
            # The live page filtered by source (and a source's deletion).
            models.Index(fields=["source", "-received_at"], name="timeline_source_recent"),
            # The live page filtered by event type, as event_ws_type_covering.
            models.Index(
                fields=["workspace", "event_type", "-received_at"],
                name="timeline_ws_type_covering", opclasses=["", "varchar_pattern_ops", ""],
                include=["source", "category", "id"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.event_type}"


class SnapshotFields(models.Model):
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey("sources.Source", on_delete=models.CASCADE, related_name="+")
    worker = models.ForeignKey("workspaces.Worker", on_delete=models.CASCADE, related_name="+")
    snapshot_type = models.CharField(max_length=100)
    timestamp = models.DateTimeField()
    metrics = models.JSONField()
    metadata = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=40)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class Snapshot(SnapshotFields):
    """The current card for (worker, snapshotType): the newest by timestamp wins."""

    class Meta:
        ordering = ["snapshot_type"]
        constraints = [
            # One card per (worker, type); the replace-unless-newer upsert relies on it.
            models.UniqueConstraint(fields=["worker", "snapshot_type"], name="snapshot_current"),
        ]

    def __str__(self) -> str:
        return f"{self.snapshot_type} for {self.worker_id}"


class SnapshotHistory(SnapshotFields):
    """Every snapshot received, kept until retention."""

    objects = WorkspaceScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "snapshot history"
        indexes = [
            # purge_expired's cut-off per workspace.
            models.Index(fields=["workspace", "received_at"], name="snapshothist_ws_received"),
            # A worker's history of one snapshot type.
            models.Index(
                fields=["worker", "snapshot_type", "-timestamp"], name="snapshothist_worker_type"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.snapshot_type} for {self.worker_id} at {self.timestamp:%Y-%m-%d %H:%M}"


class IdempotencyRecord(models.Model):
    """The first response to (source, Idempotency-Key), replayed for 10 minutes."""

    # No index of its own: idempotency_unique_key leads with it.
    source = models.ForeignKey(
        "sources.Source", on_delete=models.CASCADE, db_index=False, related_name="+"
    )
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Claims the key: a concurrent duplicate blocks on this index, then replays.
            models.UniqueConstraint(fields=["source", "key"], name="idempotency_unique_key"),
        ]
        indexes = [
            # purge_expired drops records past the window.
            models.Index(fields=["created_at"], name="idempotency_created"),
        ]

    def __str__(self) -> str:
        return f"{self.key} → {self.status_code}"


class Rejection(models.Model):
    """Refused ingest requests (and refused v1 events) per source, error code and hour."""

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey("sources.Source", on_delete=models.CASCADE, related_name="rejections")
    code = models.CharField(max_length=40)
    hour = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)
    last_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-hour"]
        constraints = [
            # The counting upsert's conflict target.
            models.UniqueConstraint(fields=["source", "code", "hour"], name="rejection_bucket"),
        ]
        indexes = [
            # The dashboard's rejections panel: a workspace's recent buckets.
            models.Index(fields=["workspace", "-hour"], name="rejection_ws_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ×{self.count} at {self.hour:%Y-%m-%d %H:00}"


class RejectedRequestQuerySet(WorkspaceScopedQuerySet):
    time_field = "at"


class RejectedRequest(models.Model):
    """One refused request behind a Rejection count: when, which code, what the sender was told.

    Only the error's message and the request id are kept, never the body or the key. Each source
    keeps its newest REJECTED_REQUESTS_PER_SOURCE (ingest.rejections), and the retention purge
    drops older ones, so a sender refused in a loop cannot grow the table.
    """

    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, db_index=False, related_name="+"
    )
    # No index of its own: rejectedreq_source_recent leads with it.
    source = models.ForeignKey(
        "sources.Source", on_delete=models.CASCADE, db_index=False, related_name="+"
    )
    code = models.CharField(max_length=40)
    message = models.TextField()
    request_id = models.CharField(max_length=40, blank=True, default="")
    at = models.DateTimeField(default=timezone.now)

    objects = RejectedRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            # A source's newest refusals: the drill-down by source, and the per-source cap's trim.
            models.Index(fields=["source", "-at"], name="rejectedreq_source_recent"),
            # A workspace's newest refusals (the drill-down) and purge_expired's cut-off.
            models.Index(fields=["workspace", "-at"], name="rejectedreq_ws_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.code} at {self.at:%Y-%m-%d %H:%M:%S}"
