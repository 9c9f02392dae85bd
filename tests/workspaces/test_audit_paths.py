"""Every writer logs through audit.record(): the dashboard (the user), the admin ("admin: <user>")
and the management commands ("command"), each with what changed and to which thing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from billing.models import Plan
from sources.models import Key, Source
from tests.test_admin import ACTION_BOX, _workspace_form
from tests.test_admin import url as admin_url
from workspaces.models import AuditEntry, Invitation, Membership, Role, Workspace
from workspaces.services import find_invitation, invite_member

pytestmark = pytest.mark.django_db


def last(workspace, action: str) -> AuditEntry:
    entry = AuditEntry.objects.for_workspace(workspace).filter(action=action).newest_first().first()
    assert entry is not None, f"no {action} entry"
    return entry


def run(*args: str) -> None:
    call_command(*args, stdout=StringIO(), stderr=StringIO())


# --- the dashboard ----------------------------------------------------------------------------


def test_the_dashboard_logs_a_source_with_its_first_key_under_the_users_name(client, owner, workspace):
    client.force_login(owner)
    response = client.post(f"/w/{workspace.public_id}/sources/new/", {"name": "Billing", "slug": ""})
    assert response.status_code == 302
    source = Source.objects.get(workspace=workspace, name="Billing")
    created = last(workspace, "source.created")
    assert (created.actor, created.actor_label) == (owner, "olivia-owner")
    assert created.target_id == source.public_id
    key = last(workspace, "key.created")
    assert key.target_id == Key.objects.get(source=source).public_id
    assert key.details["source"] == source.public_id


def test_the_dashboard_logs_a_rotation_naming_the_keys_that_stop(client, owner, workspace, source_and_key):
    source, issued = source_and_key
    client.force_login(owner)
    response = client.post(
        f"/w/{workspace.public_id}/sources/{source.public_id}/rotate/",
        {"grace_hours": "0", "newest": issued.key.public_id},
    )
    assert response.status_code == 302
    entry = last(workspace, "key.rotated")
    new_key = Key.objects.filter(source=source).order_by("-id").first()
    assert (entry.actor, entry.target_id) == (owner, new_key.public_id)
    assert entry.details["stopping"] == [issued.key.public_id]


def test_the_dashboard_logs_a_revocation_once(client, owner, workspace, source_and_key):
    source, issued = source_and_key
    client.force_login(owner)
    revoke = f"/w/{workspace.public_id}/sources/{source.public_id}/keys/{issued.key.public_id}/revoke/"
    assert client.post(revoke).status_code == 302
    assert client.post(revoke).status_code == 302  # already revoked: nothing changes, nothing logged
    entries = AuditEntry.objects.filter(workspace=workspace, action="key.revoked")
    assert [(e.actor, e.target_id) for e in entries] == [(owner, issued.key.public_id)]


def test_the_dashboard_logs_a_plan_change_with_both_plans(client, owner, free_workspace):
    client.force_login(owner)
    response = client.post(reverse("change-plan", args=[free_workspace.public_id]), {"plan": "starter"})
    assert response.status_code == 302
    entry = last(free_workspace, "plan.changed")
    assert (entry.actor_label, entry.details) == ("olivia-owner", {"from": "free", "to": "starter"})
    assert (entry.target_type, entry.target_id) == ("workspace", free_workspace.public_id)


def test_a_refused_change_logs_nothing(client, member, workspace, source_and_key):
    source, issued = source_and_key
    before = AuditEntry.objects.count()
    client.force_login(member)
    revoke = f"/w/{workspace.public_id}/sources/{source.public_id}/keys/{issued.key.public_id}/revoke/"
    assert client.post(revoke).status_code == 403
    plan_change = client.post(reverse("change-plan", args=[workspace.public_id]), {"plan": "free"})
    assert plan_change.status_code == 403
    assert AuditEntry.objects.count() == before


# --- the admin --------------------------------------------------------------------------------


def test_the_admin_logs_a_revocation_as_admin(admin_client, admin_user, workspace, source_and_key):
    _, issued = source_and_key
    admin_client.post(admin_url(Key), {"action": "revoke_keys", ACTION_BOX: [issued.key.pk]})
    entry = last(workspace, "key.revoked")
    assert (entry.actor, entry.actor_label) == (admin_user, "admin: admin")


def test_the_admin_logs_a_plan_change_as_admin(admin_client, free_workspace):
    starter = Plan.objects.get(code="starter")
    saved = admin_client.post(
        admin_url(Workspace, "change", free_workspace.pk),
        _workspace_form(free_workspace, plan=starter.pk),
    )
    assert saved.status_code == 302
    entry = last(free_workspace, "plan.changed")
    assert (entry.actor_label, entry.details) == ("admin: admin", {"from": "free", "to": "starter"})


def test_the_admin_logs_a_role_change_made_in_the_members_inline(admin_client, workspace, member):
    form = _workspace_form(workspace)
    n = next(i for i in range(10) if form.get(f"memberships-{i}-user") == member.pk)
    form[f"memberships-{n}-role"] = Role.VIEWER
    assert admin_client.post(admin_url(Workspace, "change", workspace.pk), form).status_code == 302
    assert Membership.objects.get(workspace=workspace, user=member).role == Role.VIEWER
    entry = last(workspace, "member.role_changed")
    assert (entry.actor_label, entry.target_id) == ("admin: admin", "mario-member")
    assert entry.details == {"from": "member", "to": "viewer"}


def test_the_admin_logs_a_membership_deleted_on_its_own_page(admin_client, workspace, member):
    membership = Membership.objects.get(workspace=workspace, user=member)
    response = admin_client.post(admin_url(Membership, "delete", membership.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    entry = last(workspace, "member.removed")
    assert (entry.actor_label, entry.target_id) == ("admin: admin", "mario-member")


def test_the_admin_logs_an_invitation_deleted_on_its_own_page(admin_client, workspace, owner):
    invitation, token = invite_member(_owner_of(workspace, owner), "new@example.com", Role.ADMIN)
    response = admin_client.post(admin_url(Invitation, "delete", invitation.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Invitation.objects.filter(pk=invitation.pk).exists()
    assert find_invitation(token) is None  # the emailed link opens nothing now
    entry = last(workspace, "invitation.deleted")
    assert (entry.actor_label, entry.target_type, entry.target_id) == (
        "admin: admin", "invitation", invitation.public_id
    )
    assert entry.details == {"email": "new@example.com", "role": "admin"}


def test_the_admin_logs_each_invitation_of_a_delete_selected(admin_client, workspace, owner):
    actor = _owner_of(workspace, owner)
    invitations = [invite_member(actor, f"{name}@example.com", Role.MEMBER)[0]
                   for name in ("ann", "bob")]
    response = admin_client.post(admin_url(Invitation), {
        "action": "delete_selected", ACTION_BOX: [i.pk for i in invitations], "post": "yes",
    })
    assert response.status_code == 302
    assert not Invitation.objects.exists()
    logged = AuditEntry.objects.filter(action="invitation.deleted")
    assert sorted(logged.values_list("target_id", flat=True)) == sorted(
        i.public_id for i in invitations
    )
    assert set(logged.values_list("actor_label", flat=True)) == {"admin: admin"}


def test_the_admin_logs_each_alert_rule_of_a_source_it_deletes(admin_client, workspace):
    from alerts.models import Rule
    from alerts.services import create_rule
    from sources.services import create_source

    source, _ = create_source(workspace, "Doomed")
    rules = [create_rule(workspace, kind="failure", source=source, name=name)
             for name in ("Failures", "More failures")]
    response = admin_client.post(admin_url(Source, "delete", source.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Source.objects.filter(pk=source.pk).exists() and not Rule.objects.exists()
    logged = AuditEntry.objects.filter(action="rule.deleted")
    assert sorted(logged.values_list("target_id", flat=True)) == sorted(r.public_id for r in rules)
    assert set(logged.values_list("actor_label", flat=True)) == {"admin: admin"}
    assert last(workspace, "source.deleted").target_id == source.public_id


def _owner_of(workspace, owner) -> Membership:
    return Membership.objects.get(workspace=workspace, user=owner)


# --- the management commands ------------------------------------------------------------------


def test_the_key_commands_log_as_command(workspace):
    out = StringIO()
    call_command("createsource", workspace.public_id, "Cron", stdout=out)
    source = Source.objects.get(workspace=workspace, name="Cron")
    run("createkey", source.public_id)
    run("rotatekey", source.public_id)
    key = Key.objects.filter(source=source).order_by("-id").first()
    run("revokekey", key.public_id)
    actions = ["source.created", "key.created", "key.rotated", "key.revoked"]
    for action in actions:
        entry = last(workspace, action)
        assert (entry.actor, entry.actor_label) == (None, "command"), action
    assert last(workspace, "key.revoked").target_id == key.public_id


def test_setplan_logs_as_command(free_workspace):
    run("setplan", free_workspace.public_id, "pro")
    entry = last(free_workspace, "plan.changed")
    assert (entry.actor_label, entry.details) == ("command", {"from": "free", "to": "pro"})


def test_createworkspace_logs_the_new_workspace_as_command(owner):
    run("createworkspace", "Initech", "--owner", "olivia-owner")
    workspace = Workspace.objects.get(name="Initech")
    entry = last(workspace, "workspace.created")
    assert (entry.actor_label, entry.details) == (
        "command", {"name": "Initech", "plan": "free", "owner": "olivia-owner"})
