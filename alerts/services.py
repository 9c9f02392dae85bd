"""Channels and rules: create, change, delete, test. The only writers; forms, admin and commands call these.

A webhook's signing secret leaves only as a return value (at creation and when rolled).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from alerts.models import Channel, ChannelKind, Delivery, Purpose, Rule, RuleKind, RuleState
from alerts.schedule import silence_deadline
from alerts.validation import validate_channel, validate_rule
from workspaces.audit import record

# The fields create_rule/update_rule accept besides kind and channels.
RULE_FIELDS = (
    "name", "enabled", "source", "event_type", "category", "include_partial", "every_minutes",
    "schedule", "tz", "grace_minutes", "threshold", "window_minutes", "code", "reminder_minutes",
)


def new_signing_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def default_rule_name(kind: str, fields: dict[str, Any]) -> str:
    parts = [RuleKind(kind).label]
    if fields.get("source") is not None:
        parts.append(f"on {fields['source'].name}")
    if fields.get("event_type"):
        parts.append(fields["event_type"])
    if fields.get("category"):
        parts.append(fields["category"])
    return " ".join(parts)[:200]


def _audit(workspace, action: str, target, actor, details: dict | None = None) -> None:
    record(workspace, action, target, actor=actor, details=details)


@transaction.atomic
def create_channel(
    workspace, *, kind: str, target: str, name: str = "", actor=None
) -> tuple[Channel, str | None]:
    """A new channel, and its signing secret if it is a webhook (shown this once)."""
    target = validate_channel(kind, target)
    name = (name or "").strip()[:200] or ChannelKind(kind).label
    secret = new_signing_secret() if kind == ChannelKind.WEBHOOK else None
    channel = Channel.objects.create(
        workspace=workspace, kind=kind, target=target, name=name, signing_secret=secret or ""
    )
    _audit(workspace, "channel.created", channel, actor, {"kind": kind})
    return channel, secret


@transaction.atomic
def roll_secret(channel: Channel, actor=None) -> str:
    """A new signing secret for a webhook channel; the old one stops at once."""
    if channel.kind != ChannelKind.WEBHOOK:
        raise ValidationError({"kind": "only webhook channels have a signing secret"})
    secret = new_signing_secret()
    channel.signing_secret = secret
    channel.save(update_fields=["signing_secret"])
    _audit(channel.workspace, "channel.secret_rolled", channel, actor)
    return secret


@transaction.atomic
def update_channel(channel: Channel, *, name: str | None = None, target: str | None = None,
                   actor=None) -> Channel:
    changed = []
    if target is not None:
        channel.target = validate_channel(channel.kind, target)
        changed.append("target")
    if name is not None:
        channel.name = name.strip()[:200] or channel.name
        changed.append("name")
    if changed:
        channel.save(update_fields=changed)
        _audit(channel.workspace, "channel.changed", channel, actor, {"fields": changed})
    return channel


@transaction.atomic
def delete_channel(channel: Channel, actor=None) -> None:
    _audit(channel.workspace, "channel.deleted", channel, actor)
    channel.delete()


def _check_owned(workspace, channels: Iterable[Channel], fields: dict[str, Any]) -> list[Channel]:
    channels = list(channels)
    for channel in channels:
        if channel.workspace_id != workspace.pk:
            raise ValidationError({"channels": "a channel of another workspace"})
    source = fields.get("source")
    if source is not None and source.workspace_id != workspace.pk:
        raise ValidationError({"source": "a source of another workspace"})
    return channels


@transaction.atomic
def create_rule(workspace, *, kind: str, channels: Iterable[Channel] = (), actor=None,
                **fields: Any) -> Rule:
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise TypeError(f"unknown rule fields: {', '.join(sorted(unknown))}")
    cleaned = validate_rule(kind, fields)
    channel_list = _check_owned(workspace, channels, cleaned)
    cleaned["name"] = (cleaned.get("name") or "").strip()[:200] or default_rule_name(kind, cleaned)
    now = timezone.now()
    rule = Rule(workspace=workspace, kind=kind, state=RuleState.OK, state_changed_at=now,
                created_at=now, **cleaned)
    if kind == RuleKind.SILENCE:
        rule.deadline = silence_deadline(rule, now)
    rule.save()
    rule.channels.set(channel_list)
    _audit(workspace, "rule.created", rule, actor, {"kind": kind})
    return rule


@transaction.atomic
def update_rule(rule: Rule, *, channels: Iterable[Channel] | None = None, actor=None,
                **fields: Any) -> Rule:
    """Change a rule's settings; its state is kept (a silence rule's deadline is recomputed)."""
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise TypeError(f"unknown rule fields: {', '.join(sorted(unknown))}")
    rule = Rule.objects.select_for_update().get(pk=rule.pk)
    current = {name: getattr(rule, name) for name in RULE_FIELDS}
    current.update(fields)
    cleaned = validate_rule(rule.kind, current)
    channel_list = _check_owned(rule.workspace, channels or (), cleaned)
    cleaned["name"] = (cleaned.get("name") or "").strip()[:200] or rule.name
    for name, value in cleaned.items():
        setattr(rule, name, value)
    update = list(cleaned)
    if rule.kind == RuleKind.SILENCE:
        rule.deadline = silence_deadline(rule, timezone.now())
        update.append("deadline")
    rule.save(update_fields=update)
    if channels is not None:
        rule.channels.set(channel_list)
    _audit(rule.workspace, "rule.changed", rule, actor, {"fields": sorted(fields)})
    return rule


@transaction.atomic
def delete_rule(rule: Rule, actor=None) -> None:
    _audit(rule.workspace, "rule.deleted", rule, actor)
    rule.delete()


@transaction.atomic
def delete_rules_of_source(source, actor=None) -> None:
    """Delete the rules narrowed to `source`, each through delete_rule (its audit entry too):
    the source's deletion calls this first, or the cascade would take them unrecorded."""
    for rule in Rule.objects.filter(source=source).select_related("workspace").order_by("pk"):
        delete_rule(rule, actor)


@transaction.atomic
def send_test(channel: Channel, actor=None) -> Delivery:
    """A test notification to the channel, delivered by the worker like any other."""
    from alerts.delivery import enqueue_on_commit

    delivery = Delivery.objects.create(alert=None, channel=channel, purpose=Purpose.TEST)
    enqueue_on_commit(delivery)
    _audit(channel.workspace, "channel.tested", channel, actor)
    return delivery
