"""A week of believable history for `manage.py demo`, and the trickle of `demo --live`.

The history is written straight into the tables in bulk (a few thousand rows, about a second)
once per demo workspace: a nightly backup cron, a CI pipeline, a CRM sync, people and an AI
agent on the developer API with timelines and snapshot cards, and some refused requests, in
the rejection counters and behind them. The billing counter gets exactly the events it adds to
the current period. The trickle goes through the real ingest APIs over HTTP with the demo keys.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ackly.errors import ERROR_CODES
from ackly.ids import new_request_id
from billing.services import get_workspace_limits, reserve_quota
from ingest.models import (
    Category,
    Event,
    EventStatus,
    RejectedRequest,
    Rejection,
    Snapshot,
    SnapshotHistory,
    TimelineEvent,
)
from sources.models import Source
from workspaces.models import Worker, Workspace

DAYS = 7
AGENT = ("Atlas (AI agent)", "agent-atlas", None)
PEOPLE_METRICS = {"open_tickets": "Open tickets", "calls_today": "Calls today"}


@dataclass
class Seeded:
    """Rows written, by kind (the command prints them)."""

    counts: Counter = field(default_factory=Counter)

    def line(self) -> str:
        c = self.counts
        return (f"{c['events']} events, {c['timeline']} timeline events, {c['snapshots']} "
                f"snapshots and {c['refused']} refused requests over the last {DAYS} days")


def has_history(workspace: Workspace) -> bool:
    return (
        Event.objects.for_workspace(workspace).exists()
        or TimelineEvent.objects.for_workspace(workspace).exists()
    )


def seed_history(
    workspace: Workspace, sources: dict[str, Source], workers: list[Worker],
    now: datetime | None = None,
) -> Seeded:
    """Write the week once (the caller checks `has_history`); one transaction."""
    now = now or timezone.now()
    rng = random.Random(20261205)  # the same believable week on every fresh database
    seeded = Seeded()
    with transaction.atomic():
        # The workspace "was created" before its history, and its billing period holds it all.
        workspace.created_at = workspace.billing_anchor = now - timedelta(days=DAYS + 1)
        workspace.save(update_fields=["created_at", "billing_anchor"])
        events = [
            *_backups(workspace, sources["nightly-jobs"], now, rng),
            *_ci_runs(workspace, sources["ci-pipeline"], now, rng),
            *_crm_syncs(workspace, sources["crm-hub"], now, rng),
        ]
        Event.objects.bulk_create(events, batch_size=500)
        timeline = [
            *_people_timeline(workspace, sources["crm-hub"], workers[:-1], now, rng),
            *_agent_timeline(workspace, sources["support-agent"], workers[-1], now, rng),
        ]
        TimelineEvent.objects.bulk_create(timeline, batch_size=500)
        seeded.counts["snapshots"] = _snapshots(workspace, sources, workers, now, rng)
        seeded.counts["refused"] = _refusals(workspace, sources, now, rng)
        seeded.counts["events"], seeded.counts["timeline"] = len(events), len(timeline)
        # The quota counter moves as ingest moves it, by the rows of this period.
        limits = get_workspace_limits(workspace.pk)
        start, _ = limits.period(now)
        this_period = sum(e.received_at >= start for e in events) + sum(
            t.received_at >= start for t in timeline
        )
        reserve_quota(limits, this_period, now)
    return seeded


def _days(now: datetime) -> Iterator[datetime]:
    """Midnight UTC of each of the last DAYS days, oldest first, today included."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for n in range(DAYS, -1, -1):
        yield today - timedelta(days=n)


def _event(workspace, source, at: datetime, status: str, event_type: str, message: str,
           duration_ms: float, external_id: str = "", **metadata: Any) -> Event:
    return Event(
        workspace=workspace, source=source, status=status, event_type=event_type,
        message=message, duration_ms=round(duration_ms), external_id=external_id,
        metadata=metadata or None, received_at=at,
    )


