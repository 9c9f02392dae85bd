"""The Alerts pages of a workspace: rules, their alerts, channels and every delivery attempt.

Everyone in the workspace reads them; owners and admins change rules and channels, roll a
webhook's signing secret and send tests (403 for the others). Views parse, call a service of
alerts/services.py (which validates through alerts/validation.py and writes the audit log),
and render; a ValidationError lands on the form's fields.

A webhook's signing secret is shown once, as the Sources page shows a key: the POST that makes
it holds it in the session (ackly/handover.py) and redirects to the channel's secret page,
whose first GET takes it out again.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ackly import handover
from ackly.ids import is_public_id
from alerts.forms import KIND_FIELDS, ChannelForm, RuleForm
from alerts.models import (
    Alert,
    Attempt,
    Channel,
    ChannelKind,
    Delivery,
    DeliveryState,
    Rule,
    RuleKind,
)
from alerts.services import (
    create_channel,
    create_rule,
    delete_channel,
    delete_rule,
    roll_secret,
    send_test,
    update_rule,
)
from alerts.validation import scheme_refused
from workspaces.access import WorkspaceRequest, workspace_view
from workspaces.accounts import fixed_key, spent
from workspaces.roles import Permission

# Owners and admins change rules and channels; everyone else reads (403 on the changing URLs).
manage_alerts = workspace_view(permission=Permission.MANAGE_ALERTS)

# How many alerts the Alerts page lists, and deliveries a channel's log shows.
HISTORY_LIMIT = 50
DELIVERY_LOG_LIMIT = 50
# A pending test's page reloads itself this often while the worker may still be on it.
PENDING_REFRESH_SECONDS = 2
PENDING_REFRESH_FOR = timedelta(minutes=2)
SECRETS_TO_SHOW = "alerts.secrets_to_show"
_PERIODS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


def per_period(rate: str) -> str:
    """A django-ratelimit rate in words: "5/m" is "5 a minute", "10/15m" "10 per 15 minutes"."""
    count, _, period = rate.partition("/")
    number, unit = period[:-1], _PERIODS[period[-1]]
    if number and number != "1":
        return f"{count} per {number} {unit}s"
    return f"{count} {'an' if unit == 'hour' else 'a'} {unit}"


def _can_change(request: WorkspaceRequest) -> bool:
    return request.membership.can(Permission.MANAGE_ALERTS)


def _object_of(model, request: WorkspaceRequest, public_id: str, prefix: str):
    """The workspace's object with this public id, else 404 (tenancy is checked here)."""
    if not is_public_id(public_id, prefix):
        raise Http404("Not found")  # junk (a NUL byte, say) never reaches the database
    if model is Delivery:
        return get_object_or_404(
            Delivery.objects.select_related("channel", "alert__rule"),
            channel__workspace=request.workspace, public_id=public_id,
        )
    return get_object_or_404(model, workspace=request.workspace, public_id=public_id)


def _with_attempts(deliveries):
    return deliveries.select_related("channel").prefetch_related(
        Prefetch("attempt_log", queryset=Attempt.objects.order_by("at", "id"))
    )


def watching(rule: Rule) -> str:
    """What a rule looks at, in a few words, for the rules table."""
    where = []
    if rule.source_id:
        where.append(f"source {rule.source.name}" if rule.source else "one source")
    if rule.event_type:
        kind = "eventType starting" if rule.event_type.endswith(".") else "eventType"
        where.append(f"{kind} {rule.event_type}")
    if rule.category:
        where.append(f"category {rule.category}")
    scope = ", ".join(where) or "any event"
    if rule.kind == RuleKind.FAILURE:
        what = "failed" + (" or partial" if rule.include_partial else "") + f" events ({scope})"
    elif rule.kind == RuleKind.SILENCE:
        expected = (f"every {rule.every_minutes} min" if rule.every_minutes
                    else f"on “{rule.schedule}” ({rule.tz})")
        grace = f", {rule.grace_minutes} min grace" if rule.grace_minutes else ""
        what = f"no event ({scope}) expected {expected}{grace}"
    elif rule.kind == RuleKind.SLOW:
        what = f"events slower than {rule.threshold} ms ({scope})"
    elif rule.kind == RuleKind.REJECTIONS:
        code = rule.code or "any code"
        source = f", {rule.source.name}" if rule.source_id and rule.source else ""
        what = f"{rule.threshold}+ refusals ({code}{source}) within {rule.window_minutes} min"
    else:
        what = (f"{rule.threshold} % of the monthly quota" if rule.threshold
                else "80 % and 100 % of the monthly quota")
    return what


