"""End to end in headless Chromium against a real Daphne process: sign up, ingest, see it live.

The server runs as a subprocess on a free port with its own database (a temp SQLite file, or a
fresh PostgreSQL database next to DATABASE_URL's, dropped afterwards; REDIS_URL passed
through), so the browser, the ingest client and the websocket all go through the real network
stack — nothing here is faked.
"""

from __future__ import annotations

import email
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.dashboard.test_accounts import finish_path
from tests.dashboard.tour import CHROMIUM, CHROMIUM_ARGS
from tests.servers import daphne, manage, own_database, server_env

pytestmark = [pytest.mark.browser, pytest.mark.server]

ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    """A Daphne process serving ackly.asgi on 127.0.0.1:<free port>."""
    mail = tmp_path_factory.mktemp("e2e-mail")  # sign-up's emails, one file each
    env = server_env(
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(mail),
        SIGNUP_RATE_LIMIT="1000/h",  # every sign-up here comes from 127.0.0.1
    )
    with own_database(env, "ackly_e2e", tmp_path_factory.mktemp("e2e")) as env, daphne(
        env, tmp_path_factory.mktemp("e2e-log") / "daphne.log"
    ) as base:
        yield {"base": base, "env": env, "mail": mail}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def emailed_to(mail_dir: Path, address: str) -> str:
    """The body of the one email the server wrote to `address` (file-based email backend)."""
    bodies = []
    for path in mail_dir.iterdir():
        for chunk in path.read_bytes().split(b"-" * 79):
            message = email.message_from_bytes(chunk.strip())
            if message["To"] == address:
                bodies.append(message.get_payload(decode=True).decode())
    assert len(bodies) == 1, (address, bodies)
    return bodies[0]


def sign_up(browser, server: dict, name: str):
    """A fresh browser context that signs up through the emailed link; returns (page, org_id)."""
    base = server["base"]
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{base}/signup/")
    page.fill("#id_email", f"{name}@example.com")
    page.fill("#id_workspace_name", f"{name} team")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/signup/sent/$"))
    page.goto(base + finish_path(emailed_to(server["mail"], f"{name}@example.com")))
    page.fill("#id_username", name)
    page.fill("#id_password1", "a-long-unusual-passphrase")
    page.fill("#id_password2", "a-long-unusual-passphrase")
    page.click("button[type=submit]")
    # Sign-up walks to the workspace's Sources page.
    page.wait_for_url(re.compile(r"/w/org_[0-9A-Z]+/sources/$"))
    org_id = re.search(r"/w/(org_[0-9A-Z]+)/", page.url).group(1)
    return page, org_id


def create_source_in_browser(page, base: str, org_id: str, name: str) -> str:
    """A source made on the Sources page; returns the key it shows once."""
    page.goto(f"{base}/w/{org_id}/sources/")
    page.fill("#new-source input[name=name]", name)
    page.click("#new-source button[type=submit]")
    key = page.input_value("#secret")
    assert key.startswith("ak_live_")
    return key


def create_source_by_command(server: dict, org_id: str, name: str) -> str:
    """A source made the way an operator would: `manage.py createsource`, key on the last line."""
    out = manage(server["env"], "createsource", org_id, name)
    key = out.strip().splitlines()[-1].strip()
    assert key.startswith("ak_live_"), out
    return key


def open_live(page, base: str, org_id: str) -> None:
    page.goto(f"{base}/w/{org_id}/events/")
    page.wait_for_selector("#conn.pill-live")
    # Set after load: a reload would wipe it, so it proves the row came without one.
    page.evaluate("window.__sameDocument = true")


