"""Retention: rows past their workspace's plan retention are deleted in bounded batches.

Each batch is one short `DELETE … WHERE id IN (SELECT … ORDER BY time LIMIT n)` of the oldest
expired rows, found through the (workspace, time) indexes and walked along them: the next batch
starts at the last one's time, so it never re-reads the index entries of rows already deleted
(they stay in the index until VACUUM). Every batch commits on its own, with the event counters'
triggers decrementing in the same statement, so a run stopped at any point leaves the rows and
counters consistent and the next run carries on. A daily run never holds long locks or builds a
huge transaction, whatever the backlog. The current snapshot cards are kept: only their history
expires.

The purge paces itself by a duty cycle, as autovacuum's cost delay paces VACUUM: after each
batch it sleeps in proportion to how long the batch took, so it spends at most
`PURGE_DUTY_PERCENT` of its time in the database. A busy database makes batches slower and the
rests longer with them, leaving ingest its share of the machine whatever the load.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
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

# Model, and the time field its retention is measured on (each leads an index after workspace).
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


# Called after every batch with the report so far (the command prints progress from it).
Progress = Callable[[PurgeReport], None]


class PacingError(ValueError):
    """A batch size or duty cycle the purge cannot run with."""


@dataclass(frozen=True)
class Batches:
    """How the purge paces itself: rows per DELETE, the share of its time spent deleting
    (percent), and who hears of each batch."""

    size: int
    duty_percent: int = 100
    progress: Progress | None = None

    def __post_init__(self) -> None:
        if self.size < 1:
            raise PacingError(
                f"the batch size (--batch-size, PURGE_BATCH_SIZE) must be at least 1, got {self.size}"
            )
        if not 1 <= self.duty_percent <= 100:
            raise PacingError(
                "the duty cycle (--duty-percent, PURGE_DUTY_PERCENT) must be 1 to 100, "
                f"got {self.duty_percent}"
            )

    def rest(self, busy: float) -> float:
        """Seconds to sleep after a batch that took `busy` seconds (none at 100 %)."""
        return busy * (100 - self.duty_percent) / self.duty_percent


def delete_in_batches(
    queryset: models.QuerySet, time_field: str, batches: Batches, report: PurgeReport
) -> int:
    """Delete the queryset's rows `batches.size` at a time, oldest first; returns how many went."""
    model = queryset.model
    label = model._meta.label
    deleted = 0
    floor: datetime | None = None
    while True:
        started = time.monotonic()
        page = queryset if floor is None else queryset.filter(**{f"{time_field}__gte": floor})
        page = page.order_by(time_field)
        # The time of the batch's last row, read from the index; none when fewer rows are left.
        last = list(page.values_list(time_field, flat=True)[batches.size - 1 : batches.size])
        # One DELETE of the oldest rows, chosen inside it: the rows never travel to Python, whose
        # share of the purge's CPU was twice the database's when 5,000 ids made the round trip.
        # Nothing points at these rows and no signal listens, so Django issues one fast DELETE.
        batch = page if not last else model._default_manager.filter(
            pk__in=page.values("pk")[: batches.size]
        )
        count, _ = batch.delete()
        if not count:
            return deleted
        report.deleted[label] += count
        report.batches += 1
        deleted += count
        rest = batches.rest(time.monotonic() - started)
        if rest > 0:
            time.sleep(rest)
        if batches.progress is not None:
            batches.progress(report)
        if not last:
            return deleted
        # Rows sharing the last row's time may remain: `>=` finds them, deleted ones are gone.
        floor = last[0]


def purge_expired(
    now: datetime | None = None,
    batch_size: int | None = None,
    duty_percent: int | None = None,
    progress: Progress | None = None,
) -> PurgeReport:
    """Delete every row past its workspace's retention and idempotency records past the window.

    `batch_size` and `duty_percent` default to their settings (PacingError when out of range);
    `progress` is called after every batch.
    """
    now = now or timezone.now()
    batches = Batches(
        settings.PURGE_BATCH_SIZE if batch_size is None else batch_size,
        settings.PURGE_DUTY_PERCENT if duty_percent is None else duty_percent,
        progress,
    )
    report = PurgeReport()
    workspaces = Workspace.objects.values_list("pk", "plan__retention_days").order_by("pk")
    for workspace_id, retention_days in workspaces.iterator():
        cutoff = now - timedelta(days=retention_days)
        for model, time_field in RETAINED:
            expired = model._default_manager.filter(
                workspace_id=workspace_id, **{f"{time_field}__lt": cutoff}
            )
            delete_in_batches(expired, time_field, batches, report)
    window = timedelta(seconds=settings.IDEMPOTENCY_WINDOW_SECONDS)
    stale = IdempotencyRecord.objects.filter(created_at__lt=now - window)
    delete_in_batches(stale, "created_at", batches, report)
    # Labels with nothing deleted still appear, so the command's summary is complete.
    for model in [m for m, _ in RETAINED] + [IdempotencyRecord]:
        report.deleted.setdefault(model._meta.label, 0)
    return report
