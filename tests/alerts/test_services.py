"""Channels and rules through the services: validation, ownership, SSRF at save time, secrets."""

import pytest
from django.core.exceptions import ValidationError

from alerts.models import Alert, Channel, ChannelKind, Delivery, Purpose, Rule, RuleKind, RuleState
from alerts.services import (
    create_channel,
    create_rule,
    delete_rule,
    roll_secret,
    send_test,
    update_rule,
)
from alerts.validation import validate_rule
from sources.services import create_source, delete_source
from workspaces.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_refused(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False  # as in production
    settings.WEBHOOK_ALLOW_HTTP = False


@pytest.fixture
def private_allowed(settings, _private_refused):
    settings.WEBHOOK_ALLOW_PRIVATE = True


def test_a_webhook_channel_gets_a_signing_secret_returned_once(workspace, private_allowed):
    channel, secret = create_channel(
        workspace, kind="webhook", target="https://127.0.0.1:9/hook", name="Ops"
    )
    assert secret and secret.startswith("whsec_")
    assert channel.public_id.startswith("chn_") and channel.signing_secret == secret
    new = roll_secret(channel)
    assert new != secret
    channel.refresh_from_db()
    assert channel.signing_secret == new
    assert AuditEntry.objects.filter(workspace=workspace, action="channel.secret_rolled").exists()


def test_an_email_channel_has_no_secret_and_needs_a_valid_address(workspace):
    channel, secret = create_channel(workspace, kind="email", target="ops@example.com")
    assert secret is None and channel.kind == ChannelKind.EMAIL
    with pytest.raises(ValidationError) as error:
        create_channel(workspace, kind="email", target="not-an-address")
    assert "target" in error.value.message_dict


@pytest.mark.parametrize("url", [
    "https://127.0.0.1:8000/hook", "https://10.0.0.5/x", "https://169.254.169.254/latest/meta-data",
    "https://[::1]/x", "https://localhost/x", "https://192.168.1.1/x",
])
def test_an_internal_address_is_refused_at_save_time(workspace, url):
    with pytest.raises(ValidationError) as error:
        create_channel(workspace, kind="webhook", target=url)
    assert "internal addresses" in error.value.message_dict["target"][0]
    assert not Channel.objects.exists()


def test_a_non_http_webhook_url_is_refused(workspace):
    with pytest.raises(ValidationError) as error:
        create_channel(workspace, kind="webhook", target="ftp://example.com/x")
    assert error.value.message_dict["target"] == ["enter an https:// URL"]


@pytest.mark.parametrize("kind", ["webhook", "slack"])
def test_a_plain_http_url_is_refused_for_webhook_and_slack(workspace, private_allowed, kind):
    with pytest.raises(ValidationError) as error:
        create_channel(workspace, kind=kind, target="http://127.0.0.1:9/hook")
    assert error.value.message_dict["target"] == [
        "enter an https:// URL: notifications are not sent over plain http://"
    ]
    assert not Channel.objects.exists()


def test_a_plain_http_url_is_accepted_with_webhook_allow_http(workspace, private_allowed, settings):
    settings.WEBHOOK_ALLOW_HTTP = True  # a local receiver in development
    channel, _ = create_channel(workspace, kind="webhook", target="http://127.0.0.1:9/hook")
    assert channel.target == "http://127.0.0.1:9/hook"


def test_an_apprise_url_that_apprise_does_not_know_is_refused(workspace):
    with pytest.raises(ValidationError):
        create_channel(workspace, kind="apprise", target="nosuchscheme://x/y")
    with pytest.raises(ValidationError) as error:
        create_channel(workspace, kind="apprise", target="json://127.0.0.1:9/x")
    assert "internal addresses" in error.value.message_dict["target"][0]


def test_the_masked_target_hides_the_path(workspace, private_allowed):
    channel, _ = create_channel(
        workspace, kind="slack", target="https://127.0.0.1:9/services/T000/B000/XXXX"
    )
    assert channel.masked_target == "https://127.0.0.1/…"


def test_a_silence_rule_gets_its_first_deadline(workspace, source):
    rule = create_rule(workspace, kind="silence", source=source, every_minutes=60, grace_minutes=5)
    assert rule.public_id.startswith("rul_") and rule.state == RuleState.OK
    assert (rule.deadline - rule.created_at).total_seconds() == 65 * 60
    assert rule.name == "Silence on CRM Hub"


def test_a_cron_silence_rule_follows_its_time_zone(workspace):
    rule = create_rule(workspace, kind="silence", schedule="0 2 * * *", tz="Europe/Berlin",
                       grace_minutes=10)
    local = rule.deadline.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (2, 10)


@pytest.mark.parametrize(("kind", "fields", "field"), [
    ("silence", {}, "every_minutes"),
    ("silence", {"every_minutes": 5, "schedule": "* * * * *"}, "every_minutes"),
    ("silence", {"schedule": "61 * * * *"}, "schedule"),
    ("silence", {"schedule": "0 2 * * *", "tz": "Mars/Olympus"}, "tz"),
    ("slow", {}, "threshold"),
    ("rejections", {"threshold": 5}, "window_minutes"),
    ("failure", {"category": "sales"}, "category"),
    ("nonsense", {}, "kind"),
    ("slow", {"threshold": -1}, "threshold"),
])
def test_bad_rule_input_names_the_field(kind, fields, field):
    with pytest.raises(ValidationError) as error:
        validate_rule(kind, fields)
    assert field in error.value.message_dict


def test_a_rule_cannot_use_another_workspaces_channel_or_source(workspace, other_workspace):
    theirs, _ = create_channel(other_workspace, kind="email", target="x@example.com")
    their_source, _ = create_source(other_workspace, "Theirs")
    with pytest.raises(ValidationError) as error:
        create_rule(workspace, kind="failure", channels=[theirs])
    assert "channels" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        create_rule(workspace, kind="failure", source=their_source)
    assert "source" in error.value.message_dict
    assert not Rule.objects.exists()


def test_updating_a_rule_keeps_its_state_and_validates(workspace):
    rule = create_rule(workspace, kind="slow", threshold=1000)
    rule = update_rule(rule, threshold=2000, reminder_minutes=30)
    assert (rule.threshold, rule.reminder_minutes, rule.kind) == (2000, 30, RuleKind.SLOW)
    with pytest.raises(ValidationError):
        update_rule(rule, threshold=None)


def test_send_test_creates_a_pending_test_delivery(workspace, django_capture_on_commit_callbacks,
                                                   monkeypatch):
    queued = []
    monkeypatch.setattr("alerts.delivery.enqueue", lambda pk, run_after=None: queued.append(pk))
    channel, _ = create_channel(workspace, kind="email", target="ops@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        delivery = send_test(channel)
    assert delivery.public_id.startswith("dlv_") and delivery.purpose == Purpose.TEST
    assert queued == [delivery.pk] and Delivery.objects.get().alert is None


def _logged(entry: AuditEntry) -> tuple:
    return entry.action, entry.target_type, entry.actor_id, entry.actor_label, entry.details


def test_deleting_a_source_logs_each_of_its_rules_as_deleting_the_rule_does(workspace, owner):
    doomed, _ = create_source(workspace, "Doomed")
    by_hand = create_rule(workspace, kind="failure", source=doomed, name="By hand")
    failing = create_rule(workspace, kind="failure", source=doomed, name="Failures")
    silent = create_rule(workspace, kind="silence", source=doomed, every_minutes=60)
    Alert.objects.create(workspace=workspace, rule=failing, reason="failed")
    anywhere = create_rule(workspace, kind="failure", name="Any source")
    delete_rule(by_hand, actor=owner)
    direct = AuditEntry.objects.get(action="rule.deleted", target_id=by_hand.public_id)

    delete_source(doomed, actor=owner)

    cascaded = AuditEntry.objects.filter(action="rule.deleted").exclude(pk=direct.pk)
    assert sorted(cascaded.values_list("target_id", flat=True)) == sorted(
        [failing.public_id, silent.public_id]
    )
    assert [_logged(entry) for entry in cascaded] == [_logged(direct)] * 2
    assert list(Rule.objects.values_list("pk", flat=True)) == [anywhere.pk]
    assert not Alert.objects.exists()
    assert AuditEntry.objects.filter(action="source.deleted", target_id=doomed.public_id).exists()


def test_a_source_deletion_that_fails_leaves_its_rules_and_logs_nothing(workspace, monkeypatch):
    doomed, _ = create_source(workspace, "Doomed")
    rule = create_rule(workspace, kind="failure", source=doomed)

    def refuse(self, *args, **kwargs):
        raise RuntimeError("the database refused")

    monkeypatch.setattr(type(doomed), "delete", refuse)
    with pytest.raises(RuntimeError):
        delete_source(doomed)

    assert Rule.objects.filter(pk=rule.pk).exists()
    assert not AuditEntry.objects.filter(action__in=["rule.deleted", "source.deleted"]).exists()
