"""The header's workspace switcher and `/`: every workspace of the user's, and only those."""

from __future__ import annotations

import re

import pytest

from workspaces.models import Membership, Role
from workspaces.services import create_workspace

pytestmark = pytest.mark.django_db


def live_url(ws) -> str:
    return f"/w/{ws.public_id}/events/"


def switcher_ids(response) -> list[str]:
    """The workspaces the switcher links to, in the order shown."""
    page = response.content.decode()
    menu = re.search(r'<ul class="switcher-menu".*?</ul>', page, re.S)
    assert menu, "no workspace switcher on the page"
    return re.findall(r'data-workspace="(org_[0-9A-Z]+)"', menu.group(0))


def current_id(response) -> list[str]:
    page = response.content.decode()
    return re.findall(r'aria-current="true" data-workspace="(org_[0-9A-Z]+)"', page)


@pytest.fixture
def joined(member, other_workspace):
    """A workspace of someone else's that the member was added to as an admin."""
    Membership.objects.create(workspace=other_workspace, user=member, role=Role.ADMIN)
    return other_workspace


def test_the_switcher_lists_exactly_the_users_workspaces_with_the_current_one_marked(
    client, member, workspace, joined
):
    client.force_login(member)

    response = client.get(live_url(workspace))

    assert response.status_code == 200
    assert sorted(switcher_ids(response)) == sorted([workspace.public_id, joined.public_id])
    assert current_id(response) == [workspace.public_id]
    page = response.content.decode()
    assert f'href="{live_url(joined)}"' in page
    assert 'href="/workspaces/new/"' in page and "New workspace" in page


@pytest.mark.parametrize("page", ["events", "sources", "workers", "usage"])
def test_every_workspace_page_carries_the_switcher(client, owner, workspace, free_workspace, page):
    client.force_login(owner)

    response = client.get(f"/w/{workspace.public_id}/{page}/")

    assert response.status_code == 200
    assert sorted(switcher_ids(response)) == sorted([workspace.public_id, free_workspace.public_id])


def test_an_outsiders_workspace_never_appears_in_the_switcher(
    client, member, outsider, workspace, other_workspace
):
    create_workspace("Initech", "free", owner=outsider)
    client.force_login(member)

    response = client.get(live_url(workspace))

    assert switcher_ids(response) == [workspace.public_id]
    page = response.content.decode()
    assert other_workspace.public_id not in page
    assert "Globex" not in page and "Initech" not in page


def test_a_removed_membership_disappears_from_the_switcher_and_from_home(
    client, member, workspace, joined
):
    client.force_login(member)
    assert client.get(live_url(joined)).status_code == 200  # now the last visited

    Membership.objects.filter(workspace=joined, user=member).delete()

    response = client.get(live_url(workspace))
    assert switcher_ids(response) == [workspace.public_id]
    assert joined.public_id not in response.content.decode()
    assert client.get(live_url(joined)).status_code == 404
    assert client.get("/")["Location"] == live_url(workspace)


def test_home_opens_the_last_visited_workspace(client, owner, workspace, free_workspace):
    client.force_login(owner)
    assert client.get("/")["Location"] == live_url(workspace)  # the first one, before any visit

    client.get(f"/w/{free_workspace.public_id}/sources/")
    assert client.get("/")["Location"] == live_url(free_workspace)

    client.get(live_url(workspace))
    assert client.get("/")["Location"] == live_url(workspace)


def test_home_falls_back_to_the_first_membership_when_the_remembered_one_is_foreign(
    client, member, workspace, other_workspace
):
    client.force_login(member)
    session = client.session
    session["last_workspace"] = other_workspace.public_id  # never a member there
    session.save()

    assert client.get("/")["Location"] == live_url(workspace)


def test_a_page_the_user_may_not_see_is_not_remembered(client, member, workspace, other_workspace):
    client.force_login(member)
    client.get(live_url(workspace))

    assert client.get(live_url(other_workspace)).status_code == 404

    assert client.session["last_workspace"] == workspace.public_id
    assert client.get("/")["Location"] == live_url(workspace)


def test_logging_in_again_leads_to_the_last_visited_workspace(
    client, owner, workspace, free_workspace
):
    credentials = {"username": owner.username, "password": "correct-horse-battery"}
    assert client.post("/login/", credentials).status_code == 302
    client.get(live_url(free_workspace))

    response = client.post("/login/", credentials, follow=True)

    assert response.redirect_chain[-1][0] == live_url(free_workspace)
