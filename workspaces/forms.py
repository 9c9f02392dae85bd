"""Dashboard forms: sign-up and a new workspace."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    """A new user plus the name of the workspace made for them."""

    email = forms.EmailField(required=True, help_text="For password resets; never shared.")
    workspace_name = forms.CharField(
        max_length=200,
        required=False,
        label="Workspace name",
        help_text="Your team or project. You can add more workspaces later.",
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Django's validator list is long; one calm sentence says the same.
        self.fields["username"].help_text = "Letters, digits and @ . + - _ only."
        self.fields["password1"].help_text = (
            "At least 8 characters; not a common, all-numeric or username-like password."
        )
        self.fields["password2"].help_text = ""
        self.fields["password2"].label = "Confirm password"

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email already exists.")
        return email

    def workspace_label(self) -> str:
        """The chosen workspace name, or one derived from the username."""
        name = (self.cleaned_data.get("workspace_name") or "").strip()
        return name or f"{self.cleaned_data['username']}'s workspace"


class WorkspaceForm(forms.Form):
    name = forms.CharField(max_length=200, label="Workspace name")
