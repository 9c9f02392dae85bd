"""A tour of the dashboard: a demo workspace fed through the real APIs, and its pages.

Shared by `make screenshots` (tests/dashboard/screenshots.py) and the accessibility test
(tests/dashboard/test_accessibility_browser.py), so both look at the same pages. The workspace
is `manage.py demo`'s; events, timeline events, snapshots and refused requests arrive over
HTTP like a sender's would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.servers import daphne, manage, own_database, server_env

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "ackly-demo-password"  # manage.py demo's documented password
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


@dataclass
class Demo:
    """What the tour needs to know about the seeded workspace."""

    base: str
    env: dict[str, str]
    org: str
    sources: dict[str, str] = field(default_factory=dict)  # slug -> app_ id
    keys: dict[str, str] = field(default_factory=dict)  # slug -> secret
    event_ids: list[str] = field(default_factory=list)
    worker: str = ""
    session: dict | None = None  # signed_in()'s storage state


@contextmanager
def demo_server(tmp: Path, **env_overrides: str) -> Iterator[Demo]:
    """A Daphne process on a fresh database (SQLite in `tmp`, or PostgreSQL as DATABASE_URL
    says), `manage.py demo` run on it, and the workspace fed over HTTP."""
    # Every test context signs in as the same demo user from 127.0.0.1: the log-in limits
    # (per minute, and per username per hour in a Redis the runs may share) are not under test.
    env = server_env(LOGIN_RATE_LIMIT="1000/m", LOGIN_BACKOFF_RATE_LIMITS="10000/h,100000/d",
                     **env_overrides)
    with own_database(env, "ackly_tour", tmp) as env, daphne(env, tmp / "daphne.log") as base:
        yield seed(str(base), env)


def seed(base: str, env: dict[str, str]) -> Demo:
    out = manage(env, "demo", "--base-url", base)
    org = re.search(r"\((org_[0-9A-Z]+)\)", out).group(1)
    demo = Demo(base=base, env=env, org=org)
    for slug, app, secret in re.findall(r"\(([a-z-]+), (app_[0-9A-Z]+)\).*\n\s+(ak_live_\w+)", out):
        demo.sources[slug] = app
        demo.keys[slug] = secret
    with httpx.Client(base_url=base, timeout=10) as http:
        def send(slug: str, path: str, body: dict) -> httpx.Response:
            return http.post(path, json=body, headers={"Authorization": f"Bearer {demo.keys[slug]}"})

        legacy = [
            ("success", "backup.finished", "Nightly backup of db-1 finished", 84_000),
            ("failure", "job.finished", "Invoice export failed: upstream timed out", 30_250),
            ("partial", "deploy.shipped", "Deployed 11 of 12 services", 412_000),
            ("success", "job.finished", "Reindexed 1,204 search documents", 8_400),
            ("success", "deploy.shipped", "Deployed api 2026.12.5", 95_000),
            ("success", "backup.finished", "Nightly backup of db-2 finished", 91_500),
        ]
        for status, event_type, message, duration in legacy:
            answer = send("nightly-jobs", "/api/ingest", {
                "status": status, "eventType": event_type, "message": message,
                "durationMs": duration, "externalId": f"run-{len(demo.event_ids) + 1:04d}",
                "metadata": {"host": "worker-3", "attempt": 1},
            })
            assert answer.status_code == 201, answer.text
            demo.event_ids.append(answer.json()["id"])
        people = ["crm-alex", "crm-priya", "crm-sam"]
        batch = [
            {"eventType": kind, "category": category, "duration": 60 * (i + 1),
             "actor": {"externalId": people[i % 3]}, "metadata": {"ticket": 4100 + i}}
            for i, (kind, category) in enumerate([
                ("ticket.resolved", "support"), ("call.logged", "communication"),
                ("ticket.resolved", "support"), ("call.logged", "sales"),
                ("ticket.resolved", "documentation"),
            ])
        ]
        answer = send("crm-hub", "/api/v1/ingest/events", {"events": batch})
        assert answer.status_code == 202, answer.text
        answer = send("crm-hub", "/api/v1/ingest/snapshots", {
            "snapshotType": "tickets_open", "actor": {"externalId": "crm-alex"},
            "metrics": {"open": 7, "status": "on shift",
                        "oldest": {"value": 3, "unit": "days", "label": "Oldest ticket"}},
        })
        assert answer.status_code == 202, answer.text
        demo.worker = answer.json()["worker"]["id"]
        # Refused requests, for the rejections panel.
        for body in ({"status": "maybe"}, {"message": "no status"}):
            assert send("nightly-jobs", "/api/ingest", body).status_code == 400
    return demo


def log_in(page, demo: Demo) -> None:
    page.goto(f"{demo.base}/login/")
    page.fill("#id_username", DEMO_USERNAME)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/w/org_"))


def signed_in(browser, demo: Demo) -> dict:
    """The demo user's session as a storage state for new browser contexts (one log-in)."""
    if demo.session is None:
        context = browser.new_context()
        page = context.new_page()
        log_in(page, demo)
        demo.session = context.storage_state()
        context.close()
    return demo.session


def pages(demo: Demo) -> list[tuple[str, str]]:
    """(name, path) of every signed-in page of the tour; optional pages only where they exist."""
    org, crm = demo.org, demo.sources["crm-hub"]
    found = [
        ("live", f"/w/{org}/events/"),
        ("event", f"/w/{org}/events/{demo.event_ids[1]}/"),
        ("workers", f"/w/{org}/workers/"),
        ("worker", f"/w/{org}/workers/{demo.worker}/"),
        ("sources", f"/w/{org}/sources/"),
        ("source", f"/w/{org}/sources/{crm}/edit/"),
        ("key-new", f"/w/{org}/sources/{crm}/keys/new/"),
        ("key-rotate", f"/w/{org}/sources/{crm}/rotate/"),
        ("usage", f"/w/{org}/usage/"),
        ("rejections", f"/w/{org}/rejections/"),
        ("docs", "/docs/"),
        ("docs-errors", "/docs/errors/"),
    ]
    # Pages other work adds: part of the tour as soon as they answer (see OPTIONAL).
    found += [("alerts", f"/w/{org}/alerts/"), ("members", f"/w/{org}/members/"),
              ("audit", f"/w/{org}/audit/")]
    return found


OPTIONAL = {"alerts", "members", "audit"}


PUBLIC_PAGES = [("login", "/login/"), ("signup", "/signup/"), ("password-reset", "/account/reset/")]
