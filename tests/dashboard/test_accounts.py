"""Sign-up (email first), log-in (rate-limited), log-out, password change and the home redirect.

The attacks on both (enumeration, lock-outs, spoofed addresses) are in
tests/reliability/test_account_hardening.py.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.test import override_settings
from django.urls import reverse

from tests.servers import free_port
from workspaces.accounts import DEVICE_SALT
from workspaces.models import Membership, Role, Workspace

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


LINK = re.compile(r"https?://[^/\s]+(/signup/finish/[^/\s]+/)")


def finish_path(body: str) -> str:
    """The path of the finish-sign-up link in an email body."""
    match = LINK.search(body)
    assert match, body
    return match.group(1)


def finish_data(**overrides) -> dict[str, str]:
    data = {
        "username": "nina",
        "password1": "a-long-unusual-passphrase",
        "password2": "a-long-unusual-passphrase",
        "workspace_name": "Nina's team",
    }
    data.update(overrides)
    return data


def emailed_link(client, email: str = "nina@example.com", workspace_name: str = "Nina's team") -> str:
    """Sign-up's first step; returns the path of the link it emailed."""
    response = client.post(reverse("signup"), {"email": email, "workspace_name": workspace_name})
    assert response.status_code == 302
    assert response["Location"] == reverse("signup-sent")
    return finish_path(mail.outbox[-1].body)


def open_link(client, link: str) -> str:
    """Follows the emailed link as a browser does; returns the form's (token-free) path."""
    response = client.get(link)
    assert response.status_code == 302
    assert response["Location"] == reverse("signup-finish")
    return response["Location"]


def start_signup(client, email: str = "nina@example.com", workspace_name: str = "Nina's team") -> str:
    """Sign-up's first step, then its link opened in `client`; returns the form's path."""
    return open_link(client, emailed_link(client, email, workspace_name))


def test_the_signup_page_renders_a_csrf_protected_form_that_asks_for_an_email(client):
    response = client.get(reverse("signup"))
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content
    assert b"Create your account" in response.content
    assert b'name="email"' in response.content
    assert b'name="password1"' not in response.content


def test_signing_up_emails_a_link_then_makes_a_user_and_a_free_workspace_they_own(client):
    path = start_signup(client)
    assert mail.outbox[-1].to == ["nina@example.com"]
    assert not get_user_model().objects.exists()  # nothing is made before the link is used
    sent = client.get(reverse("signup-sent"))
    assert sent.status_code == 200 and b"Check your inbox" in sent.content

    page = client.get(path)
    assert page.status_code == 200
    assert b"nina@example.com" in page.content
    assert b"Nina&#x27;s team" in page.content  # the name given in the first step
    response = client.post(path, finish_data())

    workspace = Workspace.objects.get(name="Nina's team")
    assert response.status_code == 302
    assert response["Location"] == f"/w/{workspace.public_id}/sources/"
    user = get_user_model().objects.get(username="nina")
    assert user.email == "nina@example.com"
    assert workspace.plan.code == "free"
    membership = Membership.objects.get(workspace=workspace, user=user)
    assert membership.role == Role.OWNER
    # Logged in: the home page now leads to the new workspace.
    assert client.get("/")["Location"] == f"/w/{workspace.public_id}/events/"


def test_signing_up_without_a_workspace_name_names_it_after_the_user(client):
    path = start_signup(client, workspace_name="")
    client.post(path, finish_data(workspace_name=""))
    assert Workspace.objects.filter(name="nina's workspace").count() == 1


def test_finishing_signup_refuses_mismatched_passwords_and_creates_nothing(client):
    path = start_signup(client)
    response = client.post(path, finish_data(password2="something-else-entirely"))
    assert response.status_code == 200
    assert b"password fields didn" in response.content
    assert not get_user_model().objects.filter(username="nina").exists()
    assert not Workspace.objects.exists()


def test_finishing_signup_refuses_a_username_in_use(client, owner):
    path = start_signup(client)
    response = client.post(path, finish_data(username=owner.username.upper()))
    assert response.status_code == 200
    assert b"already exists" in response.content
    assert not Workspace.objects.exists()


def test_the_form_without_an_opened_link_asks_for_the_link(client):
    response = client.get(reverse("signup-finish"))
    assert response.status_code == 400
    assert b"Open the link from your email" in response.content
    assert client.post(reverse("signup-finish"), finish_data()).status_code == 400
    assert not get_user_model().objects.exists()