def _backups(workspace, source, now, rng) -> Iterator[Event]:
    """02:00 every night: two database backups, then the invoice export at 03:30."""
    for n, day in enumerate(_days(now)):
        for db in ("db-1", "db-2"):
            at = day + timedelta(hours=2, minutes=rng.randint(0, 9), seconds=rng.randint(0, 59))
            if at > now:
                continue
            size = rng.randint(38, 46) * 1024**3 + rng.randint(0, 1024**3)
            if n == DAYS - 3 and db == "db-2":
                yield _event(workspace, source, at, EventStatus.FAILURE, "backup.finished",
                             f"Nightly backup of {db} failed: disk full on /backups (98%)",
                             rng.uniform(40, 90) * 1000, f"backup-{day:%Y%m%d}-{db}",
                             host="backup-1", database=db, attempt=3)
            else:
                yield _event(workspace, source, at, EventStatus.SUCCESS, "backup.finished",
                             f"Nightly backup of {db} finished", rng.uniform(240, 540) * 1000,
                             f"backup-{day:%Y%m%d}-{db}", host="backup-1", database=db,
                             sizeBytes=size)
        at = day + timedelta(hours=3, minutes=30, seconds=rng.randint(0, 59))
        if at <= now:
            failed = n == DAYS - 1
            yield _event(workspace, source, at,
                         EventStatus.FAILURE if failed else EventStatus.SUCCESS, "job.finished",
                         "Invoice export failed: upstream timed out after 30 s" if failed
                         else f"Exported {rng.randint(180, 260)} invoices to accounting",
                         rng.uniform(20, 45) * 1000, f"invoices-{day:%Y%m%d}", job="invoices")


def _ci_runs(workspace, source, now, rng) -> Iterator[Event]:
    """Builds through the working day (fewer at weekends), each main build deployed."""
    branches = ["main", "main", "feature/usage-page", "fix/retry-backoff", "feature/agent-notes"]
    tests = ["billing/tests/test_quota.py", "ingest/tests/test_batch.py", "web/tests/test_login.py"]
    number = 4100
    for day in _days(now):
        weekend = day.weekday() >= 5
        at = day + timedelta(hours=8, minutes=rng.randint(0, 40))
        while at.hour < 19 and at <= now:
            number += 1
            branch = rng.choice(branches)
            commit = f"{rng.getrandbits(28):07x}"
            roll = rng.random()
            minutes = rng.uniform(3, 12)
            meta = {"branch": branch, "commit": commit, "pipeline": number}
            if roll < 0.12:
                failed = rng.randint(1, 4)
                yield _event(workspace, source, at, EventStatus.FAILURE, "ci.build",
                             f"Tests failed: {failed} of 812 in {rng.choice(tests)}",
                             minutes * 60_000, f"pipeline-{number}", **meta)
            elif roll < 0.16:
                yield _event(workspace, source, at, EventStatus.PARTIAL, "ci.build",
                             "Build passed; coverage upload skipped (token expired)",
                             minutes * 60_000, f"pipeline-{number}", **meta)
            else:
                yield _event(workspace, source, at, EventStatus.SUCCESS, "ci.build",
                             f"Build #{number} passed on {branch}", minutes * 60_000,
                             f"pipeline-{number}", **meta)
                shipped = at + timedelta(minutes=minutes + rng.uniform(1, 3))
                if branch == "main" and shipped <= now:
                    yield _event(workspace, source, shipped, EventStatus.SUCCESS,
                                 "deploy.shipped", f"Deployed api {day:%Y.%m.%d}-{number}",
                                 rng.uniform(60, 150) * 1000, f"deploy-{number}", **meta)
            at += timedelta(minutes=rng.randint(90, 240) if weekend else rng.randint(15, 70))


def _crm_syncs(workspace, source, now, rng) -> Iterator[Event]:
    """Every 30 minutes, with one afternoon's outage of the CRM's API two days ago."""
    outage = (now - timedelta(days=2)).replace(hour=14, minute=0, second=0, microsecond=0)
    at = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=DAYS)
    while at <= now:
        received = at + timedelta(seconds=rng.randint(2, 40))
        if received > now:
            break
        contacts, deals = rng.randint(0, 60), rng.randint(0, 9)
        if outage <= at < outage + timedelta(hours=2):
            yield _event(workspace, source, received, EventStatus.FAILURE, "crm.sync",
                         "HubSpot API answered 503 Service Unavailable (attempt 3 of 3)",
                         rng.uniform(30, 32) * 1000, f"sync-{at:%Y%m%d%H%M}", provider="hubspot")
        elif rng.random() < 0.06:
            skipped = rng.randint(1, 4)
            yield _event(workspace, source, received, EventStatus.PARTIAL, "crm.sync",
                         f"Synced {contacts} contacts; {skipped} skipped: missing email",
                         rng.uniform(2, 20) * 1000, f"sync-{at:%Y%m%d%H%M}",
                         provider="hubspot", contacts=contacts, skipped=skipped)
        else:
            yield _event(workspace, source, received, EventStatus.SUCCESS, "crm.sync",
                         f"Synced {contacts} contacts and {deals} deals",
                         rng.uniform(2, 20) * 1000, f"sync-{at:%Y%m%d%H%M}",
                         provider="hubspot", contacts=contacts, deals=deals)
        at += timedelta(minutes=30)


