"""Invitations: an emailed link valid 7 days, accepted by an existing account (log in, then accept)
or a new one (sign-up's form, from the link); expired, forged, used and revoked links each get a
clear page; the link's token never reaches a page or a logged URL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from workspaces.models import AuditEntry, Invitation, Membership, Role, Workspace

pytestmark = pytest.mark.django_db
LINK = re.compile(r"https?://[^/\s]+(/invite/([A-Za-z0-9_-]+)/)")


def members_url(workspace, action: str = "") -> str:
    return f"/w/{workspace.public_id}/members/{action}"


def invite(client, workspace, email: str, role: str = Role.MEMBER):
    return client.post(members_url(workspace, "invite/"), {"email": email, "role": role})


def link_in(mail) -> str:
    found = LINK.search(mail.body)
    assert found, mail.body
    return found.group(1)


@pytest.fixture
def invited(client, owner, workspace, mailoutbox):
    """The owner invites newcomer@example.com as a member; the emailed link's path."""
    client.force_login(owner)
    assert invite(client, workspace, "Newcomer@Example.com").status_code == 302
    client.logout()
    return link_in(mailoutbox[-1])


def test_an_owner_invites_by_email_and_the_invitation_is_pending(client, owner, workspace, mailoutbox):
    client.force_login(owner)
    response = invite(client, workspace, "newcomer@example.com", Role.ADMIN)
    assert response.status_code == 302
    (mail,) = mailoutbox
    assert mail.to == ["newcomer@example.com"]
    assert "Acme" in mail.subject and "as admin" in mail.body and "7 days" in mail.body
    invitation = Invitation.objects.get(workspace=workspace)
    assert (invitation.email, invitation.role, invitation.invited_by) == (
        "newcomer@example.com", Role.ADMIN, owner)
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)
    token = LINK.search(mail.body).group(2)
    assert token not in invitation.digest  # only the digest is stored
    page = client.get(members_url(workspace)).content.decode()
    assert "newcomer@example.com" in page and invitation.public_id in page
    entry = AuditEntry.objects.get(workspace=workspace, action="member.invited")
    assert (entry.actor, entry.target_id, entry.details) == (
        owner, invitation.public_id, {"email": "newcomer@example.com", "role": "admin"})


def test_an_existing_account_logs_in_then_accepts(client, outsider, workspace, invited):
    opened = client.get(invited)
    assert opened.status_code == 302 and opened["Location"] == reverse("invite-accept")
    page = client.get(reverse("invite-accept"))
    assert page.status_code == 200
    assert "Log in to accept" in page.content.decode()
    # Not signed in yet: accepting sends to the login page, which comes back here.
    refused = client.post(reverse("invite-accept"))
    assert refused["Location"] == f"{reverse('login')}?next={reverse('invite-accept')}"
    logged_in = client.post(
        f"{reverse('login')}?next={reverse('invite-accept')}",
        {"username": "oscar-outsider", "password": "correct-horse-battery"},
    )
    assert logged_in["Location"] == reverse("invite-accept")
    accepted = client.post(reverse("invite-accept"))
    assert accepted.status_code == 302
    assert accepted["Location"] == reverse("live-events", args=[workspace.public_id])
    membership = Membership.objects.get(workspace=workspace, user=outsider)
    assert membership.role == Role.MEMBER
    invitation = Invitation.objects.get(workspace=workspace)
    assert invitation.accepted_by == outsider and invitation.accepted_at is not None
    entry = AuditEntry.objects.get(workspace=workspace, action="member.joined")
    assert (entry.actor, entry.target_id, entry.details["role"]) == (outsider, "oscar-outsider", "member")
    # The switcher lists the workspace now.
    live = client.get(accepted["Location"]).content.decode()
    assert f'data-workspace="{workspace.public_id}"' in live


def test_a_new_account_signs_up_from_the_invitation_and_joins_without_a_workspace_of_its_own(
    client, workspace, invited
):
    client.get(invited)
    page = client.get(reverse("invite-accept")).content.decode()
    assert "Create account and join" in page and "Workspace name" not in page
    password = "a-long-unusual-passphrase"
    response = client.post(reverse("invite-signup"), {
        "username": "newcomer", "password1": password, "password2": password,
    })
    assert response.status_code == 302
    assert response["Location"] == reverse("live-events", args=[workspace.public_id])
    user = get_user_model().objects.get(username="newcomer")
    assert user.email == "newcomer@example.com"
    assert list(Membership.objects.filter(user=user).values_list("workspace", "role")) == [
        (workspace.pk, Role.MEMBER)]
    assert not Workspace.objects.filter(memberships__user=user).exclude(pk=workspace.pk).exists()
    assert client.get(response["Location"]).status_code == 200  # signed in
    assert AuditEntry.objects.filter(workspace=workspace, action="member.joined", actor=user).exists()


def test_a_new_account_with_a_bad_password_is_not_made_and_the_invitation_stays_usable(
    client, workspace, invited
):
    client.get(invited)
    response = client.post(reverse("invite-signup"), {
        "username": "newcomer", "password1": "123", "password2": "123",
    })
    assert response.status_code == 400
    assert not get_user_model().objects.filter(username="newcomer").exists()
    assert Invitation.objects.pending().filter(workspace=workspace).count() == 1


