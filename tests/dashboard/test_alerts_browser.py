"""End to end in headless Chromium at a phone's width: a webhook channel and a failure rule made
in the dashboard, a failing event through the ingest API, the banner live on the open events
page, the signed delivery on the receiver and in the Alerts page's log, then the resolution.

Every part is real: Daphne serving the dashboard and the ingest API, `manage.py worker` as a
process of its own evaluating the rule and delivering, a webhook receiver on 127.0.0.1
(WEBHOOK_ALLOW_PRIVATE=1), and Redis carrying the worker's broadcast to the server's socket
(a database of this file's own). The database is a SQLite file, or a fresh PostgreSQL database
when DATABASE_URL names one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.alerts.receiver import Receiver
from tests.alerts.test_engine import verify
from tests.alerts.test_worker import worker
from tests.dashboard.test_accessibility_browser import serious_violations
from tests.dashboard.test_browser_live import CHROMIUM, CHROMIUM_ARGS
from tests.servers import daphne, manage, own_database, own_redis, server_env

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.server]

REDIS_DB = 6  # this file's own Redis database (its keys cleared before and after)
WAIT_MS = 20_000

SETUP = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from bench.setup_data import logged_in_session
from sources.services import create_source
from workspaces.services import create_workspace

owner = get_user_model().objects.create_user("olivia", "olivia@example.com", "a-long-passphrase")
ws = create_workspace("Alerted", "pro", owner=owner)
source, issued = create_source(ws, "Backups")
print(json.dumps({"session": logged_in_session(owner), "cookie": settings.SESSION_COOKIE_NAME,
                  "org": ws.public_id, "source": source.public_id, "key": issued.secret}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[dict]:
    logs = tmp_path_factory.mktemp("alerts-browser")
    with own_redis(REDIS_DB) as redis_url, own_database(
        server_env(REDIS_URL=redis_url, WEBHOOK_ALLOW_PRIVATE="1", WEBHOOK_ALLOW_HTTP="1",
                   ALERTS_POLL_MS="100",
                   ALERTS_AGGREGATE_SECONDS="1", ALERTS_RETRY_BASE_SECONDS="1"),
        "ackly_alerts_ui", logs,
    ) as env:
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        with daphne(env, logs / "daphne.log") as base, worker(
            {**env, "LOG_LEVEL": "INFO"}, logs / "worker.log"  # its start is told at INFO
        ):
            yield {"base": base, "env": env, "logs": logs, **data}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def ingest(site: dict, **body) -> None:
    answer = httpx.post(f"{site['base']}/api/ingest", json=body, timeout=10,
                        headers={"Authorization": f"Bearer {site['key']}"})
    assert answer.status_code == 201, answer.text


def test_a_rule_made_in_the_dashboard_fires_live_delivers_signed_and_resolves(site, receiver):
    from playwright.sync_api import expect, sync_playwright

    base, org = site["base"], site["org"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844})
            context.add_cookies([{"name": site["cookie"], "value": site["session"], "url": base}])
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)

            # A webhook channel to the receiver; its signing secret is shown once.
            page.goto(f"{base}/w/{org}/alerts/")
            page.get_by_role("link", name="New channel").click()
            page.get_by_label("Kind").select_option("webhook")
            page.get_by_label("Name").fill("Receiver")
            page.get_by_label("URL or email address").fill(receiver.url)
            page.get_by_role("button", name="Create channel").click()
            page.wait_for_url(re.compile(r"/alerts/channels/chn_\w+/secret/$"))
            secret = page.input_value("#secret")
            assert secret.startswith("whsec_")
            assert serious_violations(page) == []

            # A failure rule on the source's backup.* events, notifying the channel; the form
            # shows only the failure fields.
            page.goto(f"{base}/w/{org}/alerts/rules/new/")
            expect(page.get_by_label("Kind")).to_have_value("failure")
            expect(page.locator("#id_schedule")).to_be_hidden()
            expect(page.locator("#id_include_partial")).to_be_visible()
            page.get_by_label("Name").fill("Backups fail")
            page.get_by_label("Source").select_option(label="Backups")
            page.get_by_label("eventType").fill("backup.")
            page.get_by_label("Receiver").check()
            assert serious_violations(page) == []
            page.get_by_role("button", name="Create rule").click()
            page.wait_for_url(f"{base}/w/{org}/alerts/")
            rule_row = page.locator("#rules tbody tr", has_text="Backups fail")
            expect(rule_row).to_contain_text("ok")
            expect(rule_row).to_contain_text("Receiver")

            # The live events page is open when the failing event arrives.
            page.goto(f"{base}/w/{org}/events/")
            page.wait_for_selector("#conn.pill-live")
            page.evaluate("window.__sameDocument = true")
            expect(page.locator("#alert-banner [data-alert]")).to_have_count(0)
            ingest(site, status="failure", eventType="backup.finished", message="disk full")

            line = page.locator("#alert-banner [data-alert]")
            expect(line).to_contain_text("Alert firing:")
            expect(line).to_contain_text("Backups fail")
            expect(page.locator("#alert-banner")).to_have_attribute("role", "alert")
            assert page.evaluate("window.__sameDocument") is True  # live, not a reload

            # The receiver got the notification, signed with the secret the page showed once.
            received = receiver.wait_for(1)[0]
            assert verify(secret, received.headers["Ackly-Signature"], received.body)
            body = received.json()
            assert body["type"] == "alert.fired"

            # The banner's link opens the alert: why, the event, the delivery and its attempt.
            line.get_by_role("link", name="View alert").click()
            page.wait_for_url(re.compile(rf"/w/{org}/alerts/alr_\w+/$"))
            expect(page.locator("main")).to_contain_text("disk full")
            assert serious_violations(page) == []
            delivery = page.locator(f"#{received.headers['Ackly-Delivery']}")
            for _ in range(20):  # the worker records the attempt just after the receiver answers
                if "delivered" in delivery.inner_text():
                    break
                page.wait_for_timeout(250)
                page.reload()
            expect(delivery).to_contain_text("delivered")
            expect(delivery.locator("table.attempts tbody tr")).to_have_count(1)
            expect(delivery.locator("table.attempts")).to_contain_text("200")

            # The channel's delivery log on the Alerts page holds it too.
            page.goto(f"{base}/w/{org}/alerts/")
            expect(page.locator("#history")).to_contain_text("firing")
            # At 390 px the tables stack: nothing is wider than the screen; axe finds nothing
            # serious on the filled page, its banner included.
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            assert serious_violations(page) == []
            page.get_by_role("link", name="Delivery log of Receiver").click()
            expect(page.locator("main")).to_contain_text(received.headers["Ackly-Delivery"])
            expect(page.locator("main")).to_contain_text("200")
            assert serious_violations(page) == []

            # A success resolves it: the open Alerts page's banner says so, live, and the page
            # says its tables are older than that.
            page.goto(f"{base}/w/{org}/alerts/")
            page.wait_for_selector("#alerts-config[data-state=live]", state="attached")
            expect(page.locator("#alert-banner [data-alert]")).to_contain_text("Alert firing:")
            expect(page.locator("#alerts-stale")).to_be_hidden()
            ingest(site, status="success", eventType="backup.finished", message="all good")
            expect(page.locator("#alert-banner [data-alert]")).to_contain_text("Resolved:")
            expect(page.locator("#alerts-stale")).to_be_visible()
            page.locator("#alerts-stale").get_by_role("link", name="Reload").click()
            expect(page.locator("#history")).to_contain_text("resolved")
            assert receiver.wait_for(2)[1].json()["type"] == "alert.resolved"
            page.goto(f"{base}/w/{org}/sources/")
            expect(page.locator("#alert-banner [data-alert]")).to_have_count(0)
        finally:
            browser.close()
