"""Alerts in the admin: channels (masked, never their secret), rules, and read-only alerts,
deliveries and attempts. Every change goes through alerts/services.py (validation and the audit
log); channels are made in the dashboard or by `manage.py createchannel`, which show a webhook's
signing secret once.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from alerts.forms import show_errors
from alerts.models import Alert, Attempt, Channel, Delivery, Rule
from alerts.services import RULE_FIELDS, delete_channel, delete_rule, update_rule
from alerts.validation import validate_rule
from workspaces.audit import admin_actor


class ReadOnlyAdmin(admin.ModelAdmin):
    """Written by the engine and the worker only: the admin looks, never changes."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def deletable_with_log(found: tuple) -> tuple:
    """A channel or rule takes its alerts, deliveries and attempts with it: the log's read-only
    admins need not allow deleting them one by one for that."""
    deleted, model_count, _perms_needed, protected = found
    return deleted, model_count, set(), protected


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    """No field shows the target past its host or the signing secret; deleting goes through
    the service (audit log)."""

    list_display = ["name", "public_id", "workspace", "kind", "masked_target", "signed", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["workspace"]
    search_fields = ["name", "public_id", "workspace__name", "workspace__public_id"]
    fields = readonly_fields = (
        "public_id", "workspace", "name", "kind", "masked_target", "signed", "created_at",
    )

    @admin.display(description="target")
    def masked_target(self, channel: Channel) -> str:
        return channel.masked_target

    @admin.display(boolean=True, description="signing secret")
    def signed(self, channel: Channel) -> bool:
        return bool(channel.signing_secret)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # made in the dashboard or by createchannel, which show the secret once

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_deleted_objects(self, objs, request: HttpRequest):
        return deletable_with_log(super().get_deleted_objects(objs, request))

    def delete_model(self, request: HttpRequest, obj: Channel) -> None:
        delete_channel(obj, actor=admin_actor(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset.select_related("workspace"):
            delete_channel(channel, actor=admin_actor(request.user))


class RuleForm(forms.ModelForm):
    """A rule's settings, checked by alerts/validation.py as the dashboard's form is."""

    class Meta:
        model = Rule
        fields = [name for name in RULE_FIELDS if name != "source"] + ["channels"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        channels = self.fields["channels"]
        assert isinstance(channels, forms.ModelMultipleChoiceField)
        channels.queryset = Channel.objects.filter(workspace_id=self.instance.workspace_id)

    def clean(self) -> dict:
        data = super().clean() or {}
        fields = {name: data.get(name, getattr(self.instance, name)) for name in RULE_FIELDS}
        fields["source"] = self.instance.source
        try:
            validate_rule(self.instance.kind, fields)
        except ValidationError as error:
            show_errors(self, error, {})
        return data


class AlertInline(ReadOnlyInline):
    model = Alert
    fields = readonly_fields = ("public_id", "opened_at", "resolved_at", "reason")
    ordering = ["-opened_at"]
    max_num = 0


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    """Settings change through update_rule; the kind, source and state stay as they are."""

    form = RuleForm
    list_display = ["name", "public_id", "workspace", "kind", "enabled", "state", "state_changed_at"]
    list_filter = ["kind", "state", "enabled"]
    list_select_related = ["workspace"]
    search_fields = ["name", "public_id", "workspace__name", "workspace__public_id"]
    readonly_fields = ["public_id", "workspace", "kind", "source", "state", "state_changed_at",
                       "deadline", "created_at"]
    fieldsets = [
        (None, {"fields": ["public_id", "workspace", "kind", "name", "enabled", "state",
                           "state_changed_at", "created_at"]}),
        ("What it watches", {"fields": ["source", "event_type", "category", "include_partial",
                                        "every_minutes", "schedule", "tz", "grace_minutes",
                                        "deadline", "threshold", "window_minutes", "code"]}),
        ("Notifications", {"fields": ["channels", "reminder_minutes"]}),
    ]
    filter_horizontal = ["channels"]
    inlines = [AlertInline]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # made in the dashboard or by createrule

    def save_model(self, request: HttpRequest, obj: Rule, form: forms.ModelForm, change: bool):
        data = form.cleaned_data
        fields = {name: data[name] for name in RULE_FIELDS if name in data}
        update_rule(obj, channels=data["channels"], actor=admin_actor(request.user), **fields)

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets, change: bool):
        """The channels were set by update_rule; only the (read-only) inline is left."""
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def get_deleted_objects(self, objs, request: HttpRequest):
        return deletable_with_log(super().get_deleted_objects(objs, request))

    def delete_model(self, request: HttpRequest, obj: Rule) -> None:
        delete_rule(obj, actor=admin_actor(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Rule]) -> None:
        for rule in queryset.select_related("workspace"):
            delete_rule(rule, actor=admin_actor(request.user))


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = readonly_fields = (
        "public_id", "channel", "purpose", "sequence", "state", "attempts", "created_at",
        "delivered_at",
    )
    ordering = ["created_at"]
    max_num = 0


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "rule", "workspace", "opened_at", "resolved_at", "reason"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter)]
    list_select_related = ["rule", "workspace"]
    search_fields = ["public_id", "rule__name", "rule__public_id", "workspace__name"]
    fields = readonly_fields = (
        "public_id", "workspace", "rule", "opened_at", "resolved_at", "reason", "resolution",
        "level", "events",
    )
    inlines = [DeliveryInline]


class AttemptInline(ReadOnlyInline):
    model = Attempt
    fields = readonly_fields = ("at", "status_code", "latency_ms", "error")
    show_change_link = False
    max_num = 0


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "purpose", "channel", "alert", "state", "attempts", "created_at",
                    "delivered_at"]
    list_filter = ["state", "purpose"]
    list_select_related = ["channel", "alert"]
    search_fields = ["public_id", "channel__name", "channel__public_id", "alert__public_id"]
    fields = readonly_fields = (
        "public_id", "channel", "alert", "purpose", "sequence", "state", "attempts",
        "next_attempt_at", "created_at", "delivered_at",
    )
    inlines = [AttemptInline]