@require_GET
@workspace_view()
def alert_list(request: WorkspaceRequest) -> HttpResponse:
    """Rules with their state and channels, the channels, and the alerts, newest first."""
    workspace = request.workspace
    rules = list(
        Rule.objects.filter(workspace=workspace).select_related("source")
        .prefetch_related("channels").order_by("name", "id")
    )
    rows = [(rule, watching(rule)) for rule in rules]
    channels = list(
        Channel.objects.filter(workspace=workspace).annotate(
            failed=Count("deliveries", filter=Q(deliveries__state=DeliveryState.FAILED))
        ).order_by("name", "id")
    )
    alerts = list(
        Alert.objects.filter(workspace=workspace).select_related("rule")
        .annotate(notifications=Count("deliveries")).order_by("-opened_at", "-id")[:HISTORY_LIMIT]
    )
    context = {
        "rules": rows,
        "channels": channels,
        "alerts": alerts,
        "firing": sum(1 for a in alerts if a.resolved_at is None),
        "can_change": _can_change(request),
        "history_limit": HISTORY_LIMIT,
        # The live pages' socket: the banner and the "changed" note follow it here too.
        "live_config": {"socketPath": f"/ws/workspaces/{workspace.public_id}/"},
    }
    return render(request, "alerts/list.html", context)


@require_GET
@workspace_view()
def alert_detail(request: WorkspaceRequest, alr_id: str) -> HttpResponse:
    """One alert: why it fired, its triggering events, each notification and every attempt."""
    alert = _object_of(Alert, request, alr_id, "alr")
    deliveries = _with_attempts(alert.deliveries.order_by("created_at", "id"))
    events = [
        {
            "id": event.get("id") or "", "status": event.get("status") or "",
            "label": event.get("eventType") or event.get("category") or "",
            "message": event.get("message") or "", "duration_ms": event.get("durationMs"),
            "at": parse_datetime(str(event.get("at") or "")),
        }
        for event in alert.events if isinstance(event, dict)
    ]
    return render(request, "alerts/alert_detail.html", {
        "alert": alert, "rule": alert.rule, "events": events, "deliveries": deliveries,
    })


def _rule_form_page(request: WorkspaceRequest, form: RuleForm, status: int) -> HttpResponse:
    return render(request, "alerts/rule_form.html", {
        "form": form, "rule": form.rule, "kind_fields": KIND_FIELDS,
        "has_channels": Channel.objects.filter(workspace=request.workspace).exists(),
    }, status=status)


@manage_alerts
@require_http_methods(["GET", "POST"])
def rule_new(request: WorkspaceRequest) -> HttpResponse:
    """Create a rule; its kind decides which fields count."""
    posted = request.method == "POST"
    form = RuleForm(request.POST if posted else None, workspace=request.workspace,
                    initial=None if posted else {"kind": request.GET.get("kind", "failure")})
    if posted and form.is_valid():
        try:
            rule = create_rule(
                request.workspace, kind=form.cleaned_data["kind"],
                channels=form.cleaned_data["channels"], actor=request.user,
                **form.service_fields(),
            )
        except ValidationError as error:
            form.show_errors(error)
        else:
            messages.success(request, f"Rule {rule.name} created.")
            return redirect("alerts", org_id=request.workspace.public_id)
    return _rule_form_page(request, form, 400 if posted else 200)


@manage_alerts
@require_http_methods(["GET", "POST"])
def rule_edit(request: WorkspaceRequest, rul_id: str) -> HttpResponse:
    """Change a rule's settings and channels; its kind and state stay."""
    rule = _object_of(Rule, request, rul_id, "rul")
    posted = request.method == "POST"
    form = RuleForm(request.POST if posted else None, workspace=request.workspace, rule=rule)
    if posted and form.is_valid():
        try:
            update_rule(rule, channels=form.cleaned_data["channels"], actor=request.user,
                        **form.service_fields())
        except ValidationError as error:
            form.show_errors(error)
        else:
            messages.success(request, f"Saved {rule.name}.")
            return redirect("alerts", org_id=request.workspace.public_id)
    return _rule_form_page(request, form, 400 if posted else 200)


@manage_alerts
@require_http_methods(["GET", "POST"])
def rule_delete(request: WorkspaceRequest, rul_id: str) -> HttpResponse:
    """Confirm, then delete the rule with its alerts and their delivery log."""
    rule = _object_of(Rule, request, rul_id, "rul")
    if request.method == "POST":
        delete_rule(rule, actor=request.user)
        messages.success(request, f"Deleted rule {rule.name}.")
        return redirect("alerts", org_id=request.workspace.public_id)
    return render(request, "alerts/confirm.html", {
        "action": "delete-rule", "rule": rule, "alert_count": rule.alerts.count(),
    })


@manage_alerts
@require_http_methods(["GET", "POST"])
def channel_new(request: WorkspaceRequest) -> HttpResponse:
    """Create a channel; a webhook's signing secret is handed over to the secret page."""
    posted = request.method == "POST"
    form = ChannelForm(request.POST if posted else None)
    if posted and form.is_valid():
        data = form.cleaned_data
        try:
            channel, secret = create_channel(
                request.workspace, kind=data["kind"], target=data["target"], name=data["name"],
                actor=request.user,
            )
        except ValidationError as error:
            form.show_errors(error)
        else:
            if secret is None:
                messages.success(request, f"Channel {channel.name} created.")
                return redirect("alerts", org_id=request.workspace.public_id)
            return _hand_over(request, channel, secret, "created")
    return render(request, "alerts/channel_new.html", {"form": form}, status=400 if posted else 200)


