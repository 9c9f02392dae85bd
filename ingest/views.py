"""The Workers pages: who the v1 events are about, each worker's timeline and snapshot cards."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from ackly.ids import is_public_id
from ingest.models import Snapshot, TimelineEvent
from workspaces.access import WorkspaceRequest, workspace_view
from workspaces.live import present_timeline, retention_cutoff
from workspaces.models import Worker

WORKERS_PAGE_SIZE = 50
TIMELINE_PAGE_SIZE = 50


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
        "worker": {"id": snapshot.worker.public_id, "displayName": snapshot.worker.display_name},
        "source": {"id": snapshot.source.public_id, "name": snapshot.source.name,
                   "slug": snapshot.source.slug},
        "timestamp": _iso(snapshot.timestamp),
        "receivedAt": _iso(snapshot.received_at),
        "metrics": snapshot.metrics,
        "metadata": snapshot.metadata,
        "current": True,
    }


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


@workspace_view()
def worker_list(request: WorkspaceRequest) -> HttpResponse:
    """Workers with search over display name, externalId and email, and their recent activity."""
    q = request.GET.get("q", "").strip()[:200]
    status = 200
    if "\x00" in q:  # PostgreSQL refuses NUL in text: the search can match nothing, say so
        messages.error(request, "The search must not contain a NUL character.")
        q, status = "", 400
    cutoff = retention_cutoff(request.workspace)
    workers = Worker.objects.for_workspace(request.workspace)
    total = workers.count()
    if q:
        workers = workers.filter(
            Q(display_name__icontains=q)
            | Q(external_id__icontains=q)
            | Q(email__icontains=q.lower())
        )
    recent = Q(timeline__received_at__gte=cutoff)
    workers = workers.annotate(
        event_count=Count("timeline", filter=recent),
        last_event_at=Max("timeline__timestamp", filter=recent),
    ).order_by("display_name", "id")
    page = Paginator(workers, WORKERS_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "workers": page.object_list,
        "q": q,
        "total": total,
        "matching": page.paginator.count,
        "retention_days": request.workspace.plan.retention_days,
    }
    return render(request, "workers/list.html", context, status=status)


@workspace_view()
def worker_detail(request: WorkspaceRequest, wrk_id: str) -> HttpResponse:
    """One worker: current snapshot cards and the timeline, updated live over the websocket."""
    worker = _worker_of(request, wrk_id)
    paginator = Paginator(_timeline(request, worker), TIMELINE_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
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
        "worker": {"id": worker.public_id, "displayName": worker.display_name},
        "timeline": timeline,
        "snapshots": snapshots,
    })
    response["Cache-Control"] = "no-store"
    return response
