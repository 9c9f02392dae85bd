"""createchannel and createrule: the new id on the last line, one clear error line otherwise."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from alerts.models import Channel, Rule
from alerts.services import create_channel
from sources.services import create_source
from workspaces.models import AuditEntry

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def refused(*args: str, match: str) -> None:
    before = (Channel.objects.count(), Rule.objects.count())
    with pytest.raises(CommandError, match=match):
        run(*args)
    assert (Channel.objects.count(), Rule.objects.count()) == before


def test_createchannel_prints_a_webhooks_id_then_its_secret_last(workspace):
    lines = run("createchannel", workspace.public_id, "--webhook", "http://127.0.0.1:9/h",
                "--name", "Ops hook")
    channel = Channel.objects.get()
    assert lines[-2] == channel.public_id and lines[-1] == channel.signing_secret
    assert lines[-1].startswith("whsec_") and channel.name == "Ops hook"
    assert AuditEntry.objects.filter(action="channel.created", actor_label="command").exists()


@pytest.mark.parametrize("option", ["--email", "--slack", "--apprise"])
def test_createchannel_prints_the_id_last_for_other_kinds(workspace, option):
    target = {"--email": "ops@example.com", "--slack": "http://127.0.0.1:9/services/T/B/X",
              "--apprise": "json://127.0.0.1:9/x"}[option]
    lines = run("createchannel", workspace.public_id, option, target)
    assert lines[-1] == Channel.objects.get().public_id


@pytest.mark.parametrize(("args", "match"), [
    (("--webhook", "ftp://x"), "--webhook: enter an https:// URL"),
    (("--email", "nope"), "--email: enter a valid email address"),
    (("--apprise", "nosuch://x"), "--apprise: not an Apprise URL"),
])
def test_createchannel_refuses_bad_input(workspace, args, match):
    refused("createchannel", workspace.public_id, *args, match=match)


def test_createchannel_refuses_an_internal_address_when_not_allowed(workspace, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refused("createchannel", workspace.public_id, "--webhook", "http://169.254.169.254/x",
            match="internal addresses")


def test_createchannel_refuses_plain_http_when_not_allowed(workspace, settings):
    settings.WEBHOOK_ALLOW_HTTP = False
    refused("createchannel", workspace.public_id, "--slack", "http://127.0.0.1:9/services/T/B/X",
            match="--slack: enter an https:// URL: notifications are not sent over plain http://")


def test_createchannel_refuses_an_unknown_workspace():
    refused("createchannel", "org_nope", "--email", "a@example.com", match="unknown workspace")


@pytest.fixture
def channel(workspace):
    return create_channel(workspace, kind="email", target="ops@example.com")[0]


def test_createrule_prints_the_rule_id_last(workspace, source, channel):
    lines = run("createrule", workspace.public_id, "--channel", channel.public_id, "--on",
                "silence", "--source", source.public_id, "--schedule", "0 2 * * *", "--tz",
                "Europe/Berlin", "--grace", "15")
    rule = Rule.objects.get()
    assert lines[-1] == rule.public_id
    assert (rule.schedule, rule.tz, rule.grace_minutes, rule.source) == (
        "0 2 * * *", "Europe/Berlin", 15, source)
    assert list(rule.channels.all()) == [channel]


@pytest.mark.parametrize(("args", "match"), [
    (("--on", "slow"), "--threshold: a slow rule needs a threshold"),
    (("--on", "silence"), "--minutes: give either every N minutes"),
    (("--on", "silence", "--schedule", "99 * * * *"), "--schedule: not a cron expression"),
    (("--on", "silence", "--minutes", "5", "--tz", "Nowhere/City"), "--tz: unknown time zone"),
    (("--on", "rejections", "--threshold", "5"), "--minutes: a rejections rule needs a window"),
    (("--on", "failure", "--minutes", "5"), "--minutes applies to silence and rejections"),
    (("--on", "slow", "--threshold", "abc"), "--threshold must be a whole number"),
])
def test_createrule_refuses_bad_input_with_a_clear_error(workspace, channel, args, match):
    refused("createrule", workspace.public_id, "--channel", channel.public_id, *args, match=match)


def test_createrule_needs_a_channel(workspace):
    refused("createrule", workspace.public_id, "--on", "failure", match="--channel")


def test_createrule_refuses_another_workspaces_channel_or_source(workspace, other_workspace,
                                                                 channel):
    theirs = create_channel(other_workspace, kind="email", target="x@example.com")[0]
    their_source, _ = create_source(other_workspace, "Theirs")
    refused("createrule", workspace.public_id, "--channel", theirs.public_id, "--on", "failure",
            match=f"no channel '{theirs.public_id}' in {workspace.public_id}")
    refused("createrule", workspace.public_id, "--channel", channel.public_id, "--on", "failure",
            "--source", their_source.public_id,
            match=f"no source '{their_source.public_id}' in {workspace.public_id}")
