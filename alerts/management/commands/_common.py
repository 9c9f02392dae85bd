"""Shared by the alerts commands: look-ups within one workspace and one-line errors."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from workspaces.models import Workspace


def workspace_by_id(public_id: str) -> Workspace:
    workspace = Workspace.objects.filter(public_id=public_id).first()
    if workspace is None:
        raise CommandError(f"unknown workspace {public_id!r} (expected an org_… id)")
    return workspace


# Model fields whose command option has another name.
OPTIONS = {
    "every_minutes": "--minutes", "window_minutes": "--minutes", "grace_minutes": "--grace",
    "reminder_minutes": "--reminder", "include_partial": "--partial", "channels": "--channel",
}


def validation_message(error: ValidationError, target_option: str = "") -> str:
    """`--option: message; --other: message` from a field-keyed ValidationError."""
    if not hasattr(error, "error_dict"):
        return "; ".join(error.messages)
    parts = []
    for name, messages in error.message_dict.items():
        option = OPTIONS.get(name) or (target_option if name == "target" else "")
        option = option or "--" + name.replace("_", "-")
        parts.append(f"{option}: {' '.join(messages)}")
    return "; ".join(parts)
