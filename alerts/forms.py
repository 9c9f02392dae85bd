"""Dashboard forms for rules and channels: they parse the input; `alerts/validation.py`, through
the services, decides what is acceptable, and `show_errors` puts its answer on the fields."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from alerts.models import Channel, ChannelKind, Rule, RuleKind
from ingest.models import Category
from sources.models import Source

# The form fields each kind of rule uses (the template shows only those; the others are ignored).
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    RuleKind.FAILURE: ("source", "event_type", "include_partial"),
    RuleKind.SILENCE: (
        "source", "event_type", "category", "every_minutes", "schedule", "tz", "grace_minutes",
    ),
    RuleKind.SLOW: ("source", "event_type", "category", "threshold_ms"),
    RuleKind.REJECTIONS: ("source", "code", "threshold_count", "window_minutes"),
    RuleKind.QUOTA: ("threshold_percent",),
}
# `Rule.threshold` means something else for each kind: one labelled form field per meaning.
THRESHOLD_FIELDS: dict[str, str] = {
    RuleKind.SLOW: "threshold_ms",
    RuleKind.REJECTIONS: "threshold_count",
    RuleKind.QUOTA: "threshold_percent",
}
COMMON_FIELDS = ("name", "enabled", "channels", "reminder_minutes")


def show_errors(form: forms.BaseForm, error: ValidationError, renamed: dict[str, str]) -> None:
    """Put validation.py's errors (keyed by model field) on the form's fields, else on the form."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, messages in error.message_dict.items():
        field = renamed.get(name, name)
        for message in messages:
            text = message[:1].upper() + message[1:]
            form.add_error(field if field in form.fields else None, text)


class SourceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Source) -> str:
        return obj.name


class ChannelsField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Channel) -> str:
        return f"{obj.name} ({obj.get_kind_display()}, {obj.masked_target})"


def _minutes(label: str, help_text: str = "") -> forms.IntegerField:
    return forms.IntegerField(label=label, required=False, min_value=0, help_text=help_text)


