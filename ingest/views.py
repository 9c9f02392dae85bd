"""The Workers pages: who the v1 events are about, each worker's timeline and snapshot cards."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from ackly.ids import is_public_id
from ingest.models import Snapshot, TimelineEvent
from ingest.present import worker_ref
from workspaces.access import WorkspaceRequest, workspace_view
from workspaces.live import present_timeline, retention_cutoff
from workspaces.models import Worker

WORKERS_PAGE_SIZE = 50
TIMELINE_PAGE_SIZE = 50
# The deepest page of a worker's timeline (500,000 rows): each page is read past its OFFSET, and
# a larger number would overflow the database's integer; older rows are in the live page's
# feed, filtered by time.
TIMELINE_MAX_PAGE = 10_000
# The workers list's activity column: events of the last day (timestamps, UTC).
ACTIVITY_WINDOW = timedelta(hours=24)


def _iso(moment: datetime) -> str:
    """The same UTC ISO 8601 form the live feed uses."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def metric_rows(metrics: Any) -> list[dict[str, Any]]:
    """Metrics as display rows; each is a number, a string or {value, unit?, label?}."""
    if not isinstance(metrics, dict):
        return []
    rows = []
    for name, raw in metrics.items():
        if isinstance(raw, dict):
            value, unit, label = raw.get("value"), raw.get("unit") or "", raw.get("label") or ""
        else:
            value, unit, label = raw, "", ""
        rows.append({"name": name, "label": label or name, "value": value, "unit": unit})
    return rows


def pretty_json(value: Any) -> str:
    """Metadata for a <pre>: indented, non-ASCII kept; the template escapes it."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def present_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """A current card, shaped like the broadcast's snapshot item (ingest.present) for workers.js."""
    return {
        "kind": "snapshot",
        "snapshotType": snapshot.snapshot_type,
        "worker": worker_ref(
            snapshot.worker.public_id, snapshot.worker.display_name, snapshot.worker.external_id
        ),
        "source": {"id": snapshot.source.public_id, "name": snapshot.source.name,
                   "slug": snapshot.source.slug},
        "timestamp": _iso(snapshot.timestamp),
        "receivedAt": _iso(snapshot.received_at),
        "metrics": snapshot.metrics,
        "metadata": snapshot.metadata,
        "current": True,
    }


@dataclass
class TimelinePage:
    """A page of a worker's timeline, found without counting the timeline (a busy worker has
    millions of rows): one row past the page says whether an older page exists. What the
    pager template reads of Django's Page, without the number of pages."""

    number: int
    object_list: list[TimelineEvent]
    has_next: bool
    paginator = None  # no page count: the pager says "Page n"

    @classmethod
    def of(cls, rows, number: str | None) -> TimelinePage:
        try:
            n = min(max(1, int(number or 1)), TIMELINE_MAX_PAGE)
        except ValueError:
            n = 1
        start = (n - 1) * TIMELINE_PAGE_SIZE
        found = list(rows[start : start + TIMELINE_PAGE_SIZE + 1])
        return cls(n, found[:TIMELINE_PAGE_SIZE], len(found) > TIMELINE_PAGE_SIZE)

    def has_previous(self) -> bool:
        return self.number > 1

    def has_other_pages(self) -> bool:
        return self.has_next or self.has_previous()

    def previous_page_number(self) -> int:
        return self.number - 1

    def next_page_number(self) -> int:
        return self.number + 1


def _worker_of(request: WorkspaceRequest, wrk_id: str) -> Worker:
    """The worker with this public id inside the request's workspace, else 404 (tenancy check)."""
    if not is_public_id(wrk_id, "wrk"):
        raise Http404("No such worker")  # junk (a NUL byte, say) never reaches the database
    return get_object_or_404(Worker, workspace=request.workspace, public_id=wrk_id)


def _timeline(request: WorkspaceRequest, worker: Worker):
    """The worker's v1 events inside the plan's retention, newest first."""
    return (
        TimelineEvent.objects.filter(
            workspace=request.workspace, worker=worker,
            received_at__gte=retention_cutoff(request.workspace),
        )
        .select_related("source", "worker")
        .order_by("-timestamp", "-id")
    )


def _snapshots(request: WorkspaceRequest, worker: Worker):
    return (
        Snapshot.objects.filter(workspace=request.workspace, worker=worker)
        .select_related("source", "worker")
        .order_by("snapshot_type")
    )


