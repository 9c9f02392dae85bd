"""Security promises of issue 7 (item 5), each proven against the real URL map, DB and settings.

* Every dashboard URL that takes an org_id (enumerated from the URL modules, so a new page is
  covered the day it is added) refuses outsiders with 404 and sends visitors to the login page.
* Secrets never reach a table or a log line: keys made by services, commands and rotation and
  used on both APIs leave only their digest and 12-character prefix behind.
* Every dashboard form refuses a POST without a CSRF token.
* Production settings: `check --deploy` is clean, start-up refuses a missing SECRET_KEY, and
  responses carry the security headers and secure cookies.

Covered elsewhere, not repeated here: the socket's 4401/4403 through the real session middleware
(tests/dashboard/test_consumer.py) and the login rate limit (tests/dashboard/test_accounts.py).
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import URLPattern, reverse

from ingest.models import Event
from sources.keys import digest_of, generate_secret
from sources.models import Key
from sources.services import create_source, issue_key, revoke_key, rotate_key
from tests.servers import ROOT, collected_static, server_env
from workspaces.models import Worker

ORG_URL_MODULES = [
    "workspaces.urls", "sources.urls", "ingest.dashboard_urls", "billing.urls", "alerts.urls",
]
# Forms that need no workspace: each must refuse a POST without a CSRF token too.
ACCOUNT_FORMS = [
    "signup", "login", "logout", "password_change", "password_reset", "workspace-new",
    "invite-accept", "invite-signup",
]
PREFIX_LENGTH = 12


def _org_patterns() -> list[URLPattern]:
    """Every named pattern of the dashboard's URL modules that is served under /w/<org_id>/."""
    from importlib import import_module

    found = []
    for module in ORG_URL_MODULES:
        for pattern in import_module(module).urlpatterns:
            mounted = module != "workspaces.urls"  # the others are included at w/<org_id>/…
            if mounted or "org_id" in pattern.pattern.converters:
                found.append(pattern)
    return found


@pytest.fixture
def object_ids(workspace, source_and_key, make_event_row, worker_row, alert_rows) -> dict[str, str]:
    """The member's workspace and one real object of each kind in it, by URL parameter."""
    source, issued = source_and_key
    return {
        "org_id": workspace.public_id,
        "app_id": source.public_id,
        "key_id": issued.key.public_id,
        "wrk_id": worker_row.public_id,
        "item_id": make_event_row.public_id,
        **alert_rows,
    }


@pytest.fixture
def alert_rows(workspace, settings) -> dict[str, str]:
    """A webhook channel (to 127.0.0.1), a rule notifying it, an alert and its delivery."""
    from alerts.models import Alert, Delivery, Purpose
    from alerts.services import create_channel, create_rule

    settings.WEBHOOK_ALLOW_PRIVATE = True
    channel, _ = create_channel(workspace, kind="webhook", target="https://127.0.0.1:9/h")
    settings.WEBHOOK_ALLOW_PRIVATE = False
    rule = create_rule(workspace, kind="failure", channels=[channel])
    alert = Alert.objects.create(workspace=workspace, rule=rule, reason="failed")
    delivery = Delivery.objects.create(alert=alert, channel=channel, purpose=Purpose.FIRED)
    return {"chn_id": channel.public_id, "rul_id": rule.public_id, "alr_id": alert.public_id,
            "dlv_id": delivery.public_id}


@pytest.fixture
def org_urls(object_ids) -> dict[str, str]:
    """Each org URL's name -> its path, built with the member's workspace and real object ids."""
    urls = {}
    for pattern in _org_patterns():
        names = {"org_id", *pattern.pattern.converters}
        urls[pattern.name] = reverse(pattern.name, kwargs={n: object_ids[n] for n in names})
    return urls


@pytest.fixture
def make_event_row(source) -> Event:
    return Event.objects.create(workspace=source.workspace, source=source, status="success")


@pytest.fixture
def worker_row(workspace) -> Worker:
    return Worker.objects.create(workspace=workspace, display_name="Alex Chen", external_id="u-1")