def ingest(base: str, key: str, **body) -> str:
    response = httpx.post(
        f"{base}/api/ingest", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_an_ingested_event_appears_live_for_its_workspace_only(server, browser):
    base = server["base"]
    suffix = secrets.token_hex(3)
    alice, alice_org = sign_up(browser, server, f"alice{suffix}")
    bob, bob_org = sign_up(browser, server, f"bob{suffix}")
    assert alice_org != bob_org
    key = create_source_in_browser(alice, base, alice_org, "Nightly backups")
    open_live(alice, base, alice_org)
    open_live(bob, base, bob_org)

    message = f"backup finished {suffix}"
    event_id = ingest(base, key, status="failure", message=message, eventType="backup.finished",
                      metadata={"host": "db-1", "note": "<b>not bold</b>"})

    row = alice.wait_for_selector(f'#feed li[data-id="{event_id}"]')
    assert message in row.inner_text()
    assert "failure" in row.inner_text()
    assert alice.evaluate("window.__sameDocument") is True
    # The detail drawer shows the metadata as text, never as markup.
    row.click()
    assert "<b>not bold</b>" in alice.inner_text("#drawer-json")
    assert alice.locator("#drawer-json b").count() == 0

    # A refused request shows up in the rejections panel, live.
    alice.keyboard.press("Escape")
    refused = httpx.post(f"{base}/api/ingest", json={"status": "maybe"},
                         headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert refused.status_code == 400
    panel_row = alice.wait_for_selector('#rejections li:has-text("invalid_body")')
    assert "Nightly backups" in panel_row.inner_text()
    assert panel_row.query_selector(".rej-count").inner_text() == "1"
    # Its count opens the refused request behind it: the message and the request id.
    with alice.expect_navigation():
        panel_row.query_selector(".rej-count").click()
    assert "/rejections/?source=app_" in alice.url and "code=invalid_body" in alice.url
    drill_down = alice.inner_text("main")
    assert refused.json()["error"]["requestId"] in drill_down
    assert refused.json()["error"]["message"] in drill_down

    # Bob's page is live on its own socket and never receives Alice's event — not even after a
    # reload, which fetches his feed over HTTP.
    bob.wait_for_timeout(1000)
    assert bob.locator(f'#feed li[data-id="{event_id}"]').count() == 0
    assert message not in bob.inner_text("main")
    assert bob.locator("#rejections li").count() == 0
    bob.reload()
    bob.wait_for_selector("#conn.pill-live")
    assert message not in bob.inner_text("main")

    # A search keeps arriving rows as the server finds them: a term within one field, never
    # one that runs across two (a message's end and an externalId's start).
    term = f"zq{suffix}"
    alice.goto(f"{base}/w/{alice_org}/events/?q={term}")
    alice.wait_for_selector("#conn.pill-live")
    across = ingest(base, key, status="success", message="ends with zq", externalId=f"{suffix}-1")
    inside = ingest(base, key, status="success", message=f"holds {term} inside")
    alice.wait_for_selector(f'#feed li[data-id="{inside}"]')
    assert alice.locator(f'#feed li[data-id="{across}"]').count() == 0
    alice.context.close()
    bob.context.close()


def test_paused_rows_wait_behind_a_counter_and_a_reconnect_catches_up(server, browser):
    base = server["base"]
    suffix = secrets.token_hex(3)
    page, org_id = sign_up(browser, server, f"carol{suffix}")
    key = create_source_by_command(server, org_id, "Deploys")
    open_live(page, base, org_id)

    page.click("#pause")
    first = ingest(base, key, status="success", message=f"while paused {suffix}")
    page.wait_for_selector("#new-count:not([hidden])")
    assert page.inner_text("#new-count") == "1 new"
    assert page.locator(f'#feed li[data-id="{first}"]').count() == 0
    page.click("#new-count")
    page.wait_for_selector(f'#feed li[data-id="{first}"]')

    # Drop the network: the socket dies, events arrive meanwhile, the page reconnects with
    # backoff and fetches what it missed over HTTP.
    page.context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    page.wait_for_selector("#conn.pill-reconnecting")
    missed = ingest(base, key, status="partial", message=f"missed while offline {suffix}")
    page.context.set_offline(False)
    page.wait_for_selector(f'#feed li[data-id="{missed}"]', timeout=60_000)
    ids = page.eval_on_selector_all("#feed li", "els => els.map(e => e.dataset.id)")
    assert ids[:2] == [missed, first]
    assert len(ids) == len(set(ids))
    assert page.evaluate("window.__sameDocument") is True
    page.context.close()


def test_logging_out_in_one_tab_stops_the_live_page_in_another(server, browser):
    base = server["base"]
    suffix = secrets.token_hex(3)
    live, org_id = sign_up(browser, server, f"dana{suffix}")
    key = create_source_by_command(server, org_id, "Billing")
    open_live(live, base, org_id)
    other_tab = live.context.new_page()
    other_tab.set_default_timeout(WAIT_MS)
    other_tab.goto(f"{base}/w/{org_id}/sources/")

    other_tab.click("form[action='/logout/'] button")
    other_tab.wait_for_url(re.compile(r"/login/|/$"))

    live.wait_for_selector("#conn.pill-stopped:has-text('Signed out')", timeout=3000)
    login = live.locator("#conn a")
    assert login.inner_text() == "Log in"
    assert login.get_attribute("href").startswith("/login/?next=")
    # Nothing reaches the page after its session ended, and it does not try again.
    after = ingest(base, key, status="success", message=f"after logout {suffix}")
    live.wait_for_timeout(1500)
    assert live.locator(f'#feed li[data-id="{after}"]').count() == 0
    assert "Signed out" in live.inner_text("#conn")
    assert live.evaluate("window.__sameDocument") is True
    live.context.close()


def test_a_search_matches_arriving_rows_as_the_server_finds_them(server, browser):
    """The live page matches an arriving row against the term as the server's search would:
    metadata's JSON text with ", " and ": " (as the database writes it), and a timeline event's
    worker by its externalId as well as its name. Checked against the server's own feed."""
    base = server["base"]
    suffix = secrets.token_hex(3)
    page, org_id = sign_up(browser, server, f"erin{suffix}")
    manage(server["env"], "setplan", org_id, "pro")  # the v1 API, for timeline events
    out = manage(server["env"], "createsource", org_id, "Agents", "--allow=ticket.resolved")
    key = out.strip().splitlines()[-1].strip()
    on_postgres = server["env"].get("DATABASE_URL", "").startswith("postgres")

    def timeline(external_id: str, name: str) -> str:
        # The worker's display name is the email's local part (`name`), not the externalId.
        response = httpx.post(f"{base}/api/v1/ingest/events", json={"events": [{
            "eventType": "ticket.resolved", "category": "support",
            "actor": {"externalId": external_id, "email": f"{name}@example.com"},
        }]}, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert response.status_code == 202, response.text
        return page.request.get(f"{base}/w/{org_id}/events/feed.json?limit=1").json()[
            "items"][0]["id"]

    # (term, rows the server finds, rows it does not): each made after the page is live.
    cases = [
        (f'"run": "{suffix}"', lambda: [ingest(base, key, status="success",
                                               metadata={"run": suffix})],
         lambda: [ingest(base, key, status="success", message=f'"run":"{suffix}"')]),
        (f'"{suffix}", 2]', lambda: [ingest(base, key, status="success",
                                            metadata={"tags": [1, suffix, 2]})],
         lambda: [ingest(base, key, status="success", metadata={"tags": [suffix, 3, 2]})]),
        (f"agent-{suffix}", lambda: [timeline(f"agent-{suffix}", "erin")],
         lambda: [timeline(f"agent-{suffix[::-1]}x", "frank")]),
    ]
    if on_postgres:  # jsonb orders an object's keys shortest first; SQLite keeps the sent order
        cases.append((f'"b": "{suffix}", "zz"', lambda: [ingest(
            base, key, status="success", metadata={"zz": 1, "b": suffix})], lambda: []))

    for term, found, missed in cases:
        page.goto(f"{base}/w/{org_id}/events/?" + urlencode({"q": term}))
        page.wait_for_selector("#conn.pill-live")
        expected, other = found(), missed()
        for row in expected:
            page.wait_for_selector(f'#feed li[data-id="{row}"]')
        page.wait_for_timeout(1000)  # time enough for the others to arrive, had they matched
        shown = page.eval_on_selector_all("#feed li[data-id]", "els => els.map(e => e.dataset.id)")
        server_found = [item["id"] for item in page.request.get(
            f"{base}/w/{org_id}/events/feed.json?" + urlencode({"q": term})).json()["items"]]
        assert sorted(shown) == sorted(server_found) == sorted(expected), (term, other)
    page.context.close()
