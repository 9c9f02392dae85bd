"""The evaluation pass: read new events, move rules between ok and firing, queue notifications.

One pass runs at a time across every worker process: it holds the single EngineState row's
lock (PostgreSQL: SKIP LOCKED, so a second worker simply skips the pass; SQLite serialises
writers anyway). Everything a pass decides — rule states, alerts, deliveries, the scan mark —
commits in its one transaction, so a worker killed mid-pass leaves nothing half-done, and
the next pass (of any worker) does the work again.

What is read:
* each pass re-reads events received since the previous pass's start minus
  ALERTS_LOOKBACK_SECONDS, so a row whose transaction committed late (after a newer row was
  already visible) is still read; events stored while no worker ran are read on restart;
* every ALERTS_AGGREGATE_SECONDS a pass also reads the failures and slow events at or before
  each rule's `seen_until` (committed after the rule moved past them), since the previous such
  read's start minus the same look-back;
* re-reading is harmless: a rule applies only events received after its `seen_until`
  (the newest event it already applied), in received order.

The limit: `received_at` is stamped by the server that took the request, before the row's
transaction commits. A row that becomes visible more than the look-back after its
`received_at` (less one pass, and less however far that server's clock is behind the
worker's) is below every later window and is never evaluated.

The ingest hot path is untouched: the engine reads the committed rows of both APIs through
the existing (workspace, received_at) indexes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from alerts.delivery import dashboard_url, enqueue, enqueue_on_commit
from alerts.models import (
    Alert,
    Delivery,
    DeliveryState,
    EngineState,
    Purpose,
    Rule,
    RuleKind,
    RuleState,
)
from alerts.schedule import silence_deadline
from ingest.broadcast import broadcast_on_commit
from ingest.models import Event, EventStatus, RejectedRequest, TimelineEvent

logger = logging.getLogger(__name__)

MAX_EVENTS = 10
# Quota rules without a threshold fire at 80 % and notify again at 100 %.
DEFAULT_QUOTA_LEVELS = (80, 100)
# A pending delivery whose due time passed this long ago has lost its task (its worker died
# mid-attempt, or the process stopped between commit and queueing): the sweep queues it again.
SWEEP_GRACE_SECONDS = 5

EVENT_RULE_KINDS = (RuleKind.FAILURE, RuleKind.SILENCE, RuleKind.SLOW)


@dataclass
class PassResult:
    ran: bool = False
    fired: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    notified: int = 0
    requeued: int = 0


@dataclass(frozen=True)
class Row:
    """An event of either API, as the rules see it."""

    api: str  # "ingest" (Event) or "v1" (TimelineEvent)
    public_id: str
    workspace_id: int
    source_id: int
    status: str  # "" for v1 events
    event_type: str
    category: str  # "" for ingest events
    message: str
    duration_ms: float | None
    received_at: datetime


def matches(rule: Rule, row: Row) -> bool:
    if row.workspace_id != rule.workspace_id:
        return False
    if rule.source_id is not None and row.source_id != rule.source_id:
        return False
    if rule.event_type:
        if rule.event_type.endswith("."):
            if not row.event_type.startswith(rule.event_type):
                return False
        elif row.event_type != rule.event_type:
            return False
    if rule.category and row.category != rule.category:
        return False
    if rule.kind == RuleKind.FAILURE:
        return row.api == "ingest" and (
            row.status in (EventStatus.FAILURE, EventStatus.SUCCESS)
            or (rule.include_partial and row.status == EventStatus.PARTIAL)
        )
    if rule.kind == RuleKind.SLOW:
        return row.duration_ms is not None
    return True


def _narrowing(rule: Rule, since: datetime, api: str) -> Q | None:
    """The SQL filter for the rows of one API the rule may apply (None: that API never matches)."""
    if api == "ingest" and rule.category:
        return None
    if api == "v1" and rule.kind == RuleKind.FAILURE:
        return None
    q = Q(workspace_id=rule.workspace_id, received_at__gt=since)
    if rule.source_id is not None:
        q &= Q(source_id=rule.source_id)
    if rule.event_type.endswith("."):
        q &= Q(event_type__startswith=rule.event_type)
    elif rule.event_type:
        q &= Q(event_type=rule.event_type)
    if rule.category:
        q &= Q(category=rule.category)
    if rule.kind == RuleKind.FAILURE:
        statuses = [EventStatus.FAILURE, EventStatus.SUCCESS]
        if rule.include_partial:
            statuses.append(EventStatus.PARTIAL)
        q &= Q(status__in=statuses)
    if rule.kind == RuleKind.SLOW:
        q &= Q(duration_ms__isnull=False) if api == "ingest" else Q(duration__isnull=False)
    return q


def read_rows(rules: list[Rule], bounds: dict[int, datetime]) -> tuple[list[Row], bool]:
    """The events of either API one of the rules may apply, oldest first, at most
    ALERTS_MAX_ROWS_PER_PASS of each; and whether that cut off newer ones (a catch-up)."""
    ingest_q: Q | None = None
    v1_q: Q | None = None
    for rule in rules:
        for api in ("ingest", "v1"):
            q = _narrowing(rule, bounds[rule.pk], api)
            if q is None:
                continue
            if api == "ingest":
                ingest_q = q if ingest_q is None else ingest_q | q
            else:
                v1_q = q if v1_q is None else v1_q | q
    limit = settings.ALERTS_MAX_ROWS_PER_PASS
    rows: list[Row] = []
    # The newest received_at every row up to which has been read from both tables.
    cutoffs: list[datetime] = []
    if ingest_q is not None:
        found = list(Event.objects.filter(ingest_q).order_by("received_at", "id").values_list(
            "public_id", "workspace_id", "source_id", "status", "event_type", "message",
            "duration_ms", "received_at",
        )[:limit])
        if len(found) == limit:
            cutoffs.append(found[-1][7])
        for e in found:
            rows.append(Row("ingest", e[0], e[1], e[2], e[3], e[4], "", e[5], e[6], e[7]))
    if v1_q is not None:
        found_v1 = list(TimelineEvent.objects.filter(v1_q).order_by("received_at", "id").values_list(
            "public_id", "workspace_id", "source_id", "event_type", "category", "duration",
            "received_at",
        )[:limit])
        if len(found_v1) == limit:
            cutoffs.append(found_v1[-1][6])
        for t in found_v1:
            duration = None if t[5] is None else t[5] * 1000.0
            rows.append(Row("v1", t[0], t[1], t[2], "", t[3], t[4], "", duration, t[6]))
    rows.sort(key=lambda row: (row.received_at, row.public_id))
    if cutoffs:
        # Past the earlier cut, one table's rows are missing: leave those rows to the next pass.
        cutoff = min(cutoffs)
        rows = [row for row in rows if row.received_at <= cutoff]
    return rows, bool(cutoffs)


def read_late_rows(rules: list[Rule], floor: datetime | None) -> list[Row]:
    """Failures (failure rules) and slow events (slow rules) at or before a rule's `seen_until`
    that were committed too late for the pass that moved it: the only late events that change
    anything (a late success, fast or silence-ending event is older than what the rule knows)."""
    ingest_q: Q | None = None
    v1_q: Q | None = None
    for rule in rules:
        if rule.seen_until is None or rule.kind not in (RuleKind.FAILURE, RuleKind.SLOW):
            continue
        since = max(floor, rule.created_at) if floor else rule.created_at
        if since >= rule.seen_until:
            continue
        for api in ("ingest", "v1"):
            q = _narrowing(rule, since, api)
            if q is None:
                continue
            q &= Q(received_at__lte=rule.seen_until)
            if rule.kind == RuleKind.FAILURE:
                bad = [EventStatus.FAILURE] + ([EventStatus.PARTIAL] if rule.include_partial else [])
                q &= Q(status__in=bad)
            elif api == "ingest":
                q &= Q(duration_ms__gt=rule.threshold or 0)
            else:
                q &= Q(duration__gt=(rule.threshold or 0) / 1000)
            if api == "ingest":
                ingest_q = q if ingest_q is None else ingest_q | q
            else:
                v1_q = q if v1_q is None else v1_q | q
    limit = settings.ALERTS_MAX_ROWS_PER_PASS
    rows: list[Row] = []
    if ingest_q is not None:
        for e in Event.objects.filter(ingest_q).order_by("received_at", "id").values_list(
            "public_id", "workspace_id", "source_id", "status", "event_type", "message",
            "duration_ms", "received_at",
        )[:limit]:
            rows.append(Row("ingest", e[0], e[1], e[2], e[3], e[4], "", e[5], e[6], e[7]))
    if v1_q is not None:
        for t in TimelineEvent.objects.filter(v1_q).order_by("received_at", "id").values_list(
            "public_id", "workspace_id", "source_id", "event_type", "category", "duration",
            "received_at",
        )[:limit]:
            duration = None if t[5] is None else t[5] * 1000.0
            rows.append(Row("v1", t[0], t[1], t[2], "", t[3], t[4], "", duration, t[6]))
    rows.sort(key=lambda row: (row.received_at, row.public_id))
    return rows


def summarize(row: Row, source_ids: dict[int, str]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "id": row.public_id,
        "source": source_ids.get(row.source_id, ""),
        "at": row.received_at.isoformat(),
        "message": row.message[:200],
    }
    if row.api == "ingest":
        summary.update(status=row.status, eventType=row.event_type)
    else:
        summary.update(status=None, eventType=row.event_type, category=row.category)
    if row.duration_ms is not None:
        summary["durationMs"] = row.duration_ms
    return summary


class Pass:
    """One evaluation pass's decisions, inside its transaction."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.result = PassResult(ran=True)
        self._open: dict[int, Alert | None] = {}

    # --- transitions --------------------------------------------------------------------

    def open_alert(self, rule: Rule) -> Alert | None:
        if rule.pk not in self._open:
            self._open[rule.pk] = Alert.objects.open().filter(rule=rule).first()
        return self._open[rule.pk]

    def fire(self, rule: Rule, at: datetime, reason: str, events: list[dict[str, Any]],
             level: int | None = None) -> Alert:
        existing = self.open_alert(rule)
        if existing is not None:
            # The rule's state said ok while an alert was still open (changed by hand): carry
            # on with that alert rather than notify twice.
            rule.state = RuleState.FIRING
            self.add_events(rule, events)
            return existing
        alert = Alert.objects.create(
            workspace_id=rule.workspace_id, rule=rule, opened_at=at, reason=reason[:2000],
            events=events[:MAX_EVENTS], level=level,
        )
        self._open[rule.pk] = alert
        rule.state, rule.state_changed_at = RuleState.FIRING, at
        self.notify(alert, Purpose.FIRED, 0)
        self.announce(rule, alert, "firing")
        self.result.fired.append(alert.public_id)
        return alert

    def resolve(self, rule: Rule, at: datetime, resolution: str) -> None:
        alert = self.open_alert(rule)
        rule.state, rule.state_changed_at = RuleState.OK, at
        if alert is None:
            return
        alert.resolved_at, alert.resolution = at, resolution[:2000]
        alert.save(update_fields=["resolved_at", "resolution"])
        self._open[rule.pk] = None
        self.notify(alert, Purpose.RESOLVED, 0)
        self.announce(rule, alert, "resolved")
        self.result.resolved.append(alert.public_id)

    def add_events(self, rule: Rule, events: list[dict[str, Any]]) -> None:
        alert = self.open_alert(rule)
        if alert is None or len(alert.events) >= MAX_EVENTS or not events:
            return
        alert.events = (list(alert.events) + events)[:MAX_EVENTS]
        alert.save(update_fields=["events"])

    def notify(self, alert: Alert, purpose: str, sequence: int) -> None:
        for channel in alert.rule.channels.all():
            delivery = Delivery.objects.create(
                alert=alert, channel=channel, purpose=purpose, sequence=sequence,
                next_attempt_at=self.now,
            )
            enqueue_on_commit(delivery)
            self.result.notified += 1

    def announce(self, rule: Rule, alert: Alert, state: str) -> None:
        workspace_id = rule.workspace.public_id
        broadcast_on_commit(workspace_id, {
            "type": "alert",
            "alert": {
                "id": alert.public_id,
                "rule": rule.name,
                "ruleId": rule.public_id,
                "state": state,
                "reason": alert.reason if state == "firing" else alert.resolution or alert.reason,
                "url": dashboard_url(workspace_id, alert.public_id),
            },
        })

    # --- event rules --------------------------------------------------------------------

    def apply_events(self, rule: Rule, rows: list[Row], source_ids: dict[int, str]) -> None:
        for row in rows:
            if rule.kind == RuleKind.FAILURE:
                self.apply_failure(rule, row, source_ids)
            elif rule.kind == RuleKind.SLOW:
                self.apply_slow(rule, row, source_ids)
            else:
                self.apply_silence(rule, row)
            rule.seen_until = row.received_at

    def apply_failure(self, rule: Rule, row: Row, source_ids: dict[int, str]) -> None:
        if row.status == EventStatus.SUCCESS:
            if rule.state == RuleState.FIRING:
                self.resolve(rule, row.received_at, f"a success event arrived ({row.public_id})")
            return
        summary = summarize(row, source_ids)
        if rule.state == RuleState.FIRING:
            self.add_events(rule, [summary])
            return
        what = f"{row.status} event" + (f" {row.event_type}" if row.event_type else "")
        detail = f": {row.message[:200]}" if row.message else ""
        self.fire(rule, row.received_at, f"A {what} arrived from {summary['source']}{detail}",
                  [summary])

    def apply_slow(self, rule: Rule, row: Row, source_ids: dict[int, str]) -> None:
        threshold = rule.threshold or 0
        duration = row.duration_ms or 0.0
        if duration <= threshold:
            if rule.state == RuleState.FIRING:
                self.resolve(rule, row.received_at,
                             f"an event took {duration:.0f} ms, within {threshold} ms")
            return
        summary = summarize(row, source_ids)
        if rule.state == RuleState.FIRING:
            self.add_events(rule, [summary])
            return
        label = row.event_type or "an event"
        self.fire(rule, row.received_at,
                  f"{label} took {duration:.0f} ms (threshold {threshold} ms) "
                  f"from {summary['source']}", [summary])

    def apply_silence(self, rule: Rule, row: Row) -> None:
        if rule.state == RuleState.OK and rule.deadline and row.received_at > rule.deadline:
            # The deadline passed before this event (no pass ran in between): the silence
            # happened, so it is told, and resolved by this event.
            self.fire(rule, rule.deadline, silence_reason(rule), [])
        if rule.state == RuleState.FIRING:
            self.resolve(rule, row.received_at, f"a matching event arrived ({row.public_id})")
        rule.deadline = silence_deadline(rule, row.received_at)

    def apply_late(self, rule: Rule, row: Row, source_ids: dict[int, str]) -> None:
        """A failure or slow event committed after a newer event of the rule was applied.

        Every failure or slow event applied in order falls inside some alert of the rule
        (it opened it or arrived while it was open), so one that does not was never applied:
        it fires now, and resolves at once if the rule is ok (a newer good event arrived).
        Seen again by a later pass, it falls inside that alert and changes nothing.
        """
        if row.received_at <= rule.created_at or not matches(rule, row) or not self.is_bad(rule, row):
            return
        covering = Alert.objects.filter(rule=rule, opened_at__lte=row.received_at).filter(
            Q(resolved_at__isnull=True) | Q(resolved_at__gte=row.received_at)
        )
        if covering.exists():
            return
        summary = summarize(row, source_ids)
        if rule.state == RuleState.FIRING:
            alert = self.open_alert(rule)
            if alert is not None and all(e.get("id") != row.public_id for e in alert.events):
                self.add_events(rule, [summary])
            return
        if rule.kind == RuleKind.FAILURE:
            self.apply_failure(rule, row, source_ids)
            resolution = "a newer success event had already arrived"
        else:
            self.apply_slow(rule, row, source_ids)
            resolution = "a newer event within the threshold had already arrived"
        self.resolve(rule, self.now, resolution)

    @staticmethod
    def is_bad(rule: Rule, row: Row) -> bool:
        if rule.kind == RuleKind.FAILURE:
            return row.status != EventStatus.SUCCESS
        return (row.duration_ms or 0.0) > (rule.threshold or 0)

    def check_silence(self, rule: Rule) -> None:
        if rule.state == RuleState.OK and rule.deadline and rule.deadline <= self.now:
            self.fire(rule, self.now, silence_reason(rule), [])

    # --- window and quota rules ---------------------------------------------------------

    def check_rejections(self, rule: Rule) -> None:
        window = timedelta(minutes=rule.window_minutes or 1)
        refused = RejectedRequest.objects.filter(
            workspace_id=rule.workspace_id, at__gt=self.now - window
        )
        if rule.source_id is not None:
            refused = refused.filter(source_id=rule.source_id)
        if rule.code:
            refused = refused.filter(code=rule.code)
        threshold = rule.threshold or 1
        count = refused.count()
        if rule.state == RuleState.OK and count >= threshold:
            latest = list(
                refused.order_by("-at", "-id").values_list(
                    "source__public_id", "code", "message", "request_id", "at"
                )[:MAX_EVENTS]
            )
            events = [
                {"id": request_id, "source": source, "status": "rejected", "eventType": code,
                 "message": message[:200], "at": at.isoformat()}
                for source, code, message, request_id, at in latest
            ]
            what = f"{rule.code} " if rule.code else ""
            self.fire(rule, self.now,
                      f"{count} refused {what}requests in the last {rule.window_minutes} minutes "
                      f"(threshold {threshold})", events)
        elif rule.state == RuleState.FIRING and count < threshold:
            self.resolve(rule, self.now,
                         f"{count} refused requests in the last {rule.window_minutes} minutes")

    def check_quota(self, rule: Rule) -> None:
        from billing.models import Usage
        from billing.services import get_workspace_limits

        limits = get_workspace_limits(rule.workspace_id)
        start, end = limits.period(self.now)
        used = (
            Usage.objects.filter(workspace_id=rule.workspace_id, period_start=start)
            .values_list("events", flat=True).first()
        ) or 0
        limit = max(limits.monthly_event_limit, 1)
        percent = used * 100 / limit
        levels = (rule.threshold,) if rule.threshold else DEFAULT_QUOTA_LEVELS
        crossed = max((level for level in levels if percent >= level), default=None)
        reason = f"{percent:.0f} % of this month's {limit} events used ({used})"
        if rule.state == RuleState.FIRING:
            alert = self.open_alert(rule)
            if alert is None or alert.opened_at < start:
                self.resolve(rule, self.now, f"a new billing period began on {start:%Y-%m-%d}")
            elif crossed is not None and crossed > (alert.level or 0):
                alert.level, alert.reason = crossed, reason
                alert.save(update_fields=["level", "reason"])
                latest = Delivery.objects.filter(alert=alert, purpose=Purpose.FIRED).aggregate(
                    latest=Max("sequence"))["latest"]
                self.notify(alert, Purpose.FIRED, 1 if latest is None else latest + 1)
                self.announce(rule, alert, "firing")
            return
        if crossed is not None:
            self.fire(rule, self.now, reason, [], level=crossed)

    # --- reminders ----------------------------------------------------------------------

    def remind(self) -> None:
        due = Alert.objects.open().filter(rule__reminder_minutes__isnull=False, rule__enabled=True)
        for alert in due.select_related("rule__workspace"):
            every = timedelta(minutes=alert.rule.reminder_minutes or 0)
            if not every:
                continue
            sequence = int((self.now - alert.opened_at) / every)
            if sequence < 1:
                continue
            exists = Delivery.objects.filter(
                alert=alert, purpose=Purpose.REMINDER, sequence=sequence
            ).exists()
            if not exists:
                self.notify(alert, Purpose.REMINDER, sequence)