def test_the_enumeration_finds_every_dashboard_page(org_urls):
    """Guards the enumeration itself: if it silently found nothing, the tests below would pass."""
    assert {"live-events", "live-feed", "event-detail", "source-list", "source-rotate",
            "key-new", "key-shown", "key-revoke", "worker-detail", "worker-feed", "usage",
            "change-plan", "alerts", "alert-detail", "rule-new", "rule-edit", "rule-delete",
            "channel-new", "channel-detail", "channel-secret", "channel-roll", "channel-test",
            "channel-delete", "delivery-detail"} <= set(org_urls)
    assert all("/w/org_" in url for url in org_urls.values())


def test_an_outsider_gets_404_on_every_dashboard_url_for_get_and_post(
    client, outsider, other_workspace, org_urls, owner, workspace
):
    client.force_login(outsider)
    for name, url in org_urls.items():
        for method in (client.get, client.post):
            response = method(url)
            if response.status_code == 405:
                # A GET-only view refuses POST before looking at the workspace: the same answer
                # for an org id that does not exist, so it reveals nothing.
                made_up = url.replace(workspace.public_id, "org_00000000000000000000000000")
                assert method(made_up).status_code == 405, name
                continue
            assert response.status_code == 404, (name, method.__name__, response.status_code)
            assert b"Acme" not in response.content  # the workspace's name is never revealed
    # The same URLs work for the owner, so the 404s above are the outsider's, not broken links.
    client.force_login(owner)
    owner_sees = {name: client.get(url) for name, url in org_urls.items()}
    for name, response in owner_sees.items():
        assert response.status_code in (200, 302, 405), name
        assert not response.get("Location", "").startswith(reverse("login")), name


# Pages that lead to or show a new key or signing secret, or change alerts: owners and admins
# only, even to look at.
MANAGER_PAGES = ["source-new", "source-edit", "source-rotate", "key-new", "key-shown",
                 "rule-new", "rule-edit", "rule-delete", "channel-new", "channel-secret",
                 "channel-roll", "channel-delete"]


def test_a_member_gets_403_on_the_pages_that_issue_or_show_a_key(client, member, org_urls):
    client.force_login(member)
    for name in MANAGER_PAGES:
        assert client.get(org_urls[name]).status_code == 403, name


def _needs_a_role(name: str) -> bool:
    """Whether the URL's view needs more than membership (workspace_view's `permission`)."""
    return any(
        getattr(p.callback, "required_permission", None) for p in _org_patterns() if p.name == name
    )


@pytest.fixture
def viewer(make_user, workspace):
    from workspaces.models import Membership, Role

    user = make_user("vera-viewer")
    Membership.objects.create(workspace=workspace, user=user, role=Role.VIEWER)
    return user


def _everything() -> str:
    """Every stored row but sessions, as JSON: what a refused request must leave as it was."""
    out = io.StringIO()
    call_command("dumpdata", exclude=["sessions"], stdout=out)
    return out.getvalue()


def test_a_viewer_opens_every_page_and_gets_403_on_every_change(client, viewer, member, org_urls):
    """A viewer reads what a member reads; every POST of every org URL, each with the fields its
    form would send, changes nothing, and each that needs a role is refused with 403."""
    assert {"members", "member-invite", "member-role", "member-remove", "invitation-revoke",
            "audit-log", "workspace-delete", "member-leave"} <= set(org_urls)
    client.force_login(member)
    members_see = {name: client.get(url).status_code for name, url in org_urls.items()}
    client.force_login(viewer)
    viewers_see = {name: client.get(url).status_code for name, url in org_urls.items()}
    assert viewers_see == members_see
    assert set(viewers_see.values()) <= {200, 302, 403, 405}  # never 404 or 500
    before = _everything()
    fields = {"name": "Acme", "email": "x@example.com", "role": "owner", "member": "vera-viewer",
              "invitation": "inv_x", "plan": "free", "slug": "x", "grace_hours": "0",
              "newest": "", "kind": "failure", "target": "http://127.0.0.1:9/"}
    guarded = [name for name in org_urls if _needs_a_role(name)]
    assert {"member-invite", "member-role", "member-remove", "invitation-revoke",
            "workspace-delete", "change-plan", "key-revoke", "rule-new", "channel-test"} <= set(guarded)
    for name, url in org_urls.items():
        if name == "member-leave":
            continue  # the one change a viewer may make: it ends only their own access
        status = client.post(url, fields).status_code
        if name in guarded:
            assert status == 403, (name, status)
    assert _everything() == before


