"""Error pages in the site's layout with a way back; API paths keep the JSON envelope."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


def in_the_layout(page: str) -> bool:
    return 'class="topbar"' in page and 'href="/">Go to your dashboard</a>' in page


@pytest.fixture
def failing_urls(settings):
    settings.ROOT_URLCONF = "tests.error_pages_urls"


def test_a_missing_dashboard_page_is_a_404_in_the_layout_with_a_way_back(client):
    response = client.get("/no/such/page/")

    assert response.status_code == 404
    page = response.content.decode()
    assert in_the_layout(page)
    assert "Page not found" in page and "<code>/no/such/page/</code>" in page


def test_a_missing_api_path_keeps_the_json_envelope(client):
    response = client.get("/api/no-such-thing")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


def test_a_failing_page_is_a_500_in_the_layout_without_the_detail(failing_urls):
    client = Client(raise_request_exception=False)

    response = client.get("/boom/")

    assert response.status_code == 500
    page = response.content.decode()
    assert in_the_layout(page)
    assert "Something went wrong on our side" in page
    assert "secret internal detail" not in page


def test_a_failing_api_path_keeps_the_json_envelope(failing_urls):
    response = Client(raise_request_exception=False).get("/api/boom")

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret internal detail" not in response.content.decode()


def test_a_forbidden_page_is_a_403_in_the_layout(failing_urls, client):
    response = client.get("/forbidden/")

    assert response.status_code == 403
    page = response.content.decode()
    assert in_the_layout(page) and "You cannot do that here" in page
    assert "secret reason" not in page


def test_a_form_posted_without_its_csrf_token_is_a_403_in_the_layout_that_changes_nothing(
    owner, workspace
):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)

    response = browser.post(reverse("workspace-new"), {"name": "Sneaky"})

    assert response.status_code == 403
    page = response.content.decode()
    assert in_the_layout(page) and "CSRF" in page and "This form has expired" in page
    assert not owner.memberships.filter(workspace__name="Sneaky").exists()


def fresh_token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_a_stale_login_tab_gets_the_login_page_again_and_its_next_submit_signs_in(owner):
    tab = Client(enforce_csrf_checks=True)
    stale = fresh_token(tab.get(reverse("login")).content.decode())
    tab.cookies.clear()  # the CSRF cookie is gone (or rotated by a sign-in in another tab)

    refused = tab.post(reverse("login"), {
        "username": owner.username, "password": PASSWORD, "next": "/workspaces/new/",
        "csrfmiddlewaretoken": stale,
    })

    assert refused.status_code == 403
    assert SESSION_KEY not in tab.session  # never signed in on a failed check
    page = refused.content.decode()
    assert "This sign-in form had expired" in page
    assert f'value="{owner.username}"' in page
    assert 'name="next" value="/workspaces/new/"' in page
    assert PASSWORD not in page

    signed_in = tab.post(reverse("login"), {
        "username": owner.username, "password": PASSWORD, "next": "/workspaces/new/",
        "csrfmiddlewaretoken": fresh_token(page),
    })

    assert (signed_in.status_code, signed_in["Location"]) == (302, "/workspaces/new/")
    assert int(tab.session[SESSION_KEY]) == owner.pk


def test_a_stale_login_page_drops_a_next_that_leaves_the_site(owner):
    tab = Client(enforce_csrf_checks=True)
    page = tab.post(
        reverse("login"), {"username": owner.username, "next": "https://evil.example/"}
    ).content.decode()
    assert 'name="next" value=""' in page
    assert "evil.example" not in page