def _timeline(workspace, source, worker, at, event_type, category, duration, request_id,
              **metadata) -> TimelineEvent:
    return TimelineEvent(
        workspace=workspace, source=source, worker=worker, event_type=event_type,
        category=category, timestamp=at - timedelta(seconds=duration), duration=duration,
        metadata=metadata or None, request_id=request_id, received_at=at,
    )


def _working_hours(now, rng, per_day: tuple[int, int]) -> Iterator[datetime]:
    for day in _days(now):
        if day.weekday() >= 5:
            continue
        for _ in range(rng.randint(*per_day)):
            at = day + timedelta(hours=rng.uniform(8.5, 17.5))
            if at <= now:
                yield at


def _people_timeline(workspace, source, people, now, rng) -> Iterator[TimelineEvent]:
    """The CRM's people: tickets resolved and calls logged through the day."""
    for person in people:
        for at in _working_hours(now, rng, (6, 14)):
            if rng.random() < 0.6:
                yield _timeline(workspace, source, person, at, "ticket.resolved",
                                rng.choice([Category.SUPPORT, Category.SUPPORT,
                                            Category.DOCUMENTATION]),
                                rng.randint(180, 2400), new_request_id(),
                                ticket=f"SUP-{rng.randint(4000, 4999)}")
            else:
                yield _timeline(workspace, source, person, at, "call.logged",
                                rng.choice([Category.COMMUNICATION, Category.SALES]),
                                rng.randint(120, 1800), new_request_id(),
                                account=rng.choice(["Globex", "Initech", "Umbrella", "Hooli"]))


def _agent_timeline(workspace, source, agent, now, rng) -> Iterator[TimelineEvent]:
    """The AI agent works around the clock: triage, drafts, resolutions, a few escalations."""
    at = now - timedelta(days=DAYS)
    while at <= now:
        ticket = f"SUP-{rng.randint(4000, 4999)}"
        request_id = new_request_id()
        roll = rng.random()
        kind = ("ticket.escalated" if roll < 0.08 else "ticket.resolved" if roll < 0.5
                else "reply.drafted" if roll < 0.8 else "ticket.triaged")
        yield _timeline(workspace, source, agent, at, kind, Category.SUPPORT,
                        rng.randint(4, 90), request_id, ticket=ticket,
                        model="gpt-4o-mini", tokens=rng.randint(600, 4200))
        at += timedelta(minutes=rng.randint(12, 45))


def _snapshots(workspace, sources, workers, now, rng) -> int:
    """One card per worker (the newest) and a day's history behind it."""
    rows = 0
    history = []
    for worker in workers:
        agent = worker.external_id == AGENT[1]
        source = sources["support-agent" if agent else "crm-hub"]
        kind = "daily_stats" if agent else "workload"
        for day in _days(now):
            at = min(now, day + timedelta(hours=18))
            if agent:
                resolved = rng.randint(35, 70)
                metrics: dict[str, Any] = {
                    "tickets_resolved": {"value": resolved, "label": "Tickets resolved"},
                    "escalation_rate": {"value": round(rng.uniform(4, 11), 1), "unit": "%",
                                        "label": "Escalated"},
                    "avg_handle_time": {"value": rng.randint(18, 55), "unit": "s",
                                        "label": "Average handle time"},
                }
            else:
                metrics = {name: {"value": rng.randint(0, 25), "label": label}
                           for name, label in PEOPLE_METRICS.items()}
            history.append(SnapshotHistory(
                workspace=workspace, source=source, worker=worker, snapshot_type=kind,
                timestamp=at, metrics=metrics, request_id=new_request_id(), received_at=at,
            ))
        newest = history[-1]
        Snapshot.objects.update_or_create(
            worker=worker, snapshot_type=kind,
            defaults={"workspace": workspace, "source": source, "timestamp": newest.timestamp,
                      "metrics": newest.metrics, "request_id": newest.request_id,
                      "received_at": newest.received_at},
        )
        rows += 1
    SnapshotHistory.objects.bulk_create(history, batch_size=500)
    return rows + len(history)


