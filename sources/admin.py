"""Sources and keys in the admin. A new secret is shown once, in the response that made it.

The secret travels only as a local value into a template response marked no-store: never
through the messages framework (stored in the session or a cookie), never in a log entry,
and a reload cannot show it again (the page is the answer to the POST that issued it).
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from sources.keys import digest_of, generate_secret, visible_prefix
from sources.models import Key, KeyStatus, Source
from sources.services import (
    IssuedKey,
    delete_source,
    issue_key,
    normalize_event_types,
    record_key_created,
    record_source_changed,
    record_source_created,
    revoke_key,
    rotate_key,
)
from workspaces import audit

MAX_GRACE_HOURS = 24 * 365


def show_secrets(
    request: HttpRequest, model_admin: admin.ModelAdmin, issued: list[IssuedKey], title: str
) -> TemplateResponse:
    """The one admin page that shows secrets: the response to the POST that issued them."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "issued": issued,
        "opts": model_admin.model._meta,
    }
    response = TemplateResponse(request, "admin/sources/key_once.html", context)
    add_never_cache_headers(response)
    return response


def remember_issued(request: HttpRequest, issued: IssuedKey) -> None:
    """Hand a secret from save_model to response_add inside this request only (never stored)."""
    request._ackly_issued = issued  # type: ignore[attr-defined]


