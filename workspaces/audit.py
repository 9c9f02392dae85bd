"""The audit log: `record()` is the one writer, called by every service that changes a workspace.

Call it inside the change's transaction, so a change that rolls back leaves no entry. The actor
says where the change came from:

* the dashboard: the signed-in user (`request.user`), labelled with their username;
* the Django admin: `admin_actor(request.user)`, labelled "admin: <username>";
* a management command: `COMMAND`, labelled "command";
* anything else (None): "system".

Actions are "<target type>.<verb>" in the past tense: "key.created", "key.rotated",
"key.revoked", "source.created", "source.deleted", "plan.changed", "member.invited",
"member.joined", "member.role_changed", "member.removed", "member.left",
"invitation.revoked", "invitation.deleted", "rule.created", "channel.deleted", …
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workspaces.models import AuditEntry, Workspace


@dataclass(frozen=True)
class Actor:
    """Who made a change: a user (or None) and how the log names them."""

    user: Any
    label: str


COMMAND = Actor(None, "command")
SYSTEM = Actor(None, "system")


def admin_actor(user) -> Actor:
    """A change made in the Django admin by `user`."""
    return Actor(user, f"admin: {user.get_username()}")


def as_actor(actor) -> Actor:
    """An Actor from an Actor, a user (the dashboard) or None (the system)."""
    if isinstance(actor, Actor):
        return actor
    if actor is None or not getattr(actor, "is_authenticated", False):
        return SYSTEM
    return Actor(actor, actor.get_username())


def record(
    workspace: Workspace | int,
    action: str,
    target: Any = None,
    *,
    actor: Any = None,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Log one change to `workspace`.

    `target` is the changed thing when it has a public id (a Key, a Source, a Rule, …): its
    type and id are read from it; otherwise give `target_type` and `target_id` (a member's
    username, an invited address). `details` is small JSON: what changed, never a secret.
    """
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target_id or target.public_id
    who = as_actor(actor)
    workspace_id = workspace if isinstance(workspace, int) else workspace.pk
    return AuditEntry.objects.create(
        workspace_id=workspace_id,
        actor=who.user,
        actor_label=who.label[:200],
        action=action,
        target_type=target_type,
        target_id=str(target_id)[:254],
        details=details or {},
    )
