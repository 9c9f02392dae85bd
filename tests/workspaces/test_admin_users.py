"""Deleting a user in the Django admin keeps the members page's rule: a workspace always keeps
an owner, and each membership that goes with the user is audited.

Through the real admin (Django's test client as a superuser): the user's delete page and the
"delete selected" action.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.test_admin import ACTION_BOX
from tests.test_admin import url as admin_url
from workspaces.models import AuditEntry, Membership, Role
from workspaces.services import LAST_OWNER

pytestmark = pytest.mark.django_db

User = get_user_model()
REFUSAL = LAST_OWNER.split(":")[0]


def removals() -> list[tuple[str, str, str]]:
    return list(AuditEntry.objects.filter(action="member.removed")
                .values_list("actor_label", "target_id", "details__role"))


def test_a_workspaces_only_owner_is_not_deleted(admin_client, workspace, owner):
    page = admin_client.get(admin_url(User, "delete", owner.pk))
    assert page.status_code == 200
    assert "Cannot delete" in page.content.decode()
    assert REFUSAL in page.content.decode()
    refused = admin_client.post(admin_url(User, "delete", owner.pk), {"post": "yes"})
    assert refused.status_code == 200
    assert User.objects.filter(pk=owner.pk).exists()
    assert Membership.objects.filter(workspace=workspace, user=owner, role=Role.OWNER).exists()
    assert removals() == []


def test_a_member_is_deleted_and_their_membership_audited(admin_client, workspace, member):
    done = admin_client.post(admin_url(User, "delete", member.pk), {"post": "yes"})
    assert done.status_code == 302
    assert not User.objects.filter(pk=member.pk).exists()
    assert not Membership.objects.filter(workspace=workspace).exclude(role=Role.OWNER).exists()
    assert removals() == [("admin: admin", member.get_username(), Role.MEMBER)]


def test_deleting_every_owner_at_once_is_refused(admin_client, workspace, owner, member):
    Membership.objects.filter(workspace=workspace, user=member).update(role=Role.OWNER)
    page = admin_client.post(admin_url(User), {
        "action": "delete_selected", ACTION_BOX: [owner.pk, member.pk], "post": "yes",
    })
    assert page.status_code == 200
    assert "Cannot delete" in page.content.decode()
    assert User.objects.filter(pk__in=[owner.pk, member.pk]).count() == 2
    assert removals() == []


def test_one_of_two_owners_is_deleted_with_the_action(admin_client, workspace, owner, member):
    Membership.objects.filter(workspace=workspace, user=member).update(role=Role.OWNER)
    done = admin_client.post(admin_url(User), {
        "action": "delete_selected", ACTION_BOX: [owner.pk], "post": "yes",
    })
    assert done.status_code == 302
    assert not User.objects.filter(pk=owner.pk).exists()
    assert list(Membership.objects.filter(workspace=workspace).values_list("role", flat=True)) == [
        Role.OWNER]
    assert removals() == [("admin: admin", owner.get_username(), Role.OWNER)]
