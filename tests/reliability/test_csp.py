"""Content-Security-Policy on every page (ackly/csp.py), and no page breaks under it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ROOT, daphne, manage, own_database, server_env

STRICT = {
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
}


def directives(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    parts = [part.strip() for part in header.split(";") if part.strip()]
    return {part.split(" ", 1)[0]: part for part in parts}


@pytest.fixture
def logged_in(client, member, workspace):
    client.force_login(member)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/signup/", "/docs/", "/docs/errors/invalid_key/",
                                  "/nowhere/"])
def test_public_pages_carry_the_strict_policy(client, path):
    response = client.get(path)
    assert set(directives(response).values()) >= STRICT


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["events", "sources", "workers", "usage", "alerts"])
def test_dashboard_pages_carry_the_strict_policy(logged_in, workspace, page):
    response = logged_in.get(f"/w/{workspace.public_id}/{page}/")
    assert response.status_code == 200
    assert set(directives(response).values()) >= STRICT


@pytest.mark.django_db
def test_the_live_pages_socket_is_allowed_by_its_exact_origin(logged_in, workspace):
    plain = logged_in.get(f"/w/{workspace.public_id}/events/", HTTP_HOST="127.0.0.1:8000")
    assert directives(plain)["connect-src"] == "connect-src 'self' ws://127.0.0.1:8000"
    tls = logged_in.get(f"/w/{workspace.public_id}/events/", secure=True)
    assert directives(tls)["connect-src"] == "connect-src 'self' wss://testserver"


@pytest.mark.django_db
def test_no_page_runs_inline_script_and_only_swagger_ui_may_inline_styles(client):
    page = client.get("/docs/api/")
    docs_api = directives(page)
    assert docs_api["script-src"] == "script-src 'self'"
    assert docs_api["style-src"] == "style-src 'self' 'unsafe-inline'"
    # Swagger UI's start-up script is a file the page loads, served from the same path.
    assert b"<script>" not in page.content
    start = client.get("/docs/api/?script=")
    assert start.status_code == 200 and start["Content-Type"].startswith("application/javascript")
    assert docs_api["frame-ancestors"] == "frame-ancestors 'none'"


# --- what the policy would break ------------------------------------------------------------------

INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
     "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "event-handler attribute"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_no_template_holds_inline_code_or_styles():
    found = [
        f"{path.relative_to(ROOT)}: {what}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for pattern, what in INLINE
        if pattern.search(path.read_text())
    ]
    assert found == []


def test_no_script_writes_markup_or_style_attributes():
    # Markup written from a string could carry inline styles or handlers; CSSOM (el.style.x) is fine.
    risky = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|setAttribute\(\s*['\"]style|"
                       r"\beval\(|new Function")
    found = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in sorted((ROOT / "static" / "js").rglob("*.js"))
        for line in path.read_text().splitlines()
        if risky.search(line) and not line.strip().startswith("//")
    ]
    assert found == []


# --- every main page in Chromium: no violation, and the live socket connects ---------------------

SETUP = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from bench.setup_data import logged_in_session
from sources.services import create_source
from workspaces.services import create_workspace

User = get_user_model()
staff = User.objects.create_superuser("sally-staff", "sally@example.com", "a-long-passphrase")
ws = create_workspace("Policy", "pro", owner=staff)
create_source(ws, "Support desk", allowed_event_types=["ticket.resolved"])
print(json.dumps({"session": logged_in_session(staff), "cookie": settings.SESSION_COOKIE_NAME,
                  "org": ws.public_id}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[dict]:
    env = server_env()
    with own_database(env, "ackly_csp", tmp_path_factory.mktemp("csp")) as env:
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        with daphne(env, Path(tmp_path_factory.mktemp("csp-log")) / "daphne.log") as base:
            yield {"base": base, **data}


# Recorded before any page script runs (an init script is not subject to the page's policy).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__csp.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"} (${where})`);
});
"""


@pytest.mark.browser
@pytest.mark.server
def test_no_main_page_violates_the_policy_in_chromium(site):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from tests.dashboard.test_browser_live import CHROMIUM, CHROMIUM_ARGS

    base, org = site["base"], site["org"]
    pages = {
        "login": ("/login/", "form"),
        "docs": ("/docs/", "main h1"),
        "docs page": ("/docs/ingest/", "main h1"),
        "API reference": ("/docs/api/", ".swagger-ui .info .title"),
        "live events": (f"/w/{org}/events/", "#conn.pill-live"),
        "sources": (f"/w/{org}/sources/", "main"),
        "workers": (f"/w/{org}/workers/", "main"),
        "usage": (f"/w/{org}/usage/", ".meter rect"),
        "alerts": (f"/w/{org}/alerts/", "#alerts-config[data-state=live]"),
        "alert rule form": (f"/w/{org}/alerts/rules/new/", "#rule-form"),
        "admin": ("/admin/", "#content"),
        "admin list": ("/admin/sources/source/", "#changelist"),
    }
    violations: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for signed_in, names in ((False, ["login", "docs", "docs page", "API reference"]),
                                     (True, [n for n in pages if n != "login"])):
                context = browser.new_context()
                context.add_init_script(RECORD_VIOLATIONS)
                if signed_in:
                    context.add_cookies([{"name": site["cookie"], "value": site["session"],
                                          "url": base}])
                page = context.new_page()
                page.set_default_timeout(15_000)
                console: list[str] = []
                page.on("console", lambda m, out=console: out.append(m.text))
                for name in names:
                    path, ready = pages[name]
                    console.clear()
                    response = page.goto(base + path)
                    assert response.status == 200, (name, response.status)
                    assert "content-security-policy" in response.headers, name
                    try:
                        page.wait_for_selector(ready, state="attached")
                        broken = []
                    except PlaywrightTimeout:
                        broken = [f"never showed {ready}"]
                    page.wait_for_timeout(300)  # late violations (images, sockets)
                    seen = broken + page.evaluate("window.__csp") + [
                        text for text in console if "Content Security Policy" in text
                    ]
                    if seen:
                        violations[name] = seen
                context.close()
        finally:
            browser.close()
    assert violations == {}
