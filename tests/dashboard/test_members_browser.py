"""Inviting a teammate end to end in headless Chromium against a real Daphne process: the owner
invites from the Members page, the invitee opens the link from the email the server wrote,
creates an account from it, and finds the workspace in the header's switcher."""

from __future__ import annotations

import re
import secrets

import pytest

from tests.dashboard.test_browser_live import WAIT_MS, browser, emailed_to, server, sign_up  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.server]

VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.mark.parametrize("width", VIEWPORTS)
def test_an_invitee_opens_the_emailed_link_joins_and_finds_the_workspace_in_the_switcher(
    server, browser, width  # noqa: F811
):
    base = server["base"]
    owner = f"olga{secrets.token_hex(3)}"
    page, org_id = sign_up(browser, server, owner)
    page.set_viewport_size(VIEWPORTS[width])
    page.click(f'nav a[href="/w/{org_id}/members/"]')
    page.wait_for_url(f"{base}/w/{org_id}/members/")
    invitee = f"ivan{secrets.token_hex(3)}"
    page.fill("#id_email", f"{invitee}@example.com")
    page.select_option("#id_role", "viewer")
    page.click(".members-invite button[type=submit]")
    page.wait_for_selector(f"text=Invited {invitee}@example.com as viewer")
    assert page.locator(f'table.invitations td:text("{invitee}@example.com")').count() == 1

    body = emailed_to(server["mail"], f"{invitee}@example.com")
    link = re.search(r"https?://[^/\s]+(/invite/[A-Za-z0-9_-]+/)", body).group(1)
    guest = browser.new_context(viewport=VIEWPORTS[width]).new_page()
    guest.set_default_timeout(WAIT_MS)
    guest.goto(base + link)
    guest.wait_for_url(f"{base}/invite/")  # the token has left the address bar
    assert f"{owner} team" in guest.inner_text("h1")
    guest.fill("#id_username", invitee)
    guest.fill("#id_password1", "a-long-unusual-passphrase")
    guest.fill("#id_password2", "a-long-unusual-passphrase")
    guest.click("text=Create account and join")
    guest.wait_for_url(f"{base}/w/{org_id}/events/")
    guest.click(".switcher summary")
    switcher = guest.locator(f'.switcher-menu a[data-workspace="{org_id}"]')
    assert switcher.inner_text() == f"{owner} team"
    assert switcher.get_attribute("aria-current") == "true"
    # A viewer reads the members page and sees no form that changes anyone.
    guest.goto(f"{base}/w/{org_id}/members/")
    assert guest.locator("text=Send invitation").count() == 0
    assert guest.locator(f'tr[data-member="{invitee}"] .badge.role-viewer').count() == 1

    # The owner's page lists the new member and no pending invitation.
    page.goto(f"{base}/w/{org_id}/members/")
    assert page.locator(f'tr[data-member="{invitee}"]').count() == 1
    assert page.locator("table.invitations").count() == 0
    guest.context.close()
    page.context.close()
