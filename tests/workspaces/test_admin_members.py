"""The Django admin keeps the members page's rule: a workspace always keeps an owner.

Through the real admin (Django's test client as a superuser): the membership's own page, its
delete page, the "delete selected" action and the members inline of the workspace's page.
"""

from __future__ import annotations

import pytest

from tests.test_admin import ACTION_BOX, _workspace_form
from tests.test_admin import url as admin_url
from workspaces.models import AuditEntry, Membership, Role, Workspace
from workspaces.services import LAST_OWNER

pytestmark = pytest.mark.django_db

# Django's admin escapes the apostrophe of "workspace's" in form errors.
REFUSAL = LAST_OWNER.split(":")[0]


def membership_of(workspace, user) -> Membership:
    return Membership.objects.get(workspace=workspace, user=user)


def member_changes() -> int:
    return AuditEntry.objects.filter(action__startswith="member.").count()


def _membership_form(membership: Membership, **changes) -> dict:
    return {"workspace": membership.workspace_id, "user": membership.user_id,
            "role": membership.role, **changes}


def _row(form: dict, user) -> int:
    return next(i for i in range(10) if form.get(f"memberships-{i}-user") == user.pk)


# --- the membership's own pages --------------------------------------------------------------


def test_the_last_owner_cannot_be_demoted_on_the_membership_page(admin_client, workspace, owner):
    membership = membership_of(workspace, owner)
    before = member_changes()
    page = admin_client.post(admin_url(Membership, "change", membership.pk),
                             _membership_form(membership, role=Role.ADMIN))
    assert page.status_code == 200
    assert REFUSAL in page.content.decode()
    assert membership_of(workspace, owner).role == Role.OWNER
    assert member_changes() == before


def test_the_last_owner_cannot_be_moved_to_another_workspace(
    admin_client, workspace, owner, other_workspace
):
    membership = membership_of(workspace, owner)
    page = admin_client.post(admin_url(Membership, "change", membership.pk),
                             _membership_form(membership, workspace=other_workspace.pk))
    assert page.status_code == 200
    assert REFUSAL in page.content.decode()
    assert membership_of(workspace, owner).role == Role.OWNER


def test_one_of_two_owners_may_be_demoted_on_the_membership_page(
    admin_client, workspace, owner, member
):
    Membership.objects.filter(workspace=workspace, user=member).update(role=Role.OWNER)
    membership = membership_of(workspace, owner)
    saved = admin_client.post(admin_url(Membership, "change", membership.pk),
                              _membership_form(membership, role=Role.ADMIN))
    assert saved.status_code == 302
    assert membership_of(workspace, owner).role == Role.ADMIN
    entry = AuditEntry.objects.get(workspace=workspace, action="member.role_changed")
    assert (entry.actor_label, entry.details) == ("admin: admin", {"from": "owner", "to": "admin"})


def test_the_last_owner_cannot_be_deleted_on_the_delete_page(admin_client, workspace, owner):
    membership = membership_of(workspace, owner)
    page = admin_client.get(admin_url(Membership, "delete", membership.pk))
    assert page.status_code == 200
    assert "Cannot delete" in page.content.decode()
    assert REFUSAL in page.content.decode()
    refused = admin_client.post(admin_url(Membership, "delete", membership.pk), {"post": "yes"})
    assert refused.status_code == 200
    assert Membership.objects.filter(pk=membership.pk).exists()
    assert not AuditEntry.objects.filter(action="member.removed").exists()


def test_deleting_every_owner_at_once_is_refused(admin_client, workspace, owner, member):
    Membership.objects.filter(workspace=workspace, user=member).update(role=Role.OWNER)
    both = [membership_of(workspace, owner).pk, membership_of(workspace, member).pk]
    page = admin_client.post(admin_url(Membership), {
        "action": "delete_selected", ACTION_BOX: both, "post": "yes",
    })
    assert page.status_code == 200
    assert "Cannot delete" in page.content.decode()
    assert Membership.objects.filter(pk__in=both).count() == 2
    assert not AuditEntry.objects.filter(action="member.removed").exists()


def test_deleting_one_of_two_owners_at_once_is_allowed(admin_client, workspace, owner, member):
    Membership.objects.filter(workspace=workspace, user=member).update(role=Role.OWNER)
    mine = membership_of(workspace, owner).pk
    done = admin_client.post(admin_url(Membership), {
        "action": "delete_selected", ACTION_BOX: [mine], "post": "yes",
    })
    assert done.status_code == 302
    assert not Membership.objects.filter(pk=mine).exists()
    entry = AuditEntry.objects.get(workspace=workspace, action="member.removed")
    assert (entry.actor_label, entry.target_id) == ("admin: admin", "olivia-owner")


# --- the workspace page's members inline -----------------------------------------------------


def test_the_inline_cannot_demote_the_last_owner(admin_client, workspace, owner):
    form = _workspace_form(workspace)
    form[f"memberships-{_row(form, owner)}-role"] = Role.MEMBER
    before = member_changes()
    page = admin_client.post(admin_url(Workspace, "change", workspace.pk), form)
    assert page.status_code == 200
    assert REFUSAL in page.content.decode()
    assert membership_of(workspace, owner).role == Role.OWNER
    assert member_changes() == before


def test_the_inline_cannot_delete_the_last_owner(admin_client, workspace, owner):
    form = _workspace_form(workspace)
    form[f"memberships-{_row(form, owner)}-DELETE"] = "on"
    page = admin_client.post(admin_url(Workspace, "change", workspace.pk), form)
    assert page.status_code == 200
    assert REFUSAL in page.content.decode()
    assert membership_of(workspace, owner).role == Role.OWNER


def test_the_inline_cannot_demote_one_owner_and_delete_the_other_in_one_save(
    admin_client, workspace, owner, member
):
    Membership.objects.filter(workspace=workspace, user=member).update(role=Role.OWNER)
    form = _workspace_form(workspace)
    form[f"memberships-{_row(form, owner)}-role"] = Role.ADMIN
    form[f"memberships-{_row(form, member)}-DELETE"] = "on"
    page = admin_client.post(admin_url(Workspace, "change", workspace.pk), form)
    assert page.status_code == 200
    assert REFUSAL in page.content.decode()
    assert Membership.objects.owners().filter(workspace=workspace).count() == 2


def test_the_inline_demotes_one_of_two_owners(admin_client, workspace, owner, member):
    Membership.objects.filter(workspace=workspace, user=member).update(role=Role.OWNER)
    form = _workspace_form(workspace)
    form[f"memberships-{_row(form, owner)}-role"] = Role.ADMIN
    assert admin_client.post(admin_url(Workspace, "change", workspace.pk), form).status_code == 302
    assert membership_of(workspace, owner).role == Role.ADMIN
    assert membership_of(workspace, member).role == Role.OWNER