def _with_activity(workspace, workers: QuerySet[Worker]) -> QuerySet[Worker]:
    """Each worker's `event_count` (timeline events of the last ACTIVITY_WINDOW) and
    `last_event_at` (its newest inside retention): two subqueries per worker listed.

    Both read the (worker, timestamp) index: a day of rows and one row per worker. A count over
    all of retention read every timeline row of the workspace (15,000,000 in the scale bench:
    seconds per page), so the list counts a day.
    """
    now = timezone.now()
    # The day needs neither the workspace nor retention: a worker's rows are its workspace's
    # (ingest.0003 checks it), and a timestamp is at most V1_MAX_FUTURE_SECONDS (a day) ahead of
    # its arrival, so a row of the last day arrived within two, inside any plan's retention.
    # count(*) is then read from the (worker, timestamp) index alone.
    day = (TimelineEvent.objects.filter(worker=OuterRef("pk"),
                                        timestamp__gte=now - ACTIVITY_WINDOW, timestamp__lte=now)
           .order_by().values("worker").annotate(n=Count("*")).values("n"))
    newest = (TimelineEvent.objects.filter(worker=OuterRef("pk"),
                                           received_at__gte=retention_cutoff(workspace, now))
              .order_by("-timestamp").values("timestamp")[:1])
    return workers.annotate(event_count=Coalesce(Subquery(day), 0),
                            last_event_at=Subquery(newest))


@workspace_view()
def worker_list(request: WorkspaceRequest) -> HttpResponse:
    """Workers with search over display name, externalId and email, and their recent activity."""
    q = request.GET.get("q", "").strip()[:200]
    status = 200
    if "\x00" in q:  # PostgreSQL refuses NUL in text: the search can match nothing, say so
        messages.error(request, "The search must not contain a NUL character.")
        q, status = "", 400
    workers = Worker.objects.for_workspace(request.workspace)
    total = workers.count()
    if q:
        workers = workers.filter(
            Q(display_name__icontains=q)
            | Q(external_id__icontains=q)
            | Q(email__icontains=q.lower())
        )
    page = Paginator(workers.order_by("display_name", "id"), WORKERS_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    # The activity of this page's workers only.
    listed = Worker.objects.filter(pk__in=[w.pk for w in page.object_list])
    rows = _with_activity(request.workspace, listed).order_by("display_name", "id")
    context = {
        "page": page,
        "workers": rows,
        "q": q,
        "total": total,
        "matching": page.paginator.count,
        "window_hours": int(ACTIVITY_WINDOW.total_seconds() // 3600),
        "retention_days": request.workspace.plan.retention_days,
    }
    return render(request, "workers/list.html", context, status=status)


@workspace_view()
def worker_detail(request: WorkspaceRequest, wrk_id: str) -> HttpResponse:
    """One worker: current snapshot cards and the timeline, updated live over the websocket."""
    worker = _worker_of(request, wrk_id)
    page = TimelinePage.of(_timeline(request, worker), request.GET.get("page"))
    rows = [{"item": present_timeline(t),
             "metadata_json": pretty_json(t.metadata)} for t in page.object_list]
    cards = [{"item": present_snapshot(s),
              "metrics": metric_rows(s.metrics),
              "metadata_json": pretty_json(s.metadata) if s.metadata else ""}
             for s in _snapshots(request, worker)]
    org_id = request.workspace.public_id
    config = {
        "orgId": org_id,
        "workerId": worker.public_id,
        "socketPath": f"/ws/workspaces/{org_id}/",
        "feedUrl": request.path + "feed.json",
        # Live rows are prepended only on the first page; older pages stay put.
        "live": page.number == 1,
        "pageSize": TIMELINE_PAGE_SIZE,
    }
    context = {
        "worker": worker,
        "page": page,
        "rows": rows,
        "cards": cards,
        "config": config,
        "retention_days": request.workspace.plan.retention_days,
        "now": timezone.now(),
    }
    return render(request, "workers/detail.html", context)


@workspace_view()
def worker_feed(request: WorkspaceRequest, wrk_id: str) -> JsonResponse:
    """The first timeline page and the cards as JSON: what the page reloads after a reconnect."""
    worker = _worker_of(request, wrk_id)
    timeline = [present_timeline(t) for t in _timeline(request, worker)[:TIMELINE_PAGE_SIZE]]
    snapshots = [present_snapshot(s) for s in _snapshots(request, worker)]
    response = JsonResponse({
        "worker": worker_ref(worker.public_id, worker.display_name, worker.external_id),
        "timeline": timeline,
        "snapshots": snapshots,
    })
    response["Cache-Control"] = "no-store"
    return response