class RuleForm(forms.Form):
    """One form for every kind: `kind_fields` says which fields a kind reads."""

    name = forms.CharField(
        max_length=200, required=False,
        help_text="Shown in notifications and the banner; left empty, it is made from the kind.",
    )
    kind = forms.ChoiceField(choices=RuleKind.choices, initial=RuleKind.FAILURE)
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled")
    source = SourceField(
        queryset=Source.objects.none(), required=False, empty_label="Any source",
    )
    event_type = forms.CharField(
        max_length=100, required=False, label="eventType",
        help_text="Empty: any. An exact eventType, or a prefix ending in a dot (“backup.”).",
    )
    category = forms.ChoiceField(
        choices=[("", "Any category")] + list(Category.choices), required=False,
        label="Category (developer API)",
    )
    include_partial = forms.BooleanField(
        required=False, label="Partial events count as failures too"
    )
    every_minutes = _minutes(
        "Expected every N minutes", "Either this or a cron schedule below."
    )
    schedule = forms.CharField(
        max_length=100, required=False, label="Or on a cron schedule",
        help_text="Five fields, e.g. “30 2 * * *” for 02:30 every day.",
    )
    tz = forms.CharField(
        max_length=64, required=False, label="Time zone of the schedule", initial="UTC",
        help_text="An IANA name such as Europe/Berlin.",
    )
    grace_minutes = _minutes("Grace (minutes)", "How late an event may be before the alert fires.")
    threshold_ms = forms.IntegerField(
        label="Slower than (ms)", required=False, min_value=1,
        help_text="An event whose durationMs (or duration) exceeds this fires the alert.",
    )
    code = forms.CharField(
        max_length=40, required=False, label="Error code",
        help_text="Empty: any refusal. Otherwise one code, e.g. quota_exceeded.",
    )
    threshold_count = forms.IntegerField(label="At least N refusals", required=False, min_value=1)
    window_minutes = _minutes("Within M minutes")
    threshold_percent = forms.IntegerField(
        label="At percent of the monthly quota", required=False, min_value=1, max_value=1000,
        help_text="Empty: at 80 % and again at 100 %.",
    )
    channels = ChannelsField(
        queryset=Channel.objects.none(), required=False, widget=forms.CheckboxSelectMultiple,
        label="Notify", help_text="Without a channel the alert shows in the dashboard only.",
    )
    reminder_minutes = _minutes(
        "Remind every N minutes while firing", "Empty: no reminders."
    )

    def __init__(self, *args: Any, workspace, rule: Rule | None = None, **kwargs: Any) -> None:
        if rule is not None:
            kwargs.setdefault("initial", initial_of(rule))
        super().__init__(*args, **kwargs)
        self.rule = rule
        source_field = self.fields["source"]
        channel_field = self.fields["channels"]
        assert isinstance(source_field, forms.ModelChoiceField)
        assert isinstance(channel_field, forms.ModelMultipleChoiceField)
        source_field.queryset = Source.objects.for_workspace(workspace).order_by("name")
        source_field.to_field_name = "public_id"
        channel_field.queryset = Channel.objects.filter(workspace=workspace)
        channel_field.to_field_name = "public_id"
        if rule is not None:  # a rule keeps its kind: another kind is another rule
            self.fields["kind"].disabled = True

    def kind_of(self) -> str:
        kind = self.rule.kind if self.rule is not None else self.data.get("kind") or ""
        return kind if kind in RuleKind.values else ""

    def service_fields(self) -> dict[str, Any]:
        """The cleaned fields of this rule's kind, named as the services name them."""
        data = self.cleaned_data
        kind = self.kind_of()
        fields: dict[str, Any] = {name: data.get(name) for name in ("name", "enabled")}
        fields["reminder_minutes"] = data.get("reminder_minutes")
        for name in KIND_FIELDS.get(kind, ()):
            if name.startswith("threshold_"):
                fields["threshold"] = data.get(name)
            else:
                fields[name] = data.get(name)
        for name in ("event_type", "schedule", "tz", "code", "category"):
            if name in fields:
                fields[name] = (fields[name] or "").strip()
        if "grace_minutes" in fields and fields["grace_minutes"] is None:
            fields["grace_minutes"] = 0
        return fields

    def show_errors(self, error: ValidationError) -> None:
        show_errors(self, error, {"threshold": THRESHOLD_FIELDS.get(self.kind_of(), "threshold")})

    def sections(self) -> list[dict[str, Any]]:
        """The kind-specific fields grouped for the template, each group naming its kinds."""
        def kinds_using(name: str) -> str:
            return " ".join(k for k, names in KIND_FIELDS.items() if name in names)

        groups = [
            ("What it watches", ("source", "event_type", "category")),
            ("Failure", ("include_partial",)),
            ("Expected schedule", ("every_minutes", "schedule", "tz", "grace_minutes")),
            ("Slow", ("threshold_ms",)),
            ("Refusals", ("code", "threshold_count", "window_minutes")),
            ("Quota", ("threshold_percent",)),
        ]
        fixed = self.kind_of() if self.rule is not None else ""
        out = []
        for legend, names in groups:
            rows = [(self[name], kinds_using(name)) for name in names
                    if not fixed or fixed in kinds_using(name).split()]
            if rows:
                kinds = " ".join(sorted({k for _, ks in rows for k in ks.split()}))
                out.append({"legend": legend, "rows": rows, "kinds": kinds})
        return out


def initial_of(rule: Rule) -> dict[str, Any]:
    """The form's values for an existing rule."""
    initial: dict[str, Any] = {
        name: getattr(rule, name)
        for name in ("name", "kind", "enabled", "event_type", "category", "include_partial",
                     "every_minutes", "schedule", "tz", "grace_minutes", "code", "window_minutes",
                     "reminder_minutes")
    }
    initial["source"] = rule.source.public_id if rule.source_id and rule.source else None
    initial["channels"] = [c.public_id for c in rule.channels.all()]
    if rule.kind in THRESHOLD_FIELDS:
        initial[THRESHOLD_FIELDS[rule.kind]] = rule.threshold
    return initial


class ChannelForm(forms.Form):
    kind = forms.ChoiceField(choices=ChannelKind.choices, initial=ChannelKind.WEBHOOK)
    name = forms.CharField(
        max_length=200, required=False, help_text="Left empty, the channel is named by its kind."
    )
    target = forms.CharField(
        max_length=2000, label="URL or email address",
        help_text="Webhook and Slack: an https:// URL. Email: an address. Apprise: any Apprise URL "
        "(tgram://…, ntfys://…). Internal addresses are refused.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def show_errors(self, error: ValidationError) -> None:
        show_errors(self, error, {})
