"""Dashboard pages: home, new workspace, and the live events page with its JSON feed.

Sign-up and sign-in are in workspaces/accounts.py.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from ingest.models import Category, EventStatus
from ingest.present import iso
from ingest.rejections import recent_refusals
from sources.models import Source
from workspaces import live
from workspaces.access import LAST_WORKSPACE_SESSION_KEY, WorkspaceRequest, workspace_view
from workspaces.forms import WorkspaceForm
from workspaces.models import Membership
from workspaces.rows import rows_html
from workspaces.services import create_workspace

# The drill-down's page: a source keeps its newest REJECTED_REQUESTS_PER_SOURCE.
REFUSALS_SHOWN = 200


def _home_workspace_id(user, last: object) -> str | None:
    """The last visited workspace while the user is still its member, else the first joined."""
    org_ids = Membership.objects.filter(user=user).values_list("workspace__public_id", flat=True)
    if isinstance(last, str) and org_ids.filter(workspace__public_id=last).exists():
        return last
    return org_ids.order_by("created_at", "id").first()


def home(request: HttpRequest) -> HttpResponse:
    """The live page of the workspace the user last visited; the login page for visitors."""
    if not request.user.is_authenticated:
        return redirect(settings.LOGIN_URL)
    org_id = _home_workspace_id(request.user, request.session.get(LAST_WORKSPACE_SESSION_KEY))
    if org_id is None:
        return redirect("workspace-new")
    return redirect("live-events", org_id=org_id)


@login_required
def workspace_new(request: HttpRequest) -> HttpResponse:
    """Another workspace (Free plan) owned by the current user."""
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        workspace = create_workspace(form.cleaned_data["name"], "free", owner=request.user)
        return redirect(f"/w/{workspace.public_id}/sources/")
    return render(request, "dashboard/workspace_new.html", {"form": form})


@workspace_view()
def workspace_home(request: WorkspaceRequest) -> HttpResponse:
    return redirect("live-events", org_id=request.workspace.public_id)


@workspace_view()
def live_events(request: WorkspaceRequest) -> HttpResponse:
    """The live events page: first page of the feed server-rendered, the rest kept live by JS."""
    workspace = request.workspace
    now = timezone.now()
    filters = live.FeedFilters.from_query(request.GET, now)
    items = live.feed(workspace, filters, now)
    sources = Source.objects.for_workspace(workspace).order_by("name")
    org_id = workspace.public_id
    detail_url = reverse("event-detail", kwargs={"org_id": org_id, "item_id": "__id__"})
    config = {
        "orgId": org_id,
        "feedUrl": reverse("live-feed", kwargs={"org_id": org_id}),
        "detailUrl": detail_url,
        "socketPath": f"/ws/workspaces/{org_id}/",
        "filters": filters.as_query(),
        # A range that ends in the past cannot grow: the page stays still.
        "live": filters.until is None or filters.until > now,
        "pageSize": filters.limit,
    }
    return render(
        request,
        "dashboard/live.html",
        status=400 if filters.errors else 200,
        context={
            "items": items,
            "rows_html": rows_html(items, detail_url),
            "filters": filters,
            "sources": sources,
            "statuses": EventStatus.choices,
            "search_min_length": live.SEARCH_MIN_LENGTH,
            "categories": Category.choices,
            "ranges": [("", "All history")] + [(k, f"Last {k}") for k in live.RANGES],
            "config": config,
            "chart": live.hourly_chart(workspace, now),
            "rejections": live.rejections_summary(workspace, now),
            "retention_days": workspace.plan.retention_days,
        },
    )


@require_GET
@workspace_view()
def live_feed(request: WorkspaceRequest) -> HttpResponse:
    """The feed as JSON: the page's catch-up after a (re)connect and "load older"."""
    now = timezone.now()
    filters = live.FeedFilters.from_query(request.GET, now)
    if filters.errors:
        return JsonResponse(
            {"error": {"code": "invalid_filter", "message": "; ".join(filters.errors)}}, status=400
        )
    items = live.feed(request.workspace, filters, now)
    return JsonResponse({"items": items, "serverTime": iso(now)})


@workspace_view()
def event_detail(request: WorkspaceRequest, item_id: str) -> HttpResponse:
    """One event of either kind, its metadata as pretty JSON (escaped by the template)."""
    item = live.find_item(request.workspace, item_id)
    if item is None:
        raise Http404("No such event")
    pretty = json.dumps(item.get("metadata"), indent=2, ensure_ascii=False, sort_keys=True)
    return render(
        request, "dashboard/event_detail.html", {"item": item, "metadata_json": pretty}
    )


@require_GET
@workspace_view()
def rejected_requests(request: WorkspaceRequest) -> HttpResponse:
    """The refused requests behind the rejections panel's counts, newest first (?source, ?code)."""
    workspace = request.workspace
    source_id = request.GET.get("source", "").strip()
    code = request.GET.get("code", "").strip()
    status, rows = 200, []
    if "\x00" in source_id or "\x00" in code:
        # PostgreSQL refuses NUL in text: such a filter can match nothing, say so.
        messages.error(request, "A filter must not contain a NUL character.")
        source_id, code, status = "", "", 400
    else:
        rows = list(recent_refusals(workspace.pk, source_id, code)[:REFUSALS_SHOWN])
    source = Source.objects.for_workspace(workspace).filter(public_id=source_id).first()
    return render(
        request,
        "dashboard/rejections.html",
        {"rows": rows, "source": source, "code": code, "filtered": bool(source_id or code),
         "per_source": settings.REJECTED_REQUESTS_PER_SOURCE, "shown": REFUSALS_SHOWN},
        status=status,
    )

