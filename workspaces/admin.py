"""Workspaces with their members, and workers."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from workspaces.models import Membership, Worker, Workspace


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class WorkspaceForm(forms.ModelForm):
    class Meta:
        model = Workspace
        fields = ["name", "plan", "event_limit_override", "billing_anchor"]

    def clean_billing_anchor(self):
        # The admin widget shows whole seconds: saving the form unchanged must not move the
        # anchor by its microseconds, which would start a new billing period (and reset usage).
        anchor = self.cleaned_data["billing_anchor"]
        stored = self.instance.billing_anchor if self.instance.pk else None
        if stored is not None and anchor == stored.replace(microsecond=0):
            return stored
        return anchor


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    form = WorkspaceForm
    list_display = [
        "name", "public_id", "plan", "event_limit_override", "effective_limit",
        "billing_anchor", "created_at",
    ]
    list_filter = ["plan"]
    list_select_related = ["plan"]
    search_fields = ["name", "public_id", "memberships__user__username"]
    readonly_fields = ["public_id", "created_at"]
    fields = ["public_id", "name", "plan", "event_limit_override", "billing_anchor", "created_at"]
    inlines = [MembershipInline]

    @admin.display(description="monthly limit")
    def effective_limit(self, workspace: Workspace) -> int:
        return workspace.monthly_event_limit

    def get_search_results(self, request, queryset, search_term):
        # Searching by member joins memberships: keep one row per workspace.
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset, True


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "workspace"]
    search_fields = ["user__username", "user__email", "workspace__name", "workspace__public_id"]
    autocomplete_fields = ["user", "workspace"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["display_name", "public_id", "workspace", "external_id", "email", "created_at"]
    list_select_related = ["workspace"]
    list_filter = ["created_at"]
    search_fields = [
        "display_name", "public_id", "external_id", "email", "workspace__name",
        "workspace__public_id",
    ]
    autocomplete_fields = ["workspace"]
    readonly_fields = ["public_id", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        # A worker never moves to another tenant: its timeline and snapshots belong where they
        # are (the database refuses the move while timeline rows reference it).
        return [*self.readonly_fields, "workspace"] if obj else self.readonly_fields
