"""Sources, Usage and Workers pages end to end in headless Chromium against a real Daphne process.

No database marker here: the browser fixtures run an event loop, and the server has its own DB.
"""

from __future__ import annotations

import pytest

try:  # The Daphne-process and Chromium fixtures live with the live-page browser test.
    from tests.dashboard.test_browser_live import browser, server, sign_up  # noqa: F401
except ImportError:  # pragma: no cover - only while that module is absent
    server = browser = sign_up = None


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.skipif(sign_up is None, reason="needs tests/dashboard/test_browser_live.py fixtures")
def test_a_source_made_in_the_ui_feeds_a_worker_page_live(server, browser):
    import re
    import secrets

    import httpx

    base = server["base"]
    page, org_id = sign_up(browser, server, f"dana{secrets.token_hex(3)}")

    # Sign-up lands on Sources: create one there; its key is on the POST's response page.
    page.fill("#new-source input[name=name]", "Support desk")
    page.fill("#new-source textarea[name=event_types]", "ticket.resolved, call.logged")
    page.click("#new-source button[type=submit]")
    secret = page.input_value("#secret")
    assert re.fullmatch(r"ak_live_[0-9A-Za-z]{40}", secret)
    assert f"{base}/api/v1/ingest/events" in page.inner_text("#curl-v1")
    page.goto(f"{base}/w/{org_id}/sources/")
    assert secret not in page.content()

    def v1(path: str, body: dict) -> httpx.Response:
        return httpx.post(
            f"{base}/api/v1/ingest/{path}",
            json=body,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=10,
        )

    event = {
        "eventType": "ticket.resolved",
        "category": "support",
        "actor": {"externalId": "agent-9", "email": "dana.agent@example.com"},
    }
    # Free has no developer API; the Usage page's plan change applies to the very next request.
    assert v1("events", {"events": [event]}).status_code == 402
    page.goto(f"{base}/w/{org_id}/usage/")
    page.select_option("select[name=plan]", "pro")
    page.click(".plan-form button[type=submit]")
    page.wait_for_selector("text=now on the Pro plan")
    assert v1("events", {"events": [event]}).status_code == 202

    page.goto(f"{base}/w/{org_id}/workers/?q=agent-9")
    page.click("table.workers a")
    page.wait_for_selector("#conn.pill-live")
    page.evaluate("window.__sameDocument = true")
    assert page.locator("#timeline li").count() == 1

    live = v1(
        "events",
        {
            "events": [
                {
                    **event,
                    "eventType": "call.logged",
                    "category": "communication",
                    "duration": 75,
                    "metadata": {"note": "<b>escaped</b>"},
                }
            ]
        },
    )
    assert live.status_code == 202, live.text
    snap = v1(
        "snapshots",
        {
            "snapshotType": "tickets_open",
            "actor": {"externalId": "agent-9"},
            "metrics": {"open": 7, "sla": {"value": 97.5, "unit": "%", "label": "SLA met"}},
        },
    )
    assert snap.status_code == 202, snap.text

    page.wait_for_selector('#cards [data-type="tickets_open"]')
    first = page.locator("#timeline li").first
    first.locator("text=call.logged").wait_for()
    assert "75 s" in first.inner_text()
    first.locator("summary").click()
    assert "<b>escaped</b>" in first.locator("pre").inner_text()
    assert first.locator("pre b").count() == 0
    card = page.inner_text('#cards [data-type="tickets_open"]')
    assert "SLA met" in card and "97.5" in card and "%" in card
    assert page.locator("#timeline li").count() == 2

    # The network drops; an event arrives meanwhile; after the reconnect the page reloads the
    # timeline and the cards over HTTP, so the missed event shows up without a page reload.
    page.context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    page.wait_for_selector("#conn.pill-reconnecting")
    missed = v1("events", {"events": [{**event, "metadata": {"marker": "while-offline"}}]})
    assert missed.status_code == 202, missed.text
    v1(
        "snapshots",
        {
            "snapshotType": "tickets_open",
            "actor": {"externalId": "agent-9"},
            "metrics": {"open": 3},
        },
    )
    page.context.set_offline(False)
    page.wait_for_selector(
        "#timeline li pre:has-text('while-offline')", state="attached", timeout=60_000
    )
    page.wait_for_selector("#conn.pill-live")
    assert page.locator("#timeline li").count() == 3
    assert "SLA met" not in page.inner_text('#cards [data-type="tickets_open"]')
    assert page.evaluate("window.__sameDocument") is True
    page.context.close()


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.skipif(sign_up is None, reason="needs tests/dashboard/test_browser_live.py fixtures")
def test_reloading_the_key_page_neither_resubmits_nor_shows_the_key_again(server, browser):
    import re
    import secrets

    page, org_id = sign_up(browser, server, f"rory{secrets.token_hex(3)}")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    posts: list[str] = []
    page.on("request", lambda request: request.method == "POST" and posts.append(request.url))

    page.fill("#new-source input[name=name]", "Nightly backups")
    page.click("#new-source button[type=submit]")
    secret = page.input_value("#secret")
    assert re.fullmatch(r"ak_live_[0-9A-Za-z]{40}", secret)
    key_page = page.url
    assert len(posts) == 1

    page.reload()

    text = page.inner_text("main")
    assert "already uses this slug" not in text
    assert len(posts) == 1, posts  # the reload was a GET: nothing was posted again
    assert dialogs == []
    assert "This key was shown once and is no longer available" in text
    assert page.url == key_page and secret not in key_page
    assert re.search(r"/sources/app_\w+/keys/key_\w+/$", key_page)
    assert secret not in page.content()
    page.click("text=Rotate key…")
    assert "stop working" in page.inner_text("main") and secret[:12] in page.inner_text("main")
    page.context.close()
