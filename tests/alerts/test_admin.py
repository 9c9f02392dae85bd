"""Alerts in the Django admin: masked channels, rules changed through the services, the rest
read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert, Attempt, Channel, Delivery, DeliveryState, Purpose, Rule
from alerts.services import create_channel, create_rule
from workspaces.models import AuditEntry

pytestmark = pytest.mark.django_db

SLACK_TOKEN = "XXXXslackTOKENxxxx"


def url(model, view: str = "changelist", *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def rows(workspace, webhook):
    """A slack channel besides the webhook, a silence rule, an alert, a delivery, an attempt."""
    slack, _ = create_channel(workspace, kind="slack", name="Team",
                              target=f"http://127.0.0.1:9/services/T1/B2/{SLACK_TOKEN}")
    rule = create_rule(workspace, kind="silence", every_minutes=60, name="Hourly job",
                       channels=[webhook, slack])
    alert = Alert.objects.create(workspace=workspace, rule=rule, reason="no event for 60 min",
                                 opened_at=timezone.now())
    delivery = Delivery.objects.create(alert=alert, channel=webhook, purpose=Purpose.FIRED,
                                       state=DeliveryState.FAILED, attempts=1)
    Attempt.objects.create(delivery=delivery, status_code=500, latency_ms=31, error="HTTP 500")
    return {"slack": slack, "rule": rule, "alert": alert, "delivery": delivery}


def test_every_alerts_list_and_detail_page_renders_for_a_superuser(admin_client, rows, webhook):
    for model in (Channel, Rule, Alert, Delivery):
        assert admin_client.get(url(model)).status_code == 200, model
        assert admin_client.get(url(model), {"q": "o"}).status_code == 200, model
        obj = model.objects.first()
        assert admin_client.get(url(model, "change", obj.pk)).status_code == 200, model
    delivery_page = admin_client.get(url(Delivery, "change", rows["delivery"].pk)).content.decode()
    assert "HTTP 500" in delivery_page and "31" in delivery_page
    alert_page = admin_client.get(url(Alert, "change", rows["alert"].pk)).content.decode()
    assert rows["delivery"].public_id in alert_page


def test_no_admin_page_shows_a_signing_secret_or_a_target_past_its_host(
    admin_client, rows, webhook
):
    pages = [admin_client.get(url(Channel)), admin_client.get(url(Delivery)),
             admin_client.get(url(Rule, "change", rows["rule"].pk))]
    pages += [admin_client.get(url(Channel, "change", c.pk)) for c in (webhook, rows["slack"])]
    pages += [admin_client.get(url(Delivery, "change", rows["delivery"].pk))]
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        assert webhook.signing_secret not in html
        assert SLACK_TOKEN not in html and "/hook" not in html
    assert "http://127.0.0.1/…" in admin_client.get(url(Channel)).content.decode()


def test_channels_alerts_and_deliveries_cannot_be_added_or_edited(admin_client, rows, webhook):
    for model, obj in ((Channel, webhook), (Alert, rows["alert"]), (Delivery, rows["delivery"])):
        assert admin_client.get(url(model, "add")).status_code == 403, model
        assert admin_client.post(url(model, "change", obj.pk), {"name": "x"}).status_code == 403
    assert admin_client.get(url(Rule, "add")).status_code == 403
    webhook.refresh_from_db()
    assert webhook.name == "Ops"


def rule_form(rule: Rule, **changes) -> dict:
    data = {
        "name": rule.name, "enabled": "on", "event_type": rule.event_type, "category": "",
        "every_minutes": rule.every_minutes or "", "schedule": rule.schedule, "tz": rule.tz,
        "grace_minutes": rule.grace_minutes, "threshold": "", "window_minutes": "", "code": "",
        "reminder_minutes": "", "channels": [c.pk for c in rule.channels.all()],
        "alerts-TOTAL_FORMS": "1", "alerts-INITIAL_FORMS": "1", "alerts-MIN_NUM_FORMS": "0",
        "alerts-MAX_NUM_FORMS": "0",
    }
    data.update(changes)
    return data


def test_a_rule_edited_in_the_admin_is_checked_by_the_shared_validation(admin_client, rows):
    rule = rows["rule"]

    refused = admin_client.post(url(Rule, "change", rule.pk), rule_form(
        rule, every_minutes="", schedule="99 * * * *"))

    assert refused.status_code == 200
    assert "Not a cron expression" in refused.content.decode()
    rule.refresh_from_db()
    assert (rule.every_minutes, rule.schedule) == (60, "")


def test_a_rule_edited_in_the_admin_is_saved_through_the_service_and_audited(
    admin_client, rows, webhook
):
    rule = rows["rule"]

    saved = admin_client.post(url(Rule, "change", rule.pk), rule_form(
        rule, every_minutes="", schedule="0 3 * * *", tz="Europe/Berlin", channels=[webhook.pk]))

    assert saved.status_code == 302, saved.content.decode()[:2000]
    rule.refresh_from_db()
    assert (rule.every_minutes, rule.schedule, rule.tz) == (None, "0 3 * * *", "Europe/Berlin")
    assert list(rule.channels.all()) == [webhook]
    entry = AuditEntry.objects.get(action="rule.changed")
    assert entry.actor_label.startswith("admin: ") and entry.target_id == rule.public_id


def test_a_rule_cannot_notify_another_workspaces_channel_from_the_admin(
    admin_client, rows, other_workspace
):
    foreign, _ = create_channel(other_workspace, kind="email", target="x@globex.test")
    rule = rows["rule"]

    refused = admin_client.post(url(Rule, "change", rule.pk), rule_form(rule, channels=[foreign.pk]))

    assert refused.status_code == 200
    assert foreign not in rule.channels.all()


def test_deleting_a_channel_in_the_admin_goes_through_the_service(admin_client, rows, webhook):
    response = admin_client.post(url(Channel, "delete", webhook.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Channel.objects.filter(pk=webhook.pk).exists()
    entry = AuditEntry.objects.get(action="channel.deleted")
    assert entry.actor_label.startswith("admin: ") and entry.target_id == webhook.public_id


def test_deleting_a_rule_in_the_admin_takes_its_alerts_and_log_and_is_audited(admin_client, rows):
    rule = rows["rule"]
    confirm = admin_client.get(url(Rule, "delete", rule.pk))
    assert confirm.status_code == 200 and rows["alert"].public_id in confirm.content.decode()

    response = admin_client.post(url(Rule, "delete", rule.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Rule.objects.exists() and not Alert.objects.exists() and not Delivery.objects.exists()
    assert AuditEntry.objects.filter(action="rule.deleted", target_id=rule.public_id).exists()
