"""Plans are editable (changes apply on the next request); usage counters are read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from billing.downgrade import plan_edit_cut
from billing.models import Plan, Usage


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the ingest path or by services: viewable, never edited by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PlanForm(forms.ModelForm):
    confirm_purge = forms.BooleanField(
        required=False,
        label="Confirm the purge",
        help_text="Needed to shorten the retention: what is past it, in every workspace on the "
        "plan, is deleted by the next daily retention purge.",
    )

    class Meta:
        model = Plan
        fields = [
            "code", "name", "monthly_event_limit", "retention_days", "max_sources",
            "developer_api", "burst_per_key", "burst_per_workspace",
        ]

    def clean(self):
        super().clean()
        days = self.cleaned_data.get("retention_days")
        # Before the instance takes the form's values: it still holds the stored retention.
        if self.instance.pk and days is not None and not self.cleaned_data.get("confirm_purge"):
            cut = plan_edit_cut(self.instance, days)
            if cut is not None:
                self.add_error("retention_days", f"{cut.summary} Tick “Confirm the purge” to save.")
        return self.cleaned_data


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanForm
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