def test_signing_up_with_an_email_in_use_makes_nothing_and_tells_its_owner_by_email(client, owner):
    response = client.post(reverse("signup"), {"email": owner.email.upper()})
    assert response.status_code == 302
    assert response["Location"] == reverse("signup-sent")
    assert not Workspace.objects.exists()
    assert get_user_model().objects.count() == 1
    (message,) = mail.outbox
    assert message.to == [owner.email]
    assert owner.username in message.body
    assert "http://testserver/login/" in message.body
    assert "/signup/finish/" not in message.body


def test_home_sends_a_visitor_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("login")


def test_home_sends_a_member_to_their_first_workspaces_live_page(client, member, workspace):
    client.force_login(member)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == f"/w/{workspace.public_id}/events/"


def test_home_offers_a_new_workspace_to_a_user_without_one(client, make_user):
    client.force_login(make_user("lonely"))
    response = client.get("/")
    assert response["Location"] == reverse("workspace-new")
    created = client.post(reverse("workspace-new"), {"name": "Fresh start"})
    workspace = Workspace.objects.get(name="Fresh start")
    assert created["Location"] == f"/w/{workspace.public_id}/sources/"
    assert workspace.plan.code == "free"


def test_login_with_the_right_password_lands_on_home(client, owner):
    response = client.post(reverse("login"), {"username": owner.username, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_login_leaves_a_device_cookie_only_the_login_form_gets(client, owner):
    response = client.post(reverse("login"), {"username": owner.username, "password": PASSWORD})
    cookie = response.cookies["ackly_device"]
    assert cookie.value
    assert cookie["httponly"] is True
    assert cookie["path"] == reverse("login")
    assert cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == 365 * 24 * 3600
    # Signed; it names the user by a keyed digest, never by the primary key.
    device = signing.loads(cookie.value, salt=DEVICE_SALT)
    assert set(device) == {"u", "n"}
    assert device["u"] != str(owner.pk) and len(device["u"]) == 32


def test_login_with_a_wrong_password_says_so(client, owner):
    response = client.post(reverse("login"), {"username": owner.username, "password": "nope"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content


def test_login_is_rate_limited_per_username_with_a_clear_message(client, owner, settings):
    settings.LOGIN_RATE_LIMIT = "3/m"
    for i in range(3):
        # A different address each time: only the per-username budget is spent.
        response = client.post(
            reverse("login"),
            {"username": owner.username.upper(), "password": "wrong"},
            REMOTE_ADDR=f"10.0.0.{i}",
        )
        assert response.status_code == 200
    response = client.post(
        reverse("login"), {"username": owner.username, "password": PASSWORD}, REMOTE_ADDR="10.0.0.9"
    )
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_login_is_rate_limited_per_address(client, make_user, settings):
    settings.LOGIN_RATE_LIMIT = "3/m"
    for i in range(3):
        client.post(reverse("login"), {"username": f"guess{i}", "password": "x"})
    user = make_user("real")
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content


def test_login_still_works_while_the_shared_cache_is_unreachable(client, owner):
    """The limiter cannot count without Redis: sign-ins go through (passwords still checked)
    rather than every user being told they tried too often."""
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    # Restored when the block ends, before the conftest's cache clean-up looks at the caches.
    unreachable = {"BACKEND": "ackly.resilient_cache.ResilientRedisCache", "LOCATION": dead}
    with override_settings(CACHES={**django_settings.CACHES, "default": unreachable}):
        wrong = client.post(reverse("login"), {"username": owner.username, "password": "nope"})
        assert wrong.status_code == 200 and b"correct username and password" in wrong.content
        right = client.post(reverse("login"), {"username": owner.username, "password": PASSWORD})
        assert right.status_code == 302
        assert right["Location"] == reverse("home")


def test_logout_needs_a_post_and_ends_the_session(client, owner):
    client.force_login(owner)
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_password_change_requires_login(client):
    response = client.get(reverse("password_change"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_password_change_sets_the_new_password(client, owner):
    client.force_login(owner)
    assert client.get(reverse("password_change")).status_code == 200
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "another-long-passphrase",
            "new_password2": "another-long-passphrase",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("password_change_done")
    owner.refresh_from_db()
    assert owner.check_password("another-long-passphrase")
    assert client.get(reverse("password_change_done")).status_code == 200


def test_every_page_links_the_docs_and_staff_see_the_admin_link(client, owner):
    page = client.get(reverse("login")).content.decode()
    assert 'href="/docs/"' in page
    assert 'href="/admin/"' not in page
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    client.force_login(owner)
    assert 'href="/admin/"' in client.get(reverse("password_change")).content.decode()
