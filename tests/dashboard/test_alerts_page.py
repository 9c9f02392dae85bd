"""The Alerts pages: rules, channels, alerts and deliveries; who may change them; the banner."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from alerts.models import Alert, Attempt, Channel, Delivery, DeliveryState, Purpose, Rule, RuleState
from alerts.services import create_channel, create_rule
from sources.services import create_source
from workspaces.models import AuditEntry, Membership, Role

pytestmark = pytest.mark.django_db

SIGNING_SECRET = re.compile(r"whsec_[A-Za-z0-9_-]{20,}")


def url(ws, suffix: str = "") -> str:
    return f"/w/{ws.public_id}/alerts/{suffix}"


@pytest.fixture
def private_allowed(settings):
    """Channels to 127.0.0.1 (the tests' plain-http receivers), as WEBHOOK_ALLOW_PRIVATE=1 and
    WEBHOOK_ALLOW_HTTP=1 allow."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_ALLOW_HTTP = True


@pytest.fixture
def webhook(workspace, private_allowed) -> Channel:
    return create_channel(workspace, kind="webhook", target="http://127.0.0.1:9/hook", name="Ops")[0]


@pytest.fixture
def email(workspace) -> Channel:
    return create_channel(workspace, kind="email", target="oncall@acme.test", name="On call")[0]


@pytest.fixture
def rule(workspace, source, webhook) -> Rule:
    return create_rule(workspace, kind="failure", channels=[webhook], name="Backups fail",
                       source=source, event_type="backup.")


@pytest.fixture
def fired(workspace, rule, webhook) -> Alert:
    """A firing alert as the engine leaves it: the rule firing, one delivery with two attempts."""
    now = timezone.now()
    Rule.objects.filter(pk=rule.pk).update(state=RuleState.FIRING, state_changed_at=now)
    alert = Alert.objects.create(
        workspace=workspace, rule=rule, opened_at=now, reason="backup.finished failed on CRM Hub",
        events=[{"id": "6560a1b2c3d4e5f6a7b8c9d0", "source": "app_x", "status": "failure",
                 "eventType": "backup.finished", "message": "disk full",
                 "at": now.isoformat()}],
    )
    delivery = Delivery.objects.create(alert=alert, channel=webhook, purpose=Purpose.FIRED,
                                       state=DeliveryState.DELIVERED, attempts=2, delivered_at=now)
    Attempt.objects.create(delivery=delivery, at=now - timedelta(seconds=20), status_code=503,
                           latency_ms=812, error="HTTP 503")
    Attempt.objects.create(delivery=delivery, at=now, status_code=200, latency_ms=43)
    return alert


def rule_post(**fields) -> dict:
    data = {"kind": "failure", "name": "", "enabled": "on"}
    data.update({k: v for k, v in fields.items() if v is not None})
    return data


# ---- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["owner", "member"])
def test_everyone_in_the_workspace_sees_rules_history_and_channels(
    client, request, persona, workspace, fired, webhook, email
):
    client.force_login(request.getfixturevalue(persona))

    response = client.get(url(workspace))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Backups fail" in page and "failed events (source CRM Hub, eventType starting backup.)" in page
    assert 'badge-firing">firing' in page
    assert "backup.finished failed on CRM Hub" in page and fired.public_id in page
    assert "Ops" in page and "http://127.0.0.1/…" in page and "oncall@acme.test" in page
    assert "/hook" not in page  # a target's path may hold a token: masked after the host
    assert not SIGNING_SECRET.search(page)
    can_change = persona == "owner"
    assert ("New rule" in page) is can_change
    assert ("Send test" in page) is can_change
    assert (f"rules/{fired.rule.public_id}/edit/" in page) is can_change


def test_an_alert_shows_why_its_events_and_every_delivery_attempt(client, member, workspace, fired):
    client.force_login(member)

    response = client.get(url(workspace, f"{fired.public_id}/"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "backup.finished failed on CRM Hub" in page
    assert "disk full" in page and "/events/6560a1b2c3d4e5f6a7b8c9d0/" in page
    assert "delivered" in page and "Ops" in page
    assert "503" in page and "812 ms" in page and "HTTP 503" in page
    assert "200" in page and "43 ms" in page


def test_a_channels_log_lists_its_deliveries_with_their_attempts(client, member, workspace, fired,
                                                                 webhook):
    client.force_login(member)

    response = client.get(url(workspace, f"channels/{webhook.public_id}/"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Backups fail" in page and "812 ms" in page and "HTTP 503" in page
    assert "Send test" not in page  # members read only


def test_an_outsider_cannot_see_another_workspaces_alert_or_channel_under_their_own_org(
    client, outsider, other_workspace, fired, webhook
):
    client.force_login(outsider)
    delivery = fired.deliveries.get()
    for suffix in (f"{fired.public_id}/", f"channels/{webhook.public_id}/",
                   f"deliveries/{delivery.public_id}/", f"rules/{fired.rule.public_id}/edit/"):
        assert client.get(url(other_workspace, suffix)).status_code == 404, suffix
        assert client.get(url(fired.workspace, suffix)).status_code == 404, suffix


# ---- who may change ----------------------------------------------------------------------------


@pytest.fixture
def viewer(make_user, workspace):
    user = make_user("vera-viewer")
    Membership.objects.create(workspace=workspace, user=user, role=Role.VIEWER)
    return user


@pytest.mark.parametrize("persona", ["member", "viewer"])
def test_members_and_viewers_get_403_on_every_changing_url_and_nothing_changes(
    client, request, persona, workspace, rule, webhook
):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(url(workspace)).status_code == 200
    changing = ["rules/new/", f"rules/{rule.public_id}/edit/", f"rules/{rule.public_id}/delete/",
                "channels/new/", f"channels/{webhook.public_id}/roll/",
                f"channels/{webhook.public_id}/delete/", f"channels/{webhook.public_id}/secret/"]
    for suffix in changing:
        assert client.get(url(workspace, suffix)).status_code == 403, suffix
    for suffix in [*changing, f"channels/{webhook.public_id}/test/"]:
        assert client.post(url(workspace, suffix), rule_post(target="ops@x.test")).status_code == 403
    assert Rule.objects.count() == 1 and Channel.objects.count() == 1
    assert not Delivery.objects.exists()
    webhook_before = webhook.signing_secret
    webhook.refresh_from_db()
    assert webhook.signing_secret == webhook_before


# ---- rules -------------------------------------------------------------------------------------


def test_an_owner_creates_a_failure_rule_that_notifies_a_channel(
    client, owner, workspace, source, webhook
):
    client.force_login(owner)
    assert client.get(url(workspace, "rules/new/")).status_code == 200

    response = client.post(url(workspace, "rules/new/"), rule_post(
        name="Nightly backup", source=source.public_id, event_type=" backup.finished ",
        include_partial="on", channels=[webhook.public_id], reminder_minutes="30",
        threshold_ms="999",  # a slow rule's field: ignored for a failure rule
    ))

    assert response.status_code == 302 and response["Location"] == url(workspace)
    rule = Rule.objects.get()
    assert (rule.name, rule.kind, rule.source, rule.event_type) == (
        "Nightly backup", "failure", source, "backup.finished")
    assert rule.include_partial and rule.enabled and rule.reminder_minutes == 30
    assert rule.threshold is None
    assert list(rule.channels.all()) == [webhook]
    assert rule.state == RuleState.OK
    entry = AuditEntry.objects.get(action="rule.created")
    assert (entry.actor, entry.target_id) == (owner, rule.public_id)


@pytest.mark.parametrize("fields, errors", [
    ({"kind": "silence", "every_minutes": "", "schedule": ""}, {"id_every_minutes"}),
    ({"kind": "silence", "schedule": "61 * * * *"}, {"id_schedule"}),
    ({"kind": "silence", "schedule": "0 2 * * *", "tz": "Mars/Olympus"}, {"id_tz"}),
    ({"kind": "slow"}, {"id_threshold_ms"}),
    ({"kind": "rejections", "code": "quota_exceeded"}, {"id_threshold_count", "id_window_minutes"}),
    ({"kind": "quota", "threshold_percent": "5000"}, {"id_threshold_percent"}),
    ({"kind": "nonsense"}, {"id_kind"}),
])
def test_a_rule_with_bad_input_is_refused_on_its_fields_and_nothing_is_made(
    client, owner, workspace, fields, errors
):
    client.force_login(owner)

    response = client.post(url(workspace, "rules/new/"), rule_post(**fields))

    assert response.status_code == 400
    page = response.content.decode()
    flagged = set(re.findall(r'class="field-error" id="(id_\w+)-error"', page))
    assert flagged == errors, page[page.find("field-error") - 400:][:1200]
    assert not Rule.objects.exists()


def test_a_silence_rule_on_a_cron_schedule_in_a_time_zone_is_saved(client, owner, workspace):
    client.force_login(owner)

    response = client.post(url(workspace, "rules/new/"), rule_post(
        kind="silence", name="Nightly export", event_type="export.done",
        schedule="30  2 * * *", tz="Europe/Berlin", grace_minutes="15", every_minutes="",
    ))

    assert response.status_code == 302
    rule = Rule.objects.get()
    assert (rule.schedule, rule.tz, rule.grace_minutes, rule.every_minutes) == (
        "30 2 * * *", "Europe/Berlin", 15, None)
    assert rule.deadline is not None


def test_editing_a_rule_changes_its_fields_and_channels_but_never_its_kind(
    client, owner, workspace, rule, webhook, email
):
    client.force_login(owner)
    page = client.get(url(workspace, f"rules/{rule.public_id}/edit/")).content.decode()
    assert 'value="backup."' in page and "Backups fail" in page

    response = client.post(url(workspace, f"rules/{rule.public_id}/edit/"), rule_post(
        kind="slow", name="Backups fail", event_type="backup.finished", source="",
        channels=[email.public_id], threshold_ms="10",
    ))

    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.kind == "failure" and rule.threshold is None
    assert rule.event_type == "backup.finished" and rule.source is None
    assert list(rule.channels.all()) == [email]


def test_an_edit_with_bad_input_changes_nothing(client, owner, workspace, settings):
    client.force_login(owner)
    rule = create_rule(workspace, kind="silence", every_minutes=60, name="Hourly")

    response = client.post(url(workspace, f"rules/{rule.public_id}/edit/"), rule_post(
        kind="silence", name="Renamed", every_minutes="", schedule="not cron",
    ))

    assert response.status_code == 400
    assert "Not a cron expression" in response.content.decode()
    rule.refresh_from_db()
    assert (rule.name, rule.every_minutes, rule.schedule) == ("Hourly", 60, "")


def test_a_rule_cannot_name_another_workspaces_source_or_channel(
    client, owner, workspace, other_workspace, private_allowed
):
    foreign_source, _ = create_source(other_workspace, "Theirs")
    foreign_channel, _ = create_channel(other_workspace, kind="email", target="x@globex.test")
    client.force_login(owner)

    response = client.post(url(workspace, "rules/new/"), rule_post(
        source=foreign_source.public_id, channels=[foreign_channel.public_id]))

    assert response.status_code == 400
    assert not Rule.objects.exists()


def test_deleting_a_rule_asks_first_then_deletes_it_with_its_alerts(
    client, owner, workspace, fired
):
    client.force_login(owner)
    rule = fired.rule
    confirm = client.get(url(workspace, f"rules/{rule.public_id}/delete/"))
    assert confirm.status_code == 200 and "Its 1 alert" in confirm.content.decode()
    assert Rule.objects.filter(pk=rule.pk).exists()

    response = client.post(url(workspace, f"rules/{rule.public_id}/delete/"))

    assert response.status_code == 302
    assert not Rule.objects.exists() and not Alert.objects.exists()
    assert Channel.objects.count() == 1


# ---- channels ----------------------------------------------------------------------------------


def test_a_webhooks_signing_secret_is_shown_once_after_a_redirect(
    client, owner, workspace, private_allowed
):
    client.force_login(owner)

    posted = client.post(url(workspace, "channels/new/"), {
        "kind": "webhook", "name": "Pager", "target": "http://127.0.0.1:9/hooks/ackly"})

    assert posted.status_code == 302
    channel = Channel.objects.get()
    assert posted["Location"] == url(workspace, f"channels/{channel.public_id}/secret/")
    assert "whsec_" not in posted["Location"]
    shown = client.get(posted["Location"])
    assert shown.status_code == 200 and "no-store" in shown["Cache-Control"]
    assert SIGNING_SECRET.findall(shown.content.decode()) == [channel.signing_secret]
    again = client.get(posted["Location"])
    assert again.status_code == 200
    assert not SIGNING_SECRET.search(again.content.decode())
    assert "no longer available" in again.content.decode()


@pytest.mark.parametrize("target", [
    "https://127.0.0.1:8000/hook", "https://169.254.169.254/latest/meta-data", "https://10.1.2.3/x",
])
def test_a_webhook_to_an_internal_address_is_refused_on_the_target_field(
    client, owner, workspace, target
):
    client.force_login(owner)

    response = client.post(url(workspace, "channels/new/"), {
        "kind": "webhook", "name": "Sneaky", "target": target})

    assert response.status_code == 400
    page = response.content.decode()
    assert re.search(r'has-error">\s*<label for="id_target"', page)
    assert "internal addresses" in page
    assert not Channel.objects.exists()


def test_a_plain_http_webhook_is_refused_on_the_target_field(client, owner, workspace, settings):
    settings.WEBHOOK_ALLOW_HTTP = False  # as in production
    client.force_login(owner)

    response = client.post(url(workspace, "channels/new/"), {
        "kind": "webhook", "name": "Clear text", "target": "http://hooks.example.com/ackly"})

    assert response.status_code == 400
    page = response.content.decode()
    assert re.search(r'has-error">\s*<label for="id_target"', page)
    assert "notifications are not sent over plain http://" in page
    assert not Channel.objects.exists()


def test_an_email_channel_needs_a_valid_address_and_has_no_secret(client, owner, workspace):
    client.force_login(owner)
    bad = client.post(url(workspace, "channels/new/"), {"kind": "email", "target": "nope"})
    assert bad.status_code == 400 and "Enter a valid email address" in bad.content.decode()
    assert not Channel.objects.exists()

    good = client.post(url(workspace, "channels/new/"), {"kind": "email", "target": "a@acme.test"})

    assert good.status_code == 302 and good["Location"] == url(workspace)
    channel = Channel.objects.get()
    assert channel.name == "Email" and channel.signing_secret == ""


def test_a_slack_url_shows_only_its_host(client, member, workspace, private_allowed):
    create_channel(workspace, kind="slack", name="Team",
                   target="http://127.0.0.1:9/services/T0001/B0002/XXXXtokenXXXX")
    client.force_login(member)

    page = client.get(url(workspace)).content.decode()

    assert "http://127.0.0.1/…" in page and "XXXXtoken" not in page and "T0001" not in page


def test_rolling_a_secret_asks_first_then_shows_the_new_one_once(client, owner, workspace, webhook):
    client.force_login(owner)
    old = webhook.signing_secret
    confirm = client.get(url(workspace, f"channels/{webhook.public_id}/roll/"))
    assert confirm.status_code == 200 and "stops signing at once" in confirm.content.decode()
    webhook.refresh_from_db()
    assert webhook.signing_secret == old  # looking at the question changes nothing

    posted = client.post(url(workspace, f"channels/{webhook.public_id}/roll/"))

    assert posted.status_code == 302
    webhook.refresh_from_db()
    assert webhook.signing_secret != old
    shown = client.get(posted["Location"]).content.decode()
    assert SIGNING_SECRET.findall(shown) == [webhook.signing_secret]
    entry = AuditEntry.objects.get(action="channel.secret_rolled")
    assert (entry.actor, entry.target_id) == (owner, webhook.public_id)
    assert webhook.signing_secret not in str(entry.details) and old not in str(entry.details)
    assert not SIGNING_SECRET.search(client.get(posted["Location"]).content.decode())


def test_only_a_webhook_has_a_secret_to_roll(client, owner, workspace, email):
    client.force_login(owner)
    assert client.get(url(workspace, f"channels/{email.public_id}/roll/")).status_code == 404
    assert client.post(url(workspace, f"channels/{email.public_id}/roll/")).status_code == 404


def test_deleting_a_channel_names_the_rules_that_notify_it(client, owner, workspace, rule, webhook):
    client.force_login(owner)
    confirm = client.get(url(workspace, f"channels/{webhook.public_id}/delete/")).content.decode()
    assert "These rules stop notifying it" in confirm and "Backups fail" in confirm

    response = client.post(url(workspace, f"channels/{webhook.public_id}/delete/"))

    assert response.status_code == 302
    assert not Channel.objects.exists()
    assert list(Rule.objects.get().channels.all()) == []


class _Hook(BaseHTTPRequestHandler):
    """A receiver that answers 204 and keeps the headers of what it received."""

    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Hook.seen.append(dict(self.headers.items()))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hook_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_send_test_delivers_and_its_page_shows_the_attempt(
    client, owner, workspace, private_allowed, hook_url, settings, django_capture_on_commit_callbacks
):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend",
                                  "QUEUES": ["alerts"]}}
    channel, _ = create_channel(workspace, kind="webhook", target=hook_url, name="Receiver")
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True):
        posted = client.post(url(workspace, f"channels/{channel.public_id}/test/"))

    delivery = Delivery.objects.get()
    assert posted.status_code == 302
    assert posted["Location"] == url(workspace, f"deliveries/{delivery.public_id}/")
    assert (delivery.purpose, delivery.state, delivery.alert) == ("test", "delivered", None)
    assert _Hook.seen and _Hook.seen[0]["Ackly-Delivery"] == delivery.public_id
    page = client.get(posted["Location"]).content.decode()
    assert "Test notification to Receiver" in page and "Delivered." in page
    assert '<span class="mono">204</span>' in page
    assert 'http-equiv="refresh"' not in page  # done: the page stops reloading


def test_a_channel_stored_with_plain_http_says_its_sends_are_refused(
    client, member, workspace, webhook, settings
):
    secure, _ = create_channel(workspace, kind="slack", target="https://127.0.0.1:9/services/T/B/X")
    settings.WEBHOOK_ALLOW_HTTP = False  # as in production
    client.force_login(member)

    stored = client.get(url(workspace, f"channels/{webhook.public_id}/")).content.decode()
    fine = client.get(url(workspace, f"channels/{secure.public_id}/")).content.decode()

    assert "This channel's URL is not https://" in stored
    assert "This channel's URL is not https://" not in fine


def test_send_test_past_the_channels_limit_queues_nothing_and_says_so(
    client, owner, workspace, webhook, email, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.CHANNEL_TEST_RATE_LIMIT = "2/d"  # a day's window: the test never straddles two
    queued: list[int] = []
    monkeypatch.setattr("alerts.delivery.enqueue", lambda pk, run_after=None: queued.append(pk))
    client.force_login(owner)
    test_url = url(workspace, f"channels/{webhook.public_id}/test/")

    with django_capture_on_commit_callbacks(execute=True):
        sent = [client.post(test_url) for _ in range(2)]
        over = client.post(test_url)

    assert [response.status_code for response in sent] == [302, 302]
    assert all("/deliveries/dlv_" in response["Location"] for response in sent)
    assert over.status_code == 302
    assert over["Location"] == url(workspace, f"channels/{webhook.public_id}/")
    page = client.get(over["Location"]).content.decode()
    assert "Too many test notifications: at most 2 a day to one channel." in page
    assert "Nothing was sent to Ops" in page
    assert Delivery.objects.filter(channel=webhook).count() == 2 and len(queued) == 2
    assert AuditEntry.objects.filter(action="channel.tested").count() == 2


def test_each_channel_has_its_own_send_test_limit(
    client, owner, workspace, webhook, email, settings, monkeypatch
):
    settings.CHANNEL_TEST_RATE_LIMIT = "1/d"
    monkeypatch.setattr("alerts.delivery.enqueue", lambda pk, run_after=None: None)
    client.force_login(owner)
    client.post(url(workspace, f"channels/{webhook.public_id}/test/"))

    other = client.post(url(workspace, f"channels/{email.public_id}/test/"))

    assert "/deliveries/dlv_" in other["Location"]
    assert Delivery.objects.filter(channel=email).count() == 1


@pytest.mark.parametrize(("rate", "words"), [
    ("5/m", "5 a minute"), ("30/h", "30 an hour"), ("10/15m", "10 per 15 minutes"), ("2/1d", "2 a day"),
])
def test_a_rate_reads_in_words(rate, words):
    from alerts.views import per_period

    assert per_period(rate) == words


def test_a_pending_test_delivery_page_reloads_itself(client, owner, workspace, webhook):
    delivery = Delivery.objects.create(channel=webhook, purpose=Purpose.TEST)
    client.force_login(owner)

    page = client.get(url(workspace, f"deliveries/{delivery.public_id}/")).content.decode()

    assert 'http-equiv="refresh"' in page and "No attempt yet." in page


# ---- the banner --------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["events/", "sources/", "alerts/", "usage/"])
def test_a_firing_alert_shows_a_banner_on_every_page_of_its_workspace(
    client, member, workspace, fired, page
):
    client.force_login(member)

    html = client.get(f"/w/{workspace.public_id}/{page}").content.decode()

    banner = re.search(r'<div id="alert-banner" class="alert-banner" role="alert"[^>]*>(.*?)</div>', html)
    assert banner, html[:500]
    assert "Backups fail" in banner.group(1)
    assert f'href="/w/{workspace.public_id}/alerts/{fired.public_id}/"' in banner.group(1)


def test_no_banner_once_resolved_nor_for_another_workspaces_alert(
    client, owner, outsider, workspace, other_workspace, fired
):
    client.force_login(outsider)
    html = client.get(f"/w/{other_workspace.public_id}/events/").content.decode()
    assert re.search(r'<div id="alert-banner" [^>]*></div>', html)
    fired.resolved_at = timezone.now()
    fired.save(update_fields=["resolved_at"])
    client.force_login(owner)
    html = client.get(f"/w/{workspace.public_id}/events/").content.decode()
    assert re.search(r'<div id="alert-banner" [^>]*></div>', html)


def test_an_apprise_channel_is_checked_by_apprise_and_shown_up_to_its_host(
    client, owner, workspace, private_allowed
):
    client.force_login(owner)
    unknown = client.post(url(workspace, "channels/new/"), {
        "kind": "apprise", "target": "nosuchscheme://host/token"})
    assert unknown.status_code == 400 and "Apprise URL Apprise understands" in unknown.content.decode()
    assert not Channel.objects.exists()

    made = client.post(url(workspace, "channels/new/"), {
        "kind": "apprise", "name": "ntfy", "target": "json://127.0.0.1:9/ackly?token=s3cr3t"})

    assert made.status_code == 302 and made["Location"] == url(workspace)
    page = client.get(url(workspace)).content.decode()
    assert "json://127.0.0.1/…" in page and "s3cr3t" not in page
