"""The plan change form on the Usage & plan page."""

from __future__ import annotations

from django import forms

from billing.models import Plan


class PlanChangeForm(forms.Form):
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.order_by("monthly_event_limit"),
        to_field_name="code",
        empty_label=None,
        label="Plan",
    )