def _hand_over(request: WorkspaceRequest, channel: Channel, secret: str, action: str):
    handover.hold(request, SECRETS_TO_SHOW, channel.public_id, secret=secret, action=action)
    return redirect(
        "channel-secret", org_id=request.workspace.public_id, chn_id=channel.public_id
    )


@manage_alerts
@require_GET
def channel_secret(request: WorkspaceRequest, chn_id: str) -> HttpResponse:
    """The one page that ever shows a signing secret, on its first GET; later GETs say it is gone."""
    channel = _object_of(Channel, request, chn_id, "chn")
    entry = handover.take(request, SECRETS_TO_SHOW, channel.public_id)
    return handover.no_store(render(request, "alerts/channel_secret.html", {
        "channel": channel,
        "secret": entry["secret"] if entry else None,
        "action": entry["action"] if entry else None,
    }))


@manage_alerts
@require_http_methods(["GET", "POST"])
def channel_roll(request: WorkspaceRequest, chn_id: str) -> HttpResponse:
    """Confirm, then replace a webhook's signing secret; the old one stops signing at once."""
    channel = _object_of(Channel, request, chn_id, "chn")
    if channel.kind != ChannelKind.WEBHOOK:
        raise Http404("Only webhook channels have a signing secret")
    if request.method == "POST":
        return _hand_over(request, channel, roll_secret(channel, actor=request.user), "rolled")
    return render(request, "alerts/confirm.html", {"action": "roll", "channel": channel})


@manage_alerts
@require_http_methods(["GET", "POST"])
def channel_delete(request: WorkspaceRequest, chn_id: str) -> HttpResponse:
    """Confirm (naming the rules that notify it), then delete the channel and its log."""
    channel = _object_of(Channel, request, chn_id, "chn")
    if request.method == "POST":
        delete_channel(channel, actor=request.user)
        messages.success(request, f"Deleted channel {channel.name}.")
        return redirect("alerts", org_id=request.workspace.public_id)
    return render(request, "alerts/confirm.html", {
        "action": "delete-channel", "channel": channel, "rules": channel.rules.order_by("name"),
    })


@manage_alerts
@require_POST
def channel_test(request: WorkspaceRequest, chn_id: str) -> HttpResponse:
    """Queue a test notification and show its delivery (the worker sends it); at most
    CHANNEL_TEST_RATE_LIMIT per channel, so nobody can flood a channel's receiver with tests."""
    channel = _object_of(Channel, request, chn_id, "chn")
    rate = settings.CHANNEL_TEST_RATE_LIMIT
    if spent(request, "channel-test", fixed_key(channel.public_id), [rate]):
        messages.error(request, (
            f"Too many test notifications: at most {per_period(rate)} to one channel. "
            f"Nothing was sent to {channel.name}; try again later."
        ))
        return redirect(
            "channel-detail", org_id=request.workspace.public_id, chn_id=channel.public_id
        )
    delivery = send_test(channel, actor=request.user)
    return redirect(
        "delivery-detail", org_id=request.workspace.public_id, dlv_id=delivery.public_id
    )


@require_GET
@workspace_view()
def channel_detail(request: WorkspaceRequest, chn_id: str) -> HttpResponse:
    """A channel and its delivery log, newest first, with every attempt."""
    channel = _object_of(Channel, request, chn_id, "chn")
    deliveries = _with_attempts(
        channel.deliveries.select_related("alert__rule").order_by("-created_at", "-id")
    )[:DELIVERY_LOG_LIMIT]
    # A webhook or Slack channel stored with http://: every send to it is refused, so say so.
    http_refused = channel.kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK) and bool(
        scheme_refused(urlsplit(channel.target).scheme)
    )
    return render(request, "alerts/channel_detail.html", {
        "channel": channel, "deliveries": deliveries, "can_change": _can_change(request),
        "rules": channel.rules.order_by("name"), "log_limit": DELIVERY_LOG_LIMIT,
        "http_refused": http_refused,
    })


@require_GET
@workspace_view()
def delivery_detail(request: WorkspaceRequest, dlv_id: str) -> HttpResponse:
    """One delivery (a test's, say) and its attempts; reloads itself while the send is pending."""
    delivery = _object_of(Delivery, request, dlv_id, "dlv")
    attempts = list(delivery.attempt_log.order_by("at", "id"))
    pending = delivery.state == DeliveryState.PENDING
    refresh = pending and timezone.now() - delivery.created_at < PENDING_REFRESH_FOR
    return render(request, "alerts/delivery_detail.html", {
        "delivery": delivery, "attempts": attempts, "channel": delivery.channel,
        "refresh_seconds": PENDING_REFRESH_SECONDS if refresh else None,
    })
