"""Alert rules, the channels they notify, the alerts they open and each delivery's attempts."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from ackly.ids import new_public_id


def new_channel_id() -> str:
    return new_public_id("chn")


def new_rule_id() -> str:
    return new_public_id("rul")


def new_alert_id() -> str:
    return new_public_id("alr")


def new_delivery_id() -> str:
    return new_public_id("dlv")


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook"
    SLACK = "slack", "Slack"
    EMAIL = "email", "Email"
    APPRISE = "apprise", "Apprise"


class Channel(models.Model):
    """Where notifications go. `target` may embed tokens (Slack, Apprise): never log it."""

    public_id = models.CharField(max_length=40, unique=True, default=new_channel_id, editable=False)
    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, related_name="alert_channels"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    target = models.CharField(max_length=2000)
    # Webhooks only. Kept as is (an HMAC needs the secret itself); shown once at creation and
    # when rolled, never on a page or in a log.
    signing_secret = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def masked_target(self) -> str:
        """The target for display: an email address as is, a URL only up to its host."""
        from alerts.validation import mask_target

        return mask_target(self.kind, self.target)


class RuleKind(models.TextChoices):
    FAILURE = "failure", "Failure"
    SILENCE = "silence", "Silence"
    SLOW = "slow", "Slow"
    REJECTIONS = "rejections", "Rejections"
    QUOTA = "quota", "Quota"


class RuleState(models.TextChoices):
    OK = "ok", "OK"
    FIRING = "firing", "Firing"


class Rule(models.Model):
    """One condition on a workspace's events; ok → firing → ok, one Alert per firing."""

    public_id = models.CharField(max_length=40, unique=True, default=new_rule_id, editable=False)
    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, related_name="alert_rules"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=12, choices=RuleKind.choices)
    enabled = models.BooleanField(default=True)
    # Narrowing: empty means any. event_type ending in "." matches as a prefix.
    source = models.ForeignKey(
        "sources.Source", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    event_type = models.CharField(max_length=100, blank=True, default="")
    category = models.CharField(max_length=20, blank=True, default="")  # v1 events only
    include_partial = models.BooleanField(default=False)  # failure
    every_minutes = models.PositiveIntegerField(null=True, blank=True)  # silence
    schedule = models.CharField(max_length=100, blank=True, default="")  # silence, cron
    tz = models.CharField(max_length=64, blank=True, default="UTC")
    grace_minutes = models.PositiveIntegerField(default=0)  # silence
    # slow: milliseconds; rejections: count N; quota: percent (empty: 80 and 100).
    threshold = models.PositiveIntegerField(null=True, blank=True)
    window_minutes = models.PositiveIntegerField(null=True, blank=True)  # rejections M
    code = models.CharField(max_length=40, blank=True, default="")  # rejections
    reminder_minutes = models.PositiveIntegerField(null=True, blank=True)
    channels = models.ManyToManyField(Channel, blank=True, related_name="rules")
    state = models.CharField(max_length=10, choices=RuleState.choices, default=RuleState.OK)
    state_changed_at = models.DateTimeField(default=timezone.now)
    # silence: the next expected time plus the grace.
    deadline = models.DateTimeField(null=True, blank=True)
    # received_at of the newest matching event applied: the engine ignores anything not newer,
    # so re-scanning its look-back window is idempotent.
    seen_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            # The engine's timer query: silence rules past their deadline.
            models.Index(fields=["kind", "deadline"], name="rule_kind_deadline"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class AlertQuerySet(models.QuerySet):
    def open(self) -> AlertQuerySet:
        return self.filter(resolved_at__isnull=True)


class Alert(models.Model):
    """One firing of a rule, from opening to resolution, with the events that triggered it."""

    public_id = models.CharField(max_length=40, unique=True, default=new_alert_id, editable=False)
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="alerts")
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField()
    resolution = models.TextField(blank=True, default="")
    # Up to 10 summaries {id, source, status, eventType or category, message, at}.
    events = models.JSONField(default=list, blank=True)
    # quota: the highest percentage notified so far.
    level = models.PositiveIntegerField(null=True, blank=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # At most one open alert per rule: a second firing cannot be created by a race.
            models.UniqueConstraint(
                fields=["rule"], condition=models.Q(resolved_at__isnull=True), name="alert_one_open"
            ),
        ]
        indexes = [
            # The Alerts page: a workspace's alerts, newest first.
            models.Index(fields=["workspace", "-opened_at"], name="alert_ws_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.reason}"


class Purpose(models.TextChoices):
    FIRED = "fired", "Fired"
    RESOLVED = "resolved", "Resolved"
    REMINDER = "reminder", "Reminder"
    TEST = "test", "Test"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One notification to one channel; its public id is the stable Ackly-Delivery header."""

    public_id = models.CharField(
        max_length=40, unique=True, default=new_delivery_id, editable=False
    )
    alert = models.ForeignKey(
        Alert, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    purpose = models.CharField(max_length=10, choices=Purpose.choices)
    # reminders (and quota escalations) count up; everything else is 0.
    sequence = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # Pending: when the next attempt is due, or when a claimed attempt's lease runs out.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            # One delivery per firing, resolution or reminder and channel, whoever creates it.
            models.UniqueConstraint(
                fields=["alert", "channel", "purpose", "sequence"], name="delivery_once"
            ),
        ]
        indexes = [
            # The engine's sweep: pending deliveries whose attempt is overdue.
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.purpose} {self.state}"


class Attempt(models.Model):
    """One HTTP request (or email hand-off) of a delivery."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"


class EngineState(models.Model):
    """The evaluation loop's one row: locked by each pass, so passes never overlap."""

    # Every event received before this minus the look-back has been evaluated.
    scanned_until = models.DateTimeField(null=True, blank=True)
    # The start of the last pass that also read late commits (every ALERTS_AGGREGATE_SECONDS):
    # the next such read goes back the look-back from here, not from `scanned_until`, which the
    # passes in between move on without reading them.
    late_scanned_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"scanned until {self.scanned_until}"
