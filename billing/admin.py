"""Plans are editable (changes apply on the next request); usage counters are read-only."""

from __future__ import annotations

from django.contrib import admin

from billing.models import Plan, Usage


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the ingest path or by services: viewable, never edited by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name", "code", "monthly_event_limit", "retention_days", "max_sources",
        "developer_api", "burst_per_key", "burst_per_workspace",
    ]
    list_filter = ["developer_api"]
    search_fields = ["name", "code"]


@admin.register(Usage)
class UsageAdmin(ReadOnlyAdmin):
    list_display = ["workspace", "period_start", "period_end", "events"]
    list_select_related = ["workspace"]
    search_fields = ["workspace__name", "workspace__public_id"]
    list_filter = ["period_start"]
    ordering = ["-period_start"]
