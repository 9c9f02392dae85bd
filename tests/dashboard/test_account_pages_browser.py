"""The account pages end to end in headless Chromium, at 1280×800 and 390×844, against Daphne:
a stale login tab that signs in on its second submit, a password reset from the emailed link,
a plan change that asks first and shows in the audit log, and (on a DEBUG=0 server, where
Django's debug pages are off) the site's own 404 with a way back."""

from __future__ import annotations

import email
import re
import secrets

import pytest

try:  # The Daphne-process and Chromium fixtures live with the live-page browser test.
    from tests.dashboard.test_browser_live import (  # noqa: F401
        WAIT_MS,
        browser,
        server,
        sign_up,
    )
except ImportError:  # pragma: no cover - only while that module is absent
    server = browser = sign_up = None
from tests.servers import collected_static, daphne, own_database, server_env

pytestmark = [pytest.mark.browser, pytest.mark.server]

VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
PASSWORD = "a-long-unusual-passphrase"  # what sign_up sets


def reset_link(mail_dir, address: str) -> str:
    """The one password-reset link the server emailed to `address` (besides its sign-up mail)."""
    links = []
    for path in mail_dir.iterdir():
        for chunk in path.read_bytes().split(b"-" * 79):
            message = email.message_from_bytes(chunk.strip())
            if message["To"] == address:
                body = message.get_payload(decode=True).decode()
                links += re.findall(r"https?://\S+/account/reset/\S+/", body)
    assert len(links) == 1, links
    return links[0]


def fits(page) -> None:
    """Nothing wider than the screen: the page never scrolls sideways."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.mark.skipif(sign_up is None, reason="needs tests/dashboard/test_browser_live.py fixtures")
@pytest.mark.parametrize("width", VIEWPORTS)
def test_a_stale_login_tab_and_a_password_reset(server, browser, width):
    base = server["base"]
    name = f"rita{secrets.token_hex(3)}"
    page, org_id = sign_up(browser, server, name)
    page.set_viewport_size(VIEWPORTS[width])

    # A login tab opened before the session changed: its token is stale; the submit answers
    # with the login page again (a note, the username kept), and the next submit signs in.
    page.click("form[action*='logout'] button")
    page.wait_for_url(re.compile(r"/login/"))
    page.goto(f"{base}/login/")
    page.context.clear_cookies()
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_selector("[role=alert]")
    assert page.input_value("input[name=username]") == name
    fits(page)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/w/org_"))

    # Forgotten password: the link from the login page, the email, a new password, a sign-in.
    page.click("form[action*='logout'] button")
    page.wait_for_url(re.compile(r"/login/"))
    page.click("a[href*='/account/reset/']")
    page.fill("input[name=email]", f"{name}@example.com")
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/account/reset/sent/"))
    fits(page)
    link = reset_link(server["mail"], f"{name}@example.com")
    page.goto(base + re.sub(r"^https?://[^/]+", "", link))
    page.fill("input[name=new_password1]", "another-long-passphrase-42")
    page.fill("input[name=new_password2]", "another-long-passphrase-42")
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/account/reset/done/"))
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", "another-long-passphrase-42")
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/w/org_"))
    page.context.close()


@pytest.mark.skipif(sign_up is None, reason="needs tests/dashboard/test_browser_live.py fixtures")
@pytest.mark.parametrize("width", VIEWPORTS)
def test_a_plan_change_that_shortens_retention_asks_first_and_is_audited(server, browser, width):
    base = server["base"]
    page, org_id = sign_up(browser, server, f"paul{secrets.token_hex(3)}")
    page.set_viewport_size(VIEWPORTS[width])
    page.set_default_timeout(WAIT_MS)

    page.goto(f"{base}/w/{org_id}/usage/")
    page.select_option("select[name=plan]", "pro")
    page.click(".plan-form button[type=submit]")
    page.wait_for_selector("text=now on the Pro plan")

    # Back to Free (a shorter retention): the page says what the purge takes before doing it.
    page.select_option("select[name=plan]", "free")
    page.click(".plan-form button[type=submit]")
    page.wait_for_selector("h1:has-text('Move to the Free plan?')")
    assert page.get_by_text("Events purged", exact=True).is_visible()
    fits(page)
    page.click("button:has-text('Move to Free and purge')")
    page.wait_for_selector("text=now on the Free plan")

    page.goto(f"{base}/w/{org_id}/audit/")
    fits(page)
    log = page.inner_text("main")
    assert log.count("plan.changed") == 2, log  # to Pro, then to Free after the confirmation
    page.context.close()


@pytest.fixture(scope="module")
def production_server(tmp_path_factory):
    """Daphne with DEBUG=0 (Django's own debug pages are off): the site's error pages."""
    env = server_env(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(48), STATIC_ROOT=collected_static(),
                     SECURE_SSL_REDIRECT="0")
    with own_database(env, "ackly_errpages", tmp_path_factory.mktemp("errpages")) as env, daphne(
        env, tmp_path_factory.mktemp("errpages-log") / "daphne.log"
    ) as base:
        yield base


@pytest.mark.skipif(sign_up is None, reason="needs tests/dashboard/test_browser_live.py fixtures")
@pytest.mark.parametrize("width", VIEWPORTS)
def test_a_missing_page_is_the_sites_404_with_a_way_back(production_server, browser, width):
    context = browser.new_context(viewport=VIEWPORTS[width])
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)

    response = page.goto(f"{production_server}/no-such-page/")

    assert response.status == 404
    assert page.locator("h1", has_text="Page not found").is_visible()
    assert page.locator("a.skip-link, a[href='#main'], a[href='#content']").count() >= 1
    fits(page)
    page.click("text=Go to your dashboard")
    page.wait_for_url(re.compile(r"/login/"))  # signed out: the way back leads to the login
    context.close()