def test_a_viewer_sees_no_button_that_changes_anything(client, viewer, org_urls):
    client.force_login(viewer)
    for name in ("source-list", "usage", "members", "alerts"):
        page = client.get(org_urls[name]).content.decode()
        forms = page.count('method="post"')
        # The header's log-out form and the members page's "Leave" are a viewer's own.
        allowed = 1 + (name == "members")
        assert forms == allowed, (name, forms)


def test_an_anonymous_visitor_is_sent_to_login_from_every_dashboard_url(client, org_urls):
    for name, url in org_urls.items():
        for method in (client.get, client.post):
            response = method(url)
            if method == client.post and response.status_code == 405:
                continue  # GET-only: refused before anything else, for anyone
            assert response.status_code == 302, (name, method.__name__)
            assert response["Location"].startswith(reverse("login") + "?next="), name


def test_an_outsider_cannot_reach_an_object_by_putting_it_under_their_own_org_id(
    client, outsider, other_workspace, object_ids
):
    """The outsider's own workspace with this workspace's object ids: 404, never the object."""
    client.force_login(outsider)
    own = {**object_ids, "org_id": other_workspace.public_id}
    checked = 0
    for pattern in _org_patterns():
        names = set(pattern.pattern.converters) - {"org_id"}
        if not names:
            continue  # pages without an object id are the outsider's own pages
        url = reverse(pattern.name, kwargs={n: own[n] for n in {"org_id", *names}})
        for method in (client.get, client.post):
            assert method(url).status_code in (404, 405), (pattern.name, method.__name__)
        checked += 1
    assert checked >= 6