class SourceForm(forms.ModelForm):
    allowed_event_types = forms.CharField(
        required=False,
        label="Allowed event types",
        help_text="Comma-separated eventTypes the developer API accepts; empty allows none.",
        widget=forms.TextInput(attrs={"size": 80}),
    )

    class Meta:
        model = Source
        fields = ["workspace", "name", "slug", "allowed_event_types"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.initial["allowed_event_types"] = ", ".join(self.instance.allowed_event_types or [])

    def clean_allowed_event_types(self) -> list[str]:
        types = normalize_event_types(self.cleaned_data["allowed_event_types"].split(","))
        too_long = [t for t in types if len(t) > 100]
        if too_long:
            raise forms.ValidationError(f"eventTypes are at most 100 characters: {too_long[0]!r}")
        return types


class RotateForm(forms.Form):
    grace_hours = forms.DecimalField(
        label="Grace period (hours)",
        min_value=0,
        max_value=MAX_GRACE_HOURS,
        initial=0,
        decimal_places=2,
        help_text="0: the current keys stop at once. Otherwise they keep working this long.",
    )

    def grace(self) -> timedelta | None:
        hours = self.cleaned_data["grace_hours"]
        return timedelta(hours=float(hours)) if hours else None


class KeyInline(admin.TabularInline):
    """A source's keys: prefix and state only (the digest is never displayed)."""

    model = Key
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("public_id", "prefix", "status", "created_at", "expires_at", "revoked_at",
              "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # a key added here could not show its secret: use "Rotate key" or Keys


def rotate_and_show(
    model_admin: admin.ModelAdmin, request: HttpRequest, sources: QuerySet, selected: QuerySet
) -> HttpResponse:
    """Confirm page with a grace period, then rotate every source and show the new keys once."""
    form = RotateForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        grace = form.grace()
        issued = []
        for source in sources.select_related("workspace").order_by("pk"):
            new = rotate_key(source, grace=grace, actor=audit.admin_actor(request.user))
            hours = form.cleaned_data["grace_hours"]
            ending = f"old keys expire in {hours} h" if grace else "old keys revoked"
            message = f"Rotated key: new {new.key.public_id}; {ending}."  # never the secret
            model_admin.log_change(request, source, message)
            issued.append(new)
        return show_secrets(request, model_admin, issued, "Keys rotated: copy them now")
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Rotate keys",
        "form": form,
        "sources": sources.select_related("workspace").order_by("name"),
        "selected": selected.values_list("pk", flat=True),
        "action": request.POST.get("action"),
        "opts": model_admin.model._meta,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/sources/rotate_confirm.html", context)


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = ["name", "slug", "public_id", "workspace", "allowed_types", "created_at"]
    list_select_related = ["workspace"]
    list_filter = ["created_at"]
    search_fields = ["name", "slug", "public_id", "workspace__name", "workspace__public_id"]
    autocomplete_fields = ["workspace"]
    readonly_fields = ["public_id", "created_at"]
    inlines = [KeyInline]
    actions = ["rotate_keys"]

    @admin.display(description="allowed event types")
    def allowed_types(self, source: Source) -> str:
        return ", ".join(source.allowed_event_types or []) or "—"

    def get_inline_instances(self, request, obj=None):
        # A new source has no keys yet: its first key is issued on save and shown once.
        return super().get_inline_instances(request, obj) if obj else []

    def get_readonly_fields(self, request, obj=None):
        # A source never moves to another tenant: its events and keys belong where they are.
        return [*self.readonly_fields, "workspace"] if obj else self.readonly_fields

    def save_model(self, request, obj: Source, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        actor = audit.admin_actor(request.user)
        if change:
            if form.changed_data:
                record_source_changed(obj, form.changed_data, actor=actor)
            return
        record_source_created(obj, actor=actor)
        remember_issued(request, issue_key(obj, actor=actor))

    def delete_model(self, request, obj: Source) -> None:
        delete_source(obj, actor=audit.admin_actor(request.user))

    def delete_queryset(self, request, queryset) -> None:
        # One by one, so each deletion is in the audit log of its own workspace.
        for source in queryset:
            delete_source(source, actor=audit.admin_actor(request.user))

    def response_add(self, request, obj: Source, post_url_continue=None) -> HttpResponse:
        issued = getattr(request, "_ackly_issued", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        return show_secrets(request, self, [issued], f"Source {obj.name} created: copy its key now")

    @admin.action(description="Rotate key (shows the new key once)")
    def rotate_keys(self, request, queryset):
        return rotate_and_show(self, request, queryset, queryset)


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return KeyStatus.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == KeyStatus.ACTIVE:
            return queryset.usable(now)
        if self.value() == KeyStatus.REVOKED:
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == KeyStatus.EXPIRED:
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


class KeyAddForm(forms.ModelForm):
    class Meta:
        model = Key
        fields = ["source", "expires_at"]

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


@admin.register(Key)
class KeyAdmin(admin.ModelAdmin):
    list_display = [
        "public_id", "prefix", "source", "workspace", "status", "created_at", "expires_at",
        "revoked_at", "last_used_at",
    ]
    list_select_related = ["source__workspace"]
    list_filter = [KeyStatusFilter, "created_at", "last_used_at"]
    search_fields = [
        "public_id", "prefix", "source__name", "source__public_id", "source__workspace__name",
        "source__workspace__public_id",
    ]
    autocomplete_fields = ["source"]
    actions = ["revoke_keys", "rotate_sources"]
    # The digest is never shown; the add form asks only for the source and an optional expiry.
    fields = ["public_id", "source", "prefix", "status", "created_at", "expires_at",
              "revoked_at", "last_used_at"]
    readonly_fields = ["public_id", "source", "prefix", "status", "created_at", "revoked_at",
                       "last_used_at"]

    @admin.display(description="workspace")
    def workspace(self, key: Key):
        return key.source.workspace

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = KeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return self.fields if obj else ["source", "expires_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def save_model(self, request, obj: Key, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            if "expires_at" in form.changed_data:
                expires = obj.expires_at.isoformat() if obj.expires_at else None
                audit.record(
                    obj.source.workspace_id, "key.expiry_changed", obj,
                    actor=audit.admin_actor(request.user),
                    details={"source": obj.source.public_id, "expires_at": expires},
                )
            return
        secret = generate_secret()
        obj.prefix, obj.digest = visible_prefix(secret), digest_of(secret)
        super().save_model(request, obj, form, change)
        record_key_created(obj, actor=audit.admin_actor(request.user))
        remember_issued(request, IssuedKey(key=obj, secret=secret))

    def response_add(self, request, obj: Key, post_url_continue=None) -> HttpResponse:
        issued = getattr(request, "_ackly_issued", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        return show_secrets(request, self, [issued], "Key created: copy it now")

    @admin.action(description="Revoke key (stops working on the next request)")
    def revoke_keys(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True).select_related("source"):
            revoke_key(key, actor=audit.admin_actor(request.user))
            self.log_change(request, key, "Revoked.")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).")

    @admin.action(description="Rotate (new key for each selected key's source, shown once)")
    def rotate_sources(self, request, queryset):
        sources = Source.objects.filter(Q(pk__in=queryset.values("source_id")))
        return rotate_and_show(self, request, sources, queryset)
