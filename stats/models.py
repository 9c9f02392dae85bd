"""Event counts per quarter hour, kept by the database as event rows are stored and deleted.

The rows of this table are written only by triggers on ingest_event and ingest_timelineevent
(migration stats.0001, docs/decisions.md), so every writer is counted without knowing of it:
the Django pipeline, the fast lane's COPY and group commit, bulk_create, the demo's history,
and the retention purge's deletes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import models

from ingest.models import Event, TimelineEvent

BUCKET = timedelta(minutes=15)


class Kind(models.TextChoices):
    # The ingest API's statuses (ingest.models.EventStatus), then the v1 timeline's rows.
    SUCCESS = "success", "Success"
    PARTIAL = "partial", "Partial"
    FAILURE = "failure", "Failure"
    TIMELINE = "timeline", "Timeline"


def bucket_of(moment: datetime) -> datetime:
    """The start, in UTC, of the quarter hour holding `moment` (as the triggers compute it)."""
    at = moment.astimezone(UTC)
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


class EventCount(models.Model):
    """How many rows of one kind a source stored in one quarter hour (by received_at, UTC)."""

    # No database foreign keys: the triggers write these rows inside every event insert, and a
    # key would add a look-up and a lock per statement. Django's cascade still deletes them with
    # their workspace or source; a trigger only ever decrements rows that exist.
    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, db_constraint=False, db_index=False,
        related_name="+",
    )
    source = models.ForeignKey(
        "sources.Source", on_delete=models.CASCADE, db_constraint=False, db_index=False,
        related_name="+",
    )
    bucket = models.DateTimeField(help_text="Start of the quarter hour, UTC.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The triggers' upsert target (ON CONFLICT), one row per counter.
            models.UniqueConstraint(
                fields=["workspace", "source", "bucket", "kind"], name="eventcount_unique"
            ),
        ]
        indexes = [
            # The live page's chart: one workspace's last 25 hours; and a source's deletion.
            models.Index(fields=["workspace", "bucket"], name="eventcount_ws_bucket"),
            models.Index(fields=["source"], name="eventcount_source"),
        ]

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H:%M} {self.kind} {self.count}"


def stored_before(cutoff: datetime, **where: Any) -> tuple[int, int]:
    """(events, timeline events) received before `cutoff`, exactly, without counting old rows:
    the counters of every whole quarter hour before the one holding `cutoff`, plus a count of
    that quarter hour's rows before it (at most 15 minutes of rows, through the
    (workspace, received_at) indexes). `where` narrows by workspace (`workspace=ws`,
    `workspace__plan=plan`): both the counters and the event tables take it.
    """
    edge = bucket_of(cutoff)
    totals = dict(
        EventCount.objects.filter(bucket__lt=edge, **where)
        .values_list("kind").annotate(n=models.Sum("count")).order_by()
    )
    timeline = totals.pop(Kind.TIMELINE, 0)
    events = sum(totals.values())
    recent = {"received_at__gte": edge, "received_at__lt": cutoff, **where}
    events += Event.objects.filter(**recent).count()
    timeline += TimelineEvent.objects.filter(**recent).count()
    return events, timeline