def silence_reason(rule: Rule) -> str:
    expected = rule.schedule and f"on schedule {rule.schedule} ({rule.tz})" or (
        f"every {rule.every_minutes} minutes"
    )
    grace = f" plus {rule.grace_minutes} minutes' grace" if rule.grace_minutes else ""
    return f"No matching event arrived: expected {expected}{grace}"


def lock_engine() -> EngineState | None:
    """This pass's hold on the engine row, or None if another worker's pass holds it."""
    try:
        with transaction.atomic():
            EngineState.objects.get_or_create(pk=1)
    except IntegrityError:
        pass
    if connection.vendor == "postgresql":
        return EngineState.objects.select_for_update(skip_locked=True).filter(pk=1).first()
    return EngineState.objects.select_for_update().get(pk=1)


def run_pass(*, aggregates: bool = True) -> PassResult:
    """One evaluation pass; `aggregates` also checks rejections, quota, reminders and the sweep."""
    with transaction.atomic():
        state = lock_engine()
        if state is None:
            return PassResult(ran=False)
        now = timezone.now()
        work = Pass(now)
        rules = list(
            Rule.objects.filter(enabled=True).select_related("workspace").order_by("pk")
        )
        lookback = timedelta(seconds=settings.ALERTS_LOOKBACK_SECONDS)
        floor = state.scanned_until - lookback if state.scanned_until else None
        late_mark = state.late_scanned_until or state.scanned_until
        late_floor = late_mark - lookback if late_mark else None

        event_rules = [rule for rule in rules if rule.kind in EVENT_RULE_KINDS]
        bounds = {}
        for rule in event_rules:
            bound = rule.seen_until or rule.created_at
            bounds[rule.pk] = max(bound, floor) if floor else bound
        rows, truncated = read_rows(event_rules, bounds) if event_rules else ([], False)
        source_ids = _source_ids({row.source_id for row in rows})
        changed: list[Rule] = []
        for rule in event_rules:
            before = (rule.state, rule.seen_until, rule.deadline)
            applicable = [
                row for row in rows if row.received_at > bounds[rule.pk] and matches(rule, row)
            ]
            work.apply_events(rule, applicable, source_ids)
            if rule.kind == RuleKind.SILENCE and not truncated:
                # A catch-up pass has not read every event yet: no deadline is judged on it.
                work.check_silence(rule)
            if (rule.state, rule.seen_until, rule.deadline) != before:
                changed.append(rule)
        if aggregates:
            # Late commits: every few seconds, not every pass (they are rare, and the look-back
            # window is read for each failure and slow rule). The window starts from the last
            # such read: a row committed just after it is still inside.
            late = read_late_rows(event_rules, late_floor)
            late_sources = _source_ids({row.source_id for row in late})
            for rule in event_rules:
                before = (rule.state, rule.seen_until, rule.deadline)
                for row in late:
                    if row.received_at <= (rule.seen_until or row.received_at):
                        work.apply_late(rule, row, late_sources)
                if (rule.state, rule.seen_until, rule.deadline) != before and rule not in changed:
                    changed.append(rule)
            for rule in rules:
                before_state = rule.state
                if rule.kind == RuleKind.REJECTIONS:
                    work.check_rejections(rule)
                elif rule.kind == RuleKind.QUOTA:
                    work.check_quota(rule)
                if rule.state != before_state:
                    changed.append(rule)
            work.remind()
        for rule in changed:
            rule.save(update_fields=["state", "state_changed_at", "seen_until", "deadline"])
        marks = []
        if not truncated:  # a catch-up keeps its mark until every event has been read
            state.scanned_until = now
            marks.append("scanned_until")
        if aggregates:
            state.late_scanned_until = now
            marks.append("late_scanned_until")
        if marks:
            state.save(update_fields=marks)
    if aggregates:
        work.result.requeued = sweep()
    return work.result


