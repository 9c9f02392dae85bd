"""Dashboard forms for sources and keys: they validate and name the field, services do the work."""

from __future__ import annotations

import re
from datetime import timedelta

from django import forms
from django.utils import timezone

from sources.models import KeyScope, Source
from sources.services import normalize_event_types

MAX_EVENT_TYPE_LENGTH = 100
MAX_EVENT_TYPES = 200
# A week is long enough to roll a key out everywhere; longer grace defeats the point of rotating.
MAX_GRACE_HOURS = 168
# Rotation's grace periods (hours): a default long enough for a day's deploys to pick up the new key.
GRACE_CHOICES = [(0, "Now"), (1, "In 1 hour"), (24, "In 24 hours"), (MAX_GRACE_HOURS, "In 7 days")]
DEFAULT_GRACE_HOURS = 24


def split_event_types(raw: str) -> list[str]:
    """Comma- or newline-separated event types, trimmed, de-duplicated, order kept."""
    return normalize_event_types(re.split(r"[,\n\r]+", raw or ""))


class EventTypesField(forms.CharField):
    """A textarea of eventTypes (comma or newline separated) cleaned into a list."""

    widget = forms.Textarea(attrs={"rows": 3, "placeholder": "ticket.resolved, call.logged"})

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Allowed event types (developer API)")
        kwargs.setdefault(
            "help_text",
            "Comma or newline separated. The developer API refuses any other eventType "
            "(an empty list allows none); the ingest API accepts any.",
        )
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return "\n".join(value)
        return value

    def clean(self, value) -> list[str]:
        types = split_event_types(super().clean(value))
        too_long = [t for t in types if len(t) > MAX_EVENT_TYPE_LENGTH]
        if too_long:
            raise forms.ValidationError(
                f"Each event type must be at most {MAX_EVENT_TYPE_LENGTH} characters: "
                + ", ".join(t[:40] + "…" for t in too_long)
            )
        if len(types) > MAX_EVENT_TYPES:
            raise forms.ValidationError(f"At most {MAX_EVENT_TYPES} event types.")
        return types


class SourceCreateForm(forms.Form):
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"placeholder": "CRM Hub"}))
    slug = forms.SlugField(
        max_length=100,
        required=False,
        help_text="Lowercase letters, digits and dashes; unique in this workspace. "
        "Leave empty to derive it from the name.",
        widget=forms.TextInput(attrs={"placeholder": "crm-hub"}),
    )
    event_types = EventTypesField()


class SourceEditForm(forms.ModelForm):
    """Slug and whitelist of one source; the slug must stay unique in its workspace."""

    event_types = EventTypesField()

    class Meta:
        model = Source
        fields = ["name", "slug"]
        help_texts = {"slug": "Lowercase letters, digits and dashes; unique in this workspace."}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["event_types"].initial = self.instance.allowed_event_types

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        taken = (
            Source.objects.filter(workspace_id=self.instance.workspace_id, slug=slug)
            .exclude(pk=self.instance.pk)
            .exists()
        )
        if taken:
            raise forms.ValidationError(f"Another source in this workspace already uses “{slug}”.")
        return slug

    def save(self, commit: bool = True) -> Source:
        self.instance.allowed_event_types = self.cleaned_data["event_types"]
        return super().save(commit=commit)

    def validate_unique(self) -> None:
        """clean_slug names the field; the model's constraint is the race-proof backstop."""


class RotateForm(forms.Form):
    """How long the current keys keep working once the new one is issued: a few fixed choices."""

    grace_hours = forms.TypedChoiceField(
        label="The current keys stop working",
        choices=GRACE_CHOICES,
        coerce=int,
        initial=DEFAULT_GRACE_HOURS,
        help_text="A grace period lets senders switch to the new key first; a key that already "
        "expires earlier keeps its earlier expiry.",
    )

    @property
    def grace(self) -> timedelta | None:
        hours = self.cleaned_data.get("grace_hours") or 0
        return timedelta(hours=hours) if hours else None


class NewKeyForm(forms.Form):
    scope = forms.ChoiceField(
        label="What the key may do",
        choices=KeyScope.choices,
        initial=KeyScope.INGEST,
        required=False,  # a form without the field (an older page) adds an ingest key
        help_text="An ingest key only sends events; a read key only reads them "
        "(GET /api/v1/events). Neither can do the other's work.",
    )
    expires_at = forms.DateTimeField(
        label="Expires at (UTC)",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Leave empty for a key that never expires.",
    )

    def clean_scope(self) -> str:
        return self.cleaned_data.get("scope") or KeyScope.INGEST

    def clean_expires_at(self):
        moment = self.cleaned_data.get("expires_at")
        # The form field already made it aware in TIME_ZONE, which is UTC.
        if moment is not None and moment <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return moment
