"""Workspaces and their members."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from billing.services import get_plan
from workspaces.models import Membership, Role, Workspace


class UnknownUser(ValueError):
    pass


@transaction.atomic
def create_workspace(
    name: str,
    plan_code: str = "free",
    owner=None,
    event_limit: int | None = None,
) -> Workspace:
    """A workspace on a plan, with its owner as the first member."""
    workspace = Workspace.objects.create(
        name=name, plan=get_plan(plan_code), event_limit_override=event_limit
    )
    if owner is not None:
        Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    return workspace


def get_user(username: str):
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise UnknownUser(f"unknown user {username!r}")
    return user


def membership_of(user, workspace) -> Membership | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, workspace=workspace).first()