def _source_ids(pks: set[int]) -> dict[int, str]:
    if not pks:
        return {}
    from sources.models import Source

    return dict(Source.objects.filter(pk__in=pks).values_list("pk", "public_id"))


def sweep() -> int:
    """Queue again every pending delivery whose attempt is overdue (its task was lost)."""
    now = timezone.now()
    overdue = Delivery.objects.filter(
        state=DeliveryState.PENDING,
        next_attempt_at__lte=now - timedelta(seconds=SWEEP_GRACE_SECONDS),
    )
    requeued = 0
    for pk in list(overdue.values_list("pk", flat=True)[:500]):
        # Only the sweep that moves the due time queues it, so two workers never both do.
        if Delivery.objects.filter(pk=pk, state=DeliveryState.PENDING,
                                   next_attempt_at__lte=now - timedelta(seconds=SWEEP_GRACE_SECONDS)
                                   ).update(next_attempt_at=now):
            enqueue(pk)
            requeued += 1
    return requeued


def run_forever(stop=None) -> None:
    """The worker's evaluation loop: a pass every ALERTS_POLL_MS, the slower checks every few seconds."""
    from django.db import close_old_connections

    poll = settings.ALERTS_POLL_MS / 1000
    aggregate_every = settings.ALERTS_AGGREGATE_SECONDS
    last_aggregate = float("-inf")
    while stop is None or not stop.is_set():
        started = time.monotonic()
        close_old_connections()
        aggregates = started - last_aggregate >= aggregate_every
        try:
            result = run_pass(aggregates=aggregates)
            if aggregates:
                last_aggregate = started
            if result.fired or result.resolved:
                logger.info("Alerts fired %s, resolved %s", result.fired, result.resolved)
        except Exception:
            logger.exception("Alert evaluation pass failed; retrying")
            close_old_connections()
            connection.close()
        elapsed = time.monotonic() - started
        time.sleep(max(0.0, poll - elapsed))