def test_signing_up_from_an_invitation_to_an_address_with_an_account_says_to_log_in(
    client, owner, workspace, make_user, mailoutbox
):
    make_user("already")  # already@example.com
    client.force_login(owner)
    invite(client, workspace, "already@example.com")
    client.logout()
    client.get(link_in(mailoutbox[-1]))
    page = client.get(reverse("invite-accept")).content.decode()
    assert "has an account already" in page and "Create account and join" not in page
    response = client.post(reverse("invite-signup"), {
        "username": "another", "password1": "a-long-unusual-passphrase",
        "password2": "a-long-unusual-passphrase",
    })
    assert response.status_code == 409
    assert not get_user_model().objects.filter(username="another").exists()


def test_an_expired_link_gets_a_clear_page(client, outsider, workspace, invited):
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(invited)
    assert response.status_code == 410
    assert "This invitation has expired" in response.content.decode()


def test_an_invitation_that_expires_after_its_link_was_opened_is_refused_on_accept(
    client, outsider, workspace, invited
):
    client.get(invited)
    client.force_login(outsider)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.post(reverse("invite-accept"))
    assert response.status_code == 410
    assert not Membership.objects.filter(workspace=workspace, user=outsider).exists()


def test_a_forged_link_gets_a_clear_page_that_does_not_echo_it(client, invited):
    forged = invited[:-6] + "xxxxx/"
    response = client.get(forged)
    assert response.status_code == 400
    body = response.content.decode()
    assert "This invitation link is not valid" in body
    assert forged.split("/")[2] not in body


def test_a_used_link_gets_a_clear_page(client, outsider, make_user, workspace, invited):
    client.force_login(outsider)
    client.get(invited)
    assert client.post(reverse("invite-accept")).status_code == 302
    client.force_login(make_user("second-person"))
    response = client.get(invited)
    assert response.status_code == 410
    assert "This invitation has been used" in response.content.decode()
    assert not Membership.objects.filter(workspace=workspace, user__username="second-person").exists()


def test_a_revoked_invitation_gets_a_clear_page_and_is_no_longer_pending(
    client, owner, outsider, workspace, invited
):
    invitation = Invitation.objects.get(workspace=workspace)
    client.force_login(owner)
    response = client.post(members_url(workspace, "invitations/revoke/"),
                           {"invitation": invitation.public_id})
    assert response.status_code == 302
    assert invitation.public_id not in client.get(members_url(workspace)).content.decode()
    client.force_login(outsider)
    refused = client.get(invited)
    assert refused.status_code == 410
    assert "withdrawn" in refused.content.decode()
    assert AuditEntry.objects.filter(workspace=workspace, action="invitation.revoked").count() == 1


def test_a_second_invitation_to_the_same_address_replaces_the_first(
    client, owner, outsider, workspace, invited, mailoutbox
):
    client.force_login(owner)
    invite(client, workspace, "newcomer@example.com", Role.VIEWER)
    second = link_in(mailoutbox[-1])
    client.force_login(outsider)
    assert client.get(invited).status_code == 410
    client.get(second)
    client.post(reverse("invite-accept"))
    assert Membership.objects.get(workspace=workspace, user=outsider).role == Role.VIEWER


def test_the_accept_page_without_an_opened_link_says_to_open_it(client, outsider):
    client.force_login(outsider)
    response = client.get(reverse("invite-accept"))
    assert response.status_code == 400
    assert "Open the link from your email" in response.content.decode()


def test_inviting_a_member_is_a_form_error(client, owner, member, workspace, mailoutbox):
    client.force_login(owner)
    response = invite(client, workspace, member.email)
    assert response.status_code == 400
    assert "already a member" in response.content.decode()
    assert not Invitation.objects.exists() and not mailoutbox


def test_an_admin_invites_up_to_admin_but_not_an_owner(client, admin_member, workspace, mailoutbox):
    client.force_login(admin_member)
    assert invite(client, workspace, "a@example.com", Role.OWNER).status_code == 400
    assert invite(client, workspace, "b@example.com", Role.ADMIN).status_code == 302
    assert list(Invitation.objects.values_list("email", "role")) == [("b@example.com", "admin")]


@pytest.mark.parametrize("persona", ["member", "viewer"])
def test_members_and_viewers_cannot_invite(client, request, workspace, persona, mailoutbox):
    client.force_login(request.getfixturevalue(persona))
    assert invite(client, workspace, "x@example.com").status_code == 403
    assert not Invitation.objects.exists() and not mailoutbox
    page = client.get(members_url(workspace)).content.decode()
    assert "Send invitation" not in page


def test_an_unsendable_invitation_is_withdrawn_and_says_so(client, owner, workspace, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens there
    client.force_login(owner)
    response = invite(client, workspace, "newcomer@example.com")
    assert response.status_code == 302
    assert "could not send" in client.get(response["Location"]).content.decode()
    assert not Invitation.objects.pending().exists()
