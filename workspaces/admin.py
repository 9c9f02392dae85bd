"""Workspaces with their members, and workers."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms.formsets import DELETION_FIELD_NAME
from django.forms.models import BaseInlineFormSet

from billing.downgrade import retention_cut
from billing.services import record_plan_change
from workspaces import audit
from workspaces.models import AuditEntry, Invitation, Membership, Role, Worker, Workspace
from workspaces.services import (
    MemberChangeRefused,
    record_invitation_deleted,
    record_membership_deleted,
    record_membership_saved,
    refuse_last_owner_loss,
)


def _owner_kept(losing: list[Membership]) -> None:
    """ValidationError when removing `losing`, or giving them another role, would leave a
    workspace without an owner.

    The members page's rule (workspaces.services.refuse_last_owner_loss), under the workspace's
    lock: the admin's change view runs in one transaction, so the lock is held until the change
    is saved."""
    try:
        refuse_last_owner_loss(losing, lock=True)
    except MemberChangeRefused as refused:
        raise ValidationError(str(refused)) from None


class MembershipInlineFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        # A row whose own fields are invalid shows its errors first.
        _owner_kept([
            form.instance for form in self.initial_forms
            if form.instance.pk and (
                form.cleaned_data.get(DELETION_FIELD_NAME)
                or (form.is_valid() and form.cleaned_data["role"] != Role.OWNER)
            )
        ])


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["workspace", "user", "role"]

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        # Before the form's values are applied, the instance is the membership as stored.
        stored = self.instance
        role, workspace = cleaned.get("role"), cleaned.get("workspace")
        if stored.pk and role is not None and workspace is not None and (
            role != Role.OWNER or workspace.pk != stored.workspace_id
        ):
            _owner_kept([stored])
        return cleaned


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipInlineFormSet
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class WorkspaceForm(forms.ModelForm):
    confirm_purge = forms.BooleanField(
        required=False,
        label="Confirm the purge",
        help_text="Needed to move to a plan that keeps history for fewer days: what is past it "
        "is deleted by the next daily retention purge.",
    )

    class Meta:
        model = Workspace
        fields = ["name", "plan", "event_limit_override", "billing_anchor"]

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        plan = cleaned.get("plan")
        # Before the instance takes the form's values: self.instance.plan is the stored plan.
        if self.instance.pk and plan is not None and not cleaned.get("confirm_purge"):
            cut = retention_cut(self.instance, plan)
            if cut is not None:
                self.add_error("plan", f"{cut.summary} Tick “Confirm the purge” to save.")
        return cleaned

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
    fields = [
        "public_id", "name", "plan", "confirm_purge", "event_limit_override", "billing_anchor",
        "created_at",
    ]
    inlines = [MembershipInline]

    @admin.display(description="monthly limit")
    def effective_limit(self, workspace: Workspace) -> int:
        return workspace.monthly_event_limit

    def save_model(self, request, obj: Workspace, form, change: bool) -> None:
        previous = Workspace.objects.select_related("plan").get(pk=obj.pk).plan if change else None
        super().save_model(request, obj, form, change)
        actor = audit.admin_actor(request.user)
        if previous is not None and previous.pk != obj.plan_id:
            record_plan_change(obj, previous, actor=actor)
        if change and "event_limit_override" in form.changed_data:
            audit.record(obj, "plan.limit_changed", obj, actor=actor,
                         details={"event_limit_override": obj.event_limit_override})

    def save_formset(self, request, form, formset, change: bool) -> None:
        # The members inline: each added, changed or removed membership goes into the audit log.
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        previous = {
            m.pk: m.role
            for m in Membership.objects.filter(pk__in=[f.instance.pk for f in formset.forms if f.instance.pk])
        }
        super().save_formset(request, form, formset, change)
        actor = audit.admin_actor(request.user)
        for membership in formset.new_objects:
            record_membership_saved(membership, None, actor)
        for membership, _ in formset.changed_objects:
            record_membership_saved(membership, previous.get(membership.pk), actor)
        for membership in formset.deleted_objects:
            record_membership_deleted(membership, actor)

    def get_search_results(self, request, queryset, search_term):
        # Searching by member joins memberships: keep one row per workspace.
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset, True


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Changes and deletions follow the members page's last-owner rule (docs/teams.md)."""

    form = MembershipForm
    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "workspace"]
    search_fields = ["user__username", "user__email", "workspace__name", "workspace__public_id"]
    autocomplete_fields = ["user", "workspace"]

    def save_model(self, request, obj: Membership, form, change: bool) -> None:
        previous = Membership.objects.filter(pk=obj.pk).values_list("role", flat=True).first()
        super().save_model(request, obj, form, change)
        record_membership_saved(obj, previous if change else None, audit.admin_actor(request.user))

    def get_deleted_objects(self, objs, request):
        # Both delete pages (one membership, and the "delete selected" action) refuse what
        # Django lists as protected: a deletion that would leave a workspace without an owner.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        try:
            refuse_last_owner_loss(list(objs))
        except MemberChangeRefused as refused:
            protected = [*protected, str(refused)]
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj: Membership) -> None:
        refuse_last_owner_loss([obj], lock=True)  # decided again under the lock
        record_membership_deleted(obj, audit.admin_actor(request.user))
        super().delete_model(request, obj)

    @transaction.atomic
    def delete_queryset(self, request, queryset) -> None:
        memberships = list(queryset.select_related("user"))
        refuse_last_owner_loss(memberships, lock=True)
        for membership in memberships:
            record_membership_deleted(membership, audit.admin_actor(request.user))
            membership.delete()


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations are made on the members page (the link is emailed once); here they are read,
    and deleted with an audit entry."""

    list_display = ["email", "workspace", "role", "created_at", "expires_at", "accepted_at",
                    "revoked_at"]
    list_select_related = ["workspace"]
    search_fields = ["email", "public_id", "workspace__name", "workspace__public_id"]
    list_filter = ["role", "created_at"]
    readonly_fields = ("public_id", "workspace", "email", "role", "invited_by", "created_at",
                       "expires_at", "accepted_at", "accepted_by", "revoked_at")
    fields = readonly_fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj: Invitation) -> None:
        record_invitation_deleted(obj, audit.admin_actor(request.user))
        super().delete_model(request, obj)

    @transaction.atomic
    def delete_queryset(self, request, queryset) -> None:
        for invitation in queryset:
            self.delete_model(request, invitation)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log is written by audit.record() only: read here, never edited."""

    list_display = ["at", "workspace", "actor_label", "action", "target_type", "target_id"]
    list_select_related = ["workspace"]
    list_filter = ["action", "at"]
    search_fields = ["workspace__name", "workspace__public_id", "actor_label", "action",
                     "target_id"]
    readonly_fields = ("at", "workspace", "actor", "actor_label", "action", "target_type",
                       "target_id", "details")
    fields = readonly_fields
    ordering = ["-at", "-id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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


class AcklyUserAdmin(UserAdmin):
    """Django's user admin, keeping the members page's last-owner rule: deleting a user deletes
    their memberships, so a user who is a workspace's only owner is not deleted (Django's
    "Cannot delete" page says why), and each membership deleted with a user is audited as the
    members page audits a removal."""

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        try:
            refuse_last_owner_loss(Membership.objects.filter(user__in=list(objs)))
        except MemberChangeRefused as refused:
            protected = [*protected, str(refused)]
        return deleted, counts, perms_needed, protected

    @transaction.atomic
    def delete_model(self, request, obj) -> None:
        self._remove_memberships(request, [obj])
        super().delete_model(request, obj)

    @transaction.atomic
    def delete_queryset(self, request, queryset) -> None:
        self._remove_memberships(request, list(queryset))
        super().delete_queryset(request, queryset)

    def _remove_memberships(self, request, users: list) -> None:
        memberships = list(Membership.objects.filter(user__in=users).select_related("user"))
        refuse_last_owner_loss(memberships, lock=True)  # decided again under the lock
        for membership in memberships:
            record_membership_deleted(membership, audit.admin_actor(request.user))


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, AcklyUserAdmin)
