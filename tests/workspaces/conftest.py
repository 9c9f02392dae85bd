"""Two more personas for the roles: an admin and a viewer of the `workspace` fixture."""

from __future__ import annotations

import pytest

from workspaces.models import Membership, Role


@pytest.fixture
def admin_member(make_user, workspace):
    user = make_user("ada-admin")
    Membership.objects.create(workspace=workspace, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def viewer(make_user, workspace):
    user = make_user("vera-viewer")
    Membership.objects.create(workspace=workspace, user=user, role=Role.VIEWER)
    return user
