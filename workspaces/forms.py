"""Dashboard forms: the two steps of sign-up, a new workspace, and the members page's forms."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from workspaces.roles import Role

WORKSPACE_NAME_HELP = "Your team or project. You can add more workspaces later."


class SignupForm(forms.Form):
    """Sign-up's first step: where to send the link. Says nothing about existing accounts."""

    email = forms.EmailField(help_text="We send a link there to finish signing up.")
    workspace_name = forms.CharField(
        max_length=200, required=False, label="Workspace name", help_text=WORKSPACE_NAME_HELP
    )

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class FinishSignupForm(UserCreationForm):
    """Sign-up's second step, behind the emailed link: username, password, workspace name."""

    workspace_name = forms.CharField(
        max_length=200, required=False, label="Workspace name", help_text=WORKSPACE_NAME_HELP
    )

    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]  # django-stubs declares no Meta
        model = get_user_model()
        fields = ("username",)

    def __init__(self, *args, email: str, with_workspace: bool = True, **kwargs) -> None:
        # The verified address goes on the instance so the password validators see it too.
        kwargs["instance"] = get_user_model()(email=email)
        super().__init__(*args, **kwargs)
        if not with_workspace:  # signing up from an invitation: the workspace exists
            del self.fields["workspace_name"]
        # Django's validator list is long; one calm sentence says the same.
        self.fields["username"].help_text = "Letters, digits and @ . + - _ only."
        self.fields["password1"].help_text = (
            "At least 8 characters; not a common, all-numeric or username-like password."
        )
        self.fields["password2"].help_text = ""
        self.fields["password2"].label = "Confirm password"

    def workspace_label(self) -> str:
        """The chosen workspace name, or one derived from the username."""
        name = (self.cleaned_data.get("workspace_name") or "").strip()
        return name or f"{self.cleaned_data['username']}'s workspace"


class WorkspaceForm(forms.Form):
    name = forms.CharField(max_length=200, label="Workspace name")


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, help_text="We email a link that works for 7 days.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args, roles: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        role = self.fields["role"]
        assert isinstance(role, forms.ChoiceField)
        role.choices = [(r, Role(r).label) for r in roles]
        self.fields["email"].help_text = (
            f"We email a link that works for {settings.INVITATION_MAX_AGE_DAYS} days."
        )

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class MemberForm(forms.Form):
    """Names a member of the page's workspace by username (the view looks it up there)."""

    member = forms.CharField(max_length=150)


class RoleForm(MemberForm):
    role = forms.ChoiceField(choices=Role.choices)


class InvitationForm(forms.Form):
    invitation = forms.CharField(max_length=40)


class DeleteWorkspaceForm(forms.Form):
    name = forms.CharField(max_length=200, label="Type the workspace's name to confirm")