# (source slug, code, message the sender got, how many, hours ago it began)
REFUSALS: list[tuple[str, str, str | None, int, float]] = [
    ("ci-pipeline", "invalid_body", "Invalid fields: durationMs must be a number.", 6, 20.5),
    ("support-agent", "forbidden_event_type", "eventType 'ticket.merged' is not whitelisted.",
     4, 9.2),
    ("support-agent", "rate_limited", "More than 500 requests per 1s for this key or workspace; "
     "retry after Retry-After seconds.", 12, 2.1),
    ("nightly-jobs", "key_revoked", None, 3, 5.7),
]


def _refusals(workspace, sources, now, rng) -> int:
    """Refused requests: each kept with its message, and counted per (source, code, hour)."""
    rows = []
    for slug, code, message, n, hours_ago in REFUSALS:
        began = now - timedelta(hours=hours_ago)
        for i in range(n):
            at = began + timedelta(seconds=i * rng.uniform(20, 200))
            rows.append(RejectedRequest(
                workspace=workspace, source=sources[slug], code=code,
                message=message or ERROR_CODES[code].description,
                request_id=new_request_id(), at=min(at, now),
            ))
    RejectedRequest.objects.bulk_create(rows)
    buckets: Counter = Counter()
    last: dict[tuple, datetime] = {}
    for row in rows:
        key = (row.source_id, row.code, row.at.replace(minute=0, second=0, microsecond=0))
        buckets[key] += 1
        last[key] = max(last.get(key, row.at), row.at)
    Rejection.objects.bulk_create(
        Rejection(workspace=workspace, source_id=source_id, code=code, hour=hour, count=n,
                  last_at=last[(source_id, code, hour)])
        for (source_id, code, hour), n in buckets.items()
    )
    return len(rows)


# --- demo --live ---------------------------------------------------------------------------------


def _post(base: str, path: str, secret: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own URL
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


def trickle_request(rng: random.Random) -> tuple[str, str, Any]:
    """One request a real sender might make: (source slug, path, body)."""
    roll = rng.random()
    if roll < 0.3:
        contacts = rng.randint(0, 40)
        ok = rng.random() > 0.1
        return "crm-hub", "/api/ingest", {
            "status": "success" if ok else "failure", "eventType": "crm.sync",
            "message": f"Synced {contacts} contacts" if ok
            else "HubSpot API answered 429 Too Many Requests",
            "durationMs": rng.randint(2000, 20000), "metadata": {"provider": "hubspot"},
        }
    if roll < 0.55:
        number = rng.randint(5000, 5999)
        ok = rng.random() > 0.15
        return "ci-pipeline", "/api/ingest", {
            "status": "success" if ok else "failure", "eventType": "ci.build",
            "message": f"Build #{number} passed on main" if ok else "Tests failed: 2 of 812",
            "durationMs": rng.randint(180_000, 720_000), "externalId": f"pipeline-{number}",
            "metadata": {"branch": "main", "pipeline": number},
        }
    if roll < 0.9:
        kind = rng.choice(["ticket.triaged", "reply.drafted", "ticket.resolved"])
        return "support-agent", "/api/v1/ingest/events", {"events": [{
            "eventType": kind, "category": "support", "actor": {"externalId": AGENT[1]},
            "duration": rng.randint(4, 90),
            "metadata": {"ticket": f"SUP-{rng.randint(5000, 5999)}", "model": "gpt-4o-mini"},
        }]}
    if roll < 0.96:
        person = rng.choice(["crm-alex", "crm-priya", "crm-sam"])
        return "crm-hub", "/api/v1/ingest/events", {"events": [{
            "eventType": "call.logged", "category": "communication",
            "actor": {"externalId": person}, "duration": rng.randint(120, 900),
        }]}
    # Now and then a sender gets it wrong: the rejections panel shows why.
    return "ci-pipeline", "/api/ingest", {"status": "done", "durationMs": "4 min"}


def trickle(
    base: str, secrets: dict[str, str], interval: float, count: int,
    say: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST a request every `interval` seconds (jittered) until `count` are sent (0: forever)."""
    rng = random.Random()
    sent = 0
    while count == 0 or sent < count:
        slug, path, body = trickle_request(rng)
        try:
            status, answer = _post(base, path, secrets[slug], body)
        except (urllib.error.URLError, OSError) as exc:
            say(f"  {path}: no answer from {base} ({exc}); is the server running?")
        else:
            code = answer.get("error", {}).get("code", "") if isinstance(answer, dict) else ""
            say(f"  {slug:<14} {path:<24} {status} {code}".rstrip())
        sent += 1
        if count == 0 or sent < count:
            sleep(interval * rng.uniform(0.5, 1.5))
    return sent