def test_every_dashboard_form_refuses_a_post_without_a_csrf_token(owner, org_urls):
    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(owner)
    posts = [*org_urls.values(), *(reverse(name) for name in ACCOUNT_FORMS)]
    for url in posts:
        response = guarded.post(url, {"name": "x"})
        assert response.status_code == 403, url
        assert b"CSRF" in response.content, url
    anonymous = Client(enforce_csrf_checks=True)
    for name in ("login", "signup"):
        assert anonymous.post(reverse(name), {"username": "x"}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_secrets_are_never_stored_or_logged_in_plain(client, caplog, workspace, settings):
    # Every logger at DEBUG: Django's own loggers have levels of their own (INFO), so lower each.
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    connection.force_debug_cursor = True  # log every SQL statement with its parameters
    try:
        secrets_made, unknown = _make_keys_every_way(client, workspace)
    finally:
        connection.force_debug_cursor = False
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    stored = dump.getvalue()
    logged = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert "ingest_event" in logged or "INSERT" in logged  # SQL was really captured
    for secret in [*secrets_made, unknown]:
        for text, where in ((stored, "database"), (logged, "logs")):
            assert secret not in text, f"a full secret is in the {where}"
            assert secret[PREFIX_LENGTH:] not in text, f"a secret's hidden part is in the {where}"
    for secret in secrets_made:
        # The checks can fail: the key's row is there, by digest and prefix.
        assert digest_of(secret) in stored
        assert secret[:PREFIX_LENGTH] in stored


def _make_keys_every_way(client: Client, workspace) -> tuple[list[str], str]:
    """Keys created, rotated, added, revoked and used through services, commands and both APIs;
    and a well-formed key that was never issued but was tried."""
    made = []
    source, issued = create_source(workspace, "Vault", slug="vault", allowed_event_types=["a.b"])
    made.append(issued.secret)
    made.append(issue_key(source).secret)
    made.append(rotate_key(source).secret)
    out = io.StringIO()
    call_command("createsource", workspace.public_id, "Cmd", stdout=out)
    made.append(out.getvalue().strip().splitlines()[-1])
    cmd_source = source.__class__.objects.get(workspace=workspace, name="Cmd")
    out = io.StringIO()
    call_command("createkey", cmd_source.public_id, stdout=out)
    made.append(out.getvalue().strip().splitlines()[-1])
    out = io.StringIO()
    call_command("rotatekey", cmd_source.public_id, "--grace-hours", "1", stdout=out)
    rotated = out.getvalue().strip().splitlines()[-1]
    made.append(rotated)
    for secret in made:
        assert secret.startswith("ak_live_") and len(secret) == 48
    live = made[-1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {live}"}
    assert client.post("/api/ingest", {"status": "success", "message": "hi"},
                       content_type="application/json", **auth).status_code == 201
    assert client.post("/api/v1/ingest/events", {"events": [
        {"eventType": "x.y", "category": "support", "actor": {"email": "a@b.c"}}]},
        content_type="application/json", **auth).status_code in (202, 403)
    call_command("revokekey", made[0], stdout=io.StringIO())  # revoked by the secret itself
    revoke_key(Key.objects.get(digest=digest_of(made[1])))
    for revoked in made[:2]:
        response = client.post("/api/ingest", {"status": "success"}, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {revoked}")
        assert response.json()["error"]["code"] == "key_revoked"
    unknown = generate_secret()  # well formed but never issued: must not be logged either
    response = client.post("/api/ingest", {"status": "success"}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {unknown}")
    assert response.json()["error"]["code"] == "invalid_key"
    return made, unknown


def _production_env(tmp_path, **extra: str) -> dict[str, str]:
    env = server_env(
        DEBUG="0", SECRET_KEY="Zq8vR2mLp0Tx" * 5,
        ALLOWED_HOSTS="example.com", SQLITE_PATH=str(tmp_path / "prod.sqlite3"),
        STATIC_ROOT=collected_static(), **extra,
    )
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = _production_env(tmp_path)
    assert len(env["SECRET_KEY"]) == 60
    done = _run(env, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_production_start_up_refuses_a_missing_secret_key(tmp_path):
    env = _production_env(tmp_path)
    del env["SECRET_KEY"]
    done = _run(env, "check")
    assert done.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off" in done.stderr


PRODUCTION_PROBE = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
get_user_model().objects.create_user("pat", "pat@example.com", "a-long-unusual-passphrase")
browser = Client(HTTP_HOST="example.com")
page = browser.get("/login/", secure=True)
login = browser.post("/login/", {"username": "pat", "password": "a-long-unusual-passphrase"},
                     secure=True)
plain = Client(HTTP_HOST="example.com").get("/login/")
cookie = login.cookies.get("sessionid")
print(json.dumps({
    "status": page.status_code, "login": login.status_code, "plain": plain.status_code,
    "plain_location": plain.get("Location"), "headers": dict(page.headers),
    "session": {"secure": cookie["secure"], "httponly": cookie["httponly"],
                "samesite": cookie["samesite"]} if cookie else None,
    "csrf_secure": page.cookies["csrftoken"]["secure"] if "csrftoken" in page.cookies else None,
}))
"""


def test_production_responses_carry_security_headers_and_secure_cookies(tmp_path):
    env = _production_env(tmp_path)
    migrated = _run(env, "migrate", "--noinput", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    done = _run(env, "shell", "-c", PRODUCTION_PROBE)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert (got["status"], got["login"]) == (200, 302)
    headers = got["headers"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert got["session"] == {"secure": True, "httponly": True, "samesite": "Lax"}
    assert got["csrf_secure"] is True
    # Plain HTTP is redirected to HTTPS before any page is served.
    assert got["plain"] == 301
    assert got["plain_location"] == "https://example.com/login/"



@pytest.mark.django_db
def test_the_alert_commands_refuse_another_workspaces_channel_and_source(workspace, source):
    """An outsider's ids given under the member's org_id: refused, nothing created."""
    from django.core.management.base import CommandError

    from alerts.models import Rule
    from alerts.services import create_channel
    from workspaces.services import create_workspace

    other = create_workspace("Globex", "pro")
    theirs, _ = create_channel(other, kind="email", target="ops@globex.example")
    their_source, _ = create_source(other, "Globex source")
    mine, _ = create_channel(workspace, kind="email", target="ops@acme.example")
    with pytest.raises(CommandError, match="no channel"):
        call_command("createrule", workspace.public_id, "--channel", theirs.public_id,
                     "--on", "failure", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no source"):
        call_command("createrule", workspace.public_id, "--channel", mine.public_id,
                     "--on", "failure", "--source", their_source.public_id, stdout=io.StringIO())
    assert not Rule.objects.exists()
