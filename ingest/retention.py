"""Retention: rows past their workspace's plan retention are deleted in bounded batches.

Each batch is one short `DELETE … WHERE id IN (…)` found through the (workspace, received_at)
indexes, so a daily run never holds long locks or builds a huge transaction, whatever the
backlog. The current snapshot cards are kept: only their history expires.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from ingest.models import (
    Event,
    IdempotencyRecord,
    RejectedRequest,
    Rejection,
    SnapshotHistory,
    TimelineEvent,
)
from workspaces.models import AuditEntry, Workspace

# Model, and the time field its retention is measured on.
RETAINED: tuple[tuple[type[models.Model], str], ...] = (
    (Event, "received_at"),
    (TimelineEvent, "received_at"),
    (SnapshotHistory, "received_at"),
    (Rejection, "hour"),
    (RejectedRequest, "at"),
    # The audit log is kept for the plan's retention too (docs/teams.md).
    (AuditEntry, "at"),
)


@dataclass
class PurgeReport:
    """Rows deleted per model label, and how many DELETE statements it took."""

    deleted: Counter = field(default_factory=Counter)
    batches: int = 0

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def delete_in_batches(queryset: models.QuerySet, batch_size: int, report: PurgeReport) -> int:
    """Delete the queryset's rows `batch_size` at a time; returns how many went."""
    model = queryset.model
    label = model._meta.label
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        # Nothing points at these rows and no signal listens, so Django issues one fast DELETE.
        count, _ = model.objects.filter(pk__in=ids).delete()
        report.deleted[label] += count
        report.batches += 1
        deleted += count
        if len(ids) < batch_size:
            return deleted


def purge_expired(now: datetime | None = None, batch_size: int | None = None) -> PurgeReport:
    """Delete every row past its workspace's retention and idempotency records past the window."""
    now = now or timezone.now()
    batch_size = batch_size or settings.PURGE_BATCH_SIZE
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = PurgeReport()
    workspaces = Workspace.objects.values_list("pk", "plan__retention_days").order_by("pk")
    for workspace_id, retention_days in workspaces.iterator():
        cutoff = now - timedelta(days=retention_days)
        for model, time_field in RETAINED:
            expired = model._default_manager.filter(
                workspace_id=workspace_id, **{f"{time_field}__lt": cutoff}
            ).order_by()
            delete_in_batches(expired, batch_size, report)
    window = timedelta(seconds=settings.IDEMPOTENCY_WINDOW_SECONDS)
    stale = IdempotencyRecord.objects.filter(created_at__lt=now - window).order_by()
    delete_in_batches(stale, batch_size, report)
    # Labels with nothing deleted still appear, so the command's summary is complete.
    for model in [m for m, _ in RETAINED] + [IdempotencyRecord]:
        report.deleted.setdefault(model._meta.label, 0)
    return report
