"""The members page: roles changed by each role as the table allows, removal and leaving, the last
owner kept, the workspace deleted by its owner only, and the audit log for owners and admins."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from sources.models import Source
from sources.services import create_source
from workspaces import audit
from workspaces.models import AuditEntry, Membership, Role, Workspace
from workspaces.roles import Permission, allows, grantable_roles
from workspaces.services import LAST_OWNER, MemberChangeRefused, change_role

pytestmark = pytest.mark.django_db


def url(workspace, path: str = "members/") -> str:
    return f"/w/{workspace.public_id}/{path}"


def role_of(workspace, user) -> str | None:
    return Membership.objects.filter(workspace=workspace, user=user).values_list("role", flat=True).first()


def test_every_member_sees_the_members_and_their_roles(client, owner, member, viewer, workspace):
    client.force_login(viewer)
    response = client.get(url(workspace))
    assert response.status_code == 200
    page = response.content.decode()
    for name in ("olivia-owner", "mario-member", "vera-viewer"):
        assert f'data-member="{name}"' in page
    assert "Change role" not in page and "Remove" not in page  # a viewer gets no forms


def test_the_roles_table_follows_the_one_permission_table():
    assert allows(Role.VIEWER, Permission.VIEW) and not allows(Role.VIEWER, Permission.MANAGE_SOURCES)
    assert [p for p in Permission if allows(Role.MEMBER, p)] == [Permission.VIEW]
    assert allows(Role.ADMIN, Permission.MANAGE_MEMBERS) and not allows(Role.ADMIN, Permission.CHANGE_PLAN)
    assert all(allows(Role.OWNER, p) for p in Permission)
    assert grantable_roles(Role.ADMIN) == [Role.ADMIN, Role.MEMBER, Role.VIEWER]
    assert grantable_roles(Role.MEMBER) == []


def test_can_manage_is_read_from_the_table(workspace, owner, member, admin_member, viewer):
    managers = {m.user.username: m.can_manage for m in Membership.objects.filter(workspace=workspace)}
    assert managers == {"olivia-owner": True, "ada-admin": True, "mario-member": False,
                        "vera-viewer": False}


# Who may give whom which role: (actor, target's role, new role) -> allowed.
ROLE_CHANGES = [
    ("owner", "member", "admin", True),
    ("owner", "member", "owner", True),
    ("owner", "admin", "viewer", True),
    ("admin", "member", "admin", True),
    ("admin", "viewer", "member", True),
    ("admin", "member", "owner", False),   # only an owner makes owners
    ("admin", "owner", "admin", False),    # nor removes them
    ("member", "viewer", "member", False),
    ("viewer", "member", "viewer", False),
]


@pytest.mark.parametrize(("actor_role", "target_role", "new_role", "allowed"), ROLE_CHANGES)
def test_a_role_change_is_allowed_only_as_the_table_says(
    client, make_user, workspace, actor_role, target_role, new_role, allowed
):
    actor = make_user("actor")
    Membership.objects.create(workspace=workspace, user=actor, role=actor_role)
    target = make_user("target")
    Membership.objects.create(workspace=workspace, user=target, role=target_role)
    client.force_login(actor)
    response = client.post(url(workspace, "members/role/"), {"member": "target", "role": new_role})
    managers = (Role.OWNER, Role.ADMIN)
    assert response.status_code == (302 if actor_role in managers else 403)
    assert role_of(workspace, target) == (new_role if allowed else target_role)
    logged = AuditEntry.objects.filter(workspace=workspace, action="member.role_changed")
    assert logged.exists() == allowed
    if allowed:
        assert logged.get().details == {"from": target_role, "to": new_role}


def test_an_owner_transfers_ownership_then_steps_down(client, owner, member, workspace):
    client.force_login(owner)
    client.post(url(workspace, "members/role/"), {"member": "mario-member", "role": "owner"})
    client.post(url(workspace, "members/role/"), {"member": "olivia-owner", "role": "admin"})
    assert (role_of(workspace, member), role_of(workspace, owner)) == ("owner", "admin")


def test_the_last_owner_cannot_be_demoted_leave_or_be_removed(client, owner, admin_member, workspace):
    client.force_login(owner)
    demoted = client.post(url(workspace, "members/role/"), {"member": "olivia-owner", "role": "admin"})
    assert "A workspace needs an owner" in client.get(demoted["Location"]).content.decode()
    left = client.post(url(workspace, "members/leave/"))
    assert left["Location"] == url(workspace)
    assert role_of(workspace, owner) == Role.OWNER
    client.force_login(admin_member)
    client.post(url(workspace, "members/remove/"), {"member": "olivia-owner"})
    assert role_of(workspace, owner) == Role.OWNER
    assert not AuditEntry.objects.filter(action__in=["member.left", "member.removed"]).exists()


def test_the_service_refuses_the_last_owners_demotion_by_themselves(workspace, owner):
    membership = Membership.objects.get(workspace=workspace, user=owner)
    with pytest.raises(MemberChangeRefused, match=LAST_OWNER):
        change_role(membership, membership, Role.VIEWER)


def test_one_of_two_owners_may_leave(client, owner, member, workspace):
    Membership.objects.filter(user=member).update(role=Role.OWNER)
    client.force_login(owner)
    response = client.post(url(workspace, "members/leave/"))
    assert response["Location"] == reverse("home")
    assert role_of(workspace, owner) is None
    entry = AuditEntry.objects.get(workspace=workspace, action="member.left")
    assert (entry.actor, entry.target_id) == (owner, "olivia-owner")


@pytest.mark.parametrize("persona", ["member", "viewer"])
def test_members_and_viewers_may_leave(client, request, workspace, persona):
    user = request.getfixturevalue(persona)
    client.force_login(user)
    assert client.post(url(workspace, "members/leave/"))["Location"] == reverse("home")
    assert role_of(workspace, user) is None
    assert client.get(url(workspace)).status_code == 404  # and the workspace is gone for them


def test_an_admin_removes_a_member_but_not_an_owner(client, admin_member, member, owner, workspace):
    client.force_login(admin_member)
    assert client.post(url(workspace, "members/remove/"), {"member": "mario-member"}).status_code == 302
    assert role_of(workspace, member) is None
    client.post(url(workspace, "members/remove/"), {"member": "olivia-owner"})
    assert role_of(workspace, owner) == Role.OWNER
    entry = AuditEntry.objects.get(workspace=workspace, action="member.removed")
    assert (entry.actor, entry.target_id, entry.details) == (admin_member, "mario-member", {"role": "member"})


def test_a_member_of_another_workspace_cannot_be_named(client, owner, outsider, workspace, other_workspace):
    client.force_login(owner)
    client.post(url(workspace, "members/remove/"), {"member": "oscar-outsider"})
    client.post(url(workspace, "members/role/"), {"member": "oscar-outsider", "role": "viewer"})
    assert role_of(other_workspace, outsider) == Role.OWNER


def test_only_an_owner_deletes_the_workspace_and_only_with_its_name(
    client, owner, admin_member, workspace, source
):
    client.force_login(admin_member)
    assert client.get(url(workspace, "delete/")).status_code == 403
    assert client.post(url(workspace, "delete/"), {"name": "Acme"}).status_code == 403
    client.force_login(owner)
    assert "Delete this workspace" in client.get(url(workspace)).content.decode()
    wrong = client.post(url(workspace, "delete/"), {"name": "acme"})
    assert wrong.status_code == 400 and "exactly" in wrong.content.decode()
    assert Workspace.objects.filter(pk=workspace.pk).exists()
    done = client.post(url(workspace, "delete/"), {"name": "Acme"})
    assert done["Location"] == reverse("home")
    assert not Workspace.objects.filter(pk=workspace.pk).exists()
    assert not Source.objects.filter(pk=source.pk).exists()


@pytest.mark.parametrize("persona", ["owner", "admin_member"])
def test_owners_and_admins_read_the_audit_log_newest_first(client, request, workspace, persona):
    create_source(workspace, "First", actor=audit.COMMAND)
    create_source(workspace, "Second", actor=audit.COMMAND)
    client.force_login(request.getfixturevalue(persona))
    page = client.get(url(workspace, "audit/")).content.decode()
    assert page.index("Second") < page.index("First")
    assert "command" in page and "source.created" in page


@pytest.mark.parametrize("persona", ["member", "viewer"])
def test_members_and_viewers_get_403_on_the_audit_log(client, request, workspace, persona):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(url(workspace, "audit/")).status_code == 403
    assert "Audit log" not in client.get(url(workspace)).content.decode()


def test_the_audit_log_is_paginated_and_shows_only_its_workspace(
    client, owner, workspace, other_workspace
):
    for n in range(55):
        audit.record(workspace, "plan.changed", actor=audit.COMMAND, details={"n": n})
    audit.record(other_workspace, "plan.changed", actor=audit.COMMAND, details={"n": "globex"})
    client.force_login(owner)
    first = client.get(url(workspace, "audit/")).content.decode()
    assert "n: <span class=\"mono\">54</span>" in first and "?page=2" in first
    second = client.get(url(workspace, "audit/") + "?page=2").content.decode()
    assert "n: <span class=\"mono\">0</span>" in second
    assert "globex" not in first + second


def test_purge_expired_drops_audit_entries_past_the_plans_retention(workspace, free_workspace):
    old = timezone.now() - timedelta(days=8)  # past Free's 7 days, within Pro's 90
    for ws in (workspace, free_workspace):
        audit.record(ws, "plan.changed", actor=audit.COMMAND)
        AuditEntry.objects.filter(workspace=ws).update(at=old)
        audit.record(ws, "key.created", actor=audit.COMMAND)
    call_command("purge_expired", stdout=StringIO())
    assert AuditEntry.objects.filter(workspace=free_workspace).count() == 1
    assert AuditEntry.objects.filter(workspace=workspace).count() == 3  # incl. workspace.created


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner(owner, member, workspace):
    """The workspace row's lock decides the two changes one after the other."""
    assert connection.vendor == "postgresql"
    Membership.objects.filter(user=member).update(role=Role.OWNER)
    pair = [Membership.objects.get(workspace=workspace, user=u) for u in (owner, member)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(actor: Membership, target: Membership) -> None:
        barrier.wait()
        try:
            change_role(actor, target, Role.ADMIN)
            outcomes.append("done")
        except MemberChangeRefused:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=demote, args=(pair[0], pair[1])),
               threading.Thread(target=demote, args=(pair[1], pair[0]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["done", "refused"]
    assert Membership.objects.owners().filter(workspace=workspace).count() == 1


# --- sockets ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_removal_on_the_members_page_closes_the_members_sockets_and_a_viewer_stays_live(
    owner, member, viewer, workspace
):
    from tests.dashboard.test_consumer import broadcast, path_for, through_asgi

    def signed_in(user) -> Client:
        browser = Client()
        browser.force_login(user)
        connections.close_all()
        return browser

    def cookie(browser: Client) -> bytes:
        name = settings.SESSION_COOKIE_NAME
        return f"{name}={browser.cookies[name].value}".encode()

    sockets = {}
    for user in (member, viewer):
        browser = await asyncio.to_thread(signed_in, user)
        sockets[user.username] = through_asgi(path_for(workspace), cookie(browser))
        assert (await sockets[user.username].connect())[0]
    owners_browser = await asyncio.to_thread(signed_in, owner)

    def remove() -> int:
        try:
            removal = {"member": "mario-member"}
            return owners_browser.post(url(workspace, "members/remove/"), removal).status_code
        finally:
            connections.close_all()

    assert await asyncio.to_thread(remove) == 302
    closed = await sockets["mario-member"].receive_output(timeout=1)
    assert closed == {"type": "websocket.close", "code": 4403}
    await broadcast(workspace, {"type": "events", "items": [{"id": "for-the-viewer"}]})
    heard = await sockets["vera-viewer"].receive_json_from(timeout=2)
    assert heard["items"] == [{"id": "for-the-viewer"}]
    await sockets["vera-viewer"].disconnect()
    await database_sync_to_async(connections.close_all)()


def test_a_deleted_workspaces_keys_stop_on_the_next_request(
    client, owner, workspace, source_and_key, shared_auth_cache
):
    from tests.keys import refusal

    _, issued = source_and_key
    assert refusal(issued.secret) is None  # cached now
    client.force_login(owner)
    assert client.post(url(workspace, "delete/"), {"name": "Acme"}).status_code == 302
    assert refusal(issued.secret) == "invalid_key"
