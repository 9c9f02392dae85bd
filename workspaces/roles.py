"""Who may do what in a workspace: the one permission table every changing view consults.

docs/teams.md shows the same table (a test compares the two). Each role has everything the role
below it has: a viewer reads, a member reads too (nothing of theirs changes keys, rules or
billing), an admin manages sources, keys, alerts and members (up to admin), an owner also
changes the plan, deletes the workspace and makes or removes owners.
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    """Highest first: ROLE_ORDER and the members page list them in this order."""

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class Permission(models.TextChoices):
    VIEW = "view", "View every page of the workspace"
    MANAGE_SOURCES = "manage_sources", "Create and edit sources; issue, rotate and revoke keys"
    MANAGE_ALERTS = "manage_alerts", "Create, change, test and delete alert rules and channels"
    MANAGE_MEMBERS = "manage_members", "Invite, remove and change the role of members (up to admin)"
    VIEW_AUDIT_LOG = "view_audit_log", "Read the audit log"
    CHANGE_PLAN = "change_plan", "Change the plan"
    DELETE_WORKSPACE = "delete_workspace", "Delete the workspace"
    TRANSFER_OWNERSHIP = "transfer_ownership", "Make or remove owners"


_VIEWER = frozenset({Permission.VIEW})
_MEMBER = _VIEWER
_ADMIN = _MEMBER | {
    Permission.MANAGE_SOURCES,
    Permission.MANAGE_ALERTS,
    Permission.MANAGE_MEMBERS,
    Permission.VIEW_AUDIT_LOG,
}
_OWNER = _ADMIN | {
    Permission.CHANGE_PLAN,
    Permission.DELETE_WORKSPACE,
    Permission.TRANSFER_OWNERSHIP,
}

PERMISSIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: _VIEWER,
    Role.MEMBER: _MEMBER,
    Role.ADMIN: _ADMIN,
    Role.OWNER: _OWNER,
}

# Highest first: an admin may grant any role from ADMIN down, an owner any role.
ROLE_ORDER: list[str] = [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER]


def allows(role: str, permission: str) -> bool:
    """Whether `role` may do `permission` (an unknown role may do nothing)."""
    return permission in PERMISSIONS.get(role, frozenset())


def grantable_roles(role: str) -> list[str]:
    """The roles someone with `role` may give, take away or invite to."""
    if allows(role, Permission.TRANSFER_OWNERSHIP):
        return list(ROLE_ORDER)
    if allows(role, Permission.MANAGE_MEMBERS):
        return ROLE_ORDER[ROLE_ORDER.index(role):]
    return []
