"""Events and everything the ingest path writes: read-only in the admin (events are immutable)."""

from __future__ import annotations

from django.contrib import admin

from billing.admin import ReadOnlyAdmin
from ingest.models import (
    Event,
    IdempotencyRecord,
    RejectedRequest,
    Rejection,
    Snapshot,
    SnapshotHistory,
    TimelineEvent,
)


class BigTableAdmin(ReadOnlyAdmin):
    # These tables grow without bound: no COUNT(*) over the whole table on every page.
    show_full_result_count = False
    list_per_page = 50


@admin.register(Event)
class EventAdmin(BigTableAdmin):
    list_display = ["public_id", "status", "event_type", "message", "source", "workspace",
                    "received_at"]
    list_filter = ["status", "received_at"]
    list_select_related = ["source", "workspace"]
    search_fields = ["=public_id", "=external_id", "event_type", "=workspace__public_id",
                     "=source__public_id"]


@admin.register(TimelineEvent)
class TimelineEventAdmin(BigTableAdmin):
    list_display = ["public_id", "event_type", "category", "worker", "source", "workspace",
                    "timestamp", "received_at"]
    list_filter = ["category", "received_at"]
    list_select_related = ["worker", "source", "workspace"]
    search_fields = ["=public_id", "event_type", "=request_id", "=worker__public_id",
                     "=workspace__public_id", "=source__public_id"]


class SnapshotAdminBase(BigTableAdmin):
    list_display = ["snapshot_type", "worker", "source", "workspace", "timestamp", "received_at"]
    list_filter = ["received_at"]
    list_select_related = ["worker", "source", "workspace"]
    search_fields = ["snapshot_type", "=worker__public_id", "=workspace__public_id",
                     "=request_id"]


@admin.register(Snapshot)
class SnapshotAdmin(SnapshotAdminBase):
    pass


@admin.register(SnapshotHistory)
class SnapshotHistoryAdmin(SnapshotAdminBase):
    pass


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(BigTableAdmin):
    list_display = ["key", "source", "status_code", "created_at"]
    list_filter = ["status_code", "created_at"]
    list_select_related = ["source"]
    search_fields = ["=key", "=source__public_id"]


@admin.register(Rejection)
class RejectionAdmin(BigTableAdmin):
    list_display = ["hour", "code", "count", "source", "workspace", "last_at"]
    list_filter = ["code", "hour"]
    list_select_related = ["source", "workspace"]
    search_fields = ["=code", "=source__public_id", "=workspace__public_id"]


@admin.register(RejectedRequest)
class RejectedRequestAdmin(BigTableAdmin):
    list_display = ["at", "code", "message", "request_id", "source", "workspace"]
    list_filter = ["code", "at"]
    list_select_related = ["source", "workspace"]
    search_fields = ["=request_id", "=code", "=source__public_id", "=workspace__public_id"]
