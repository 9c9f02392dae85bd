"""The Sources page: sources, their keys, and the actions that issue a secret (shown once).

Every action that issues a secret is POST → redirect → GET: the POST keeps the secret in the
session under the new key's id and redirects to that key's page, whose first GET takes it out
again. A reload (or going back) finds nothing to show and says so; it never re-posts a form.
"""

from __future__ import annotations

import json
from datetime import UTC

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ackly import handover
from ackly.ids import is_public_id
from sources.forms import NewKeyForm, RotateForm, SourceCreateForm, SourceEditForm
from sources.models import Key, KeyScope, Source
from sources.services import (
    IssuedKey,
    SlugTaken,
    SourceLimitReached,
    create_source,
    issue_key,
    record_source_changed,
    revoke_key,
    rotate_key,
)
from workspaces.access import WorkspaceRequest, workspace_view
from workspaces.roles import Permission

# Example bodies for the "try it" commands on the key page.
INGEST_EXAMPLE = {
    "status": "success",
    "message": "Nightly backup finished",
    "eventType": "backup.finished",
    "externalId": "run-2041",
    "durationMs": 5230,
    "metadata": {"host": "db-1"},
}
V1_EVENT_TYPE = "ticket.resolved"
V1_EXAMPLE = {
    "events": [
        {
            "eventType": V1_EVENT_TYPE,
            "category": "support",
            "actor": {"email": "alex.chen@example.com"},
            "duration": 540,
            "metadata": {"ticketId": "T-1042"},
        }
    ]
}


def _source_of(request: WorkspaceRequest, app_id: str) -> Source:
    """The source with this public id inside the request's workspace, else 404 (tenancy check)."""
    if not is_public_id(app_id, "app"):
        raise Http404("No such source")  # junk (a NUL byte, say) never reaches the database
    return get_object_or_404(Source, workspace=request.workspace, public_id=app_id)


def _key_of(source: Source, key_id: str) -> Key:
    """The key with this public id of that source, else 404 (the source is already the tenant's)."""
    if not is_public_id(key_id, "key"):
        raise Http404("No such key")
    return get_object_or_404(Key, source=source, public_id=key_id)


def _newest_key_id(source: Source) -> str | None:
    return (
        Key.objects.filter(source=source).order_by("-created_at", "-id")
        .values_list("public_id", flat=True).first()
    )


def _stale(request: WorkspaceRequest, source: Source) -> HttpResponse | None:
    """Refuse a key form whose page predates the newest key: a resubmitted POST (refresh, double
    click) must not rotate again and silently revoke the key that was just shown."""
    seen = request.POST.get("newest")
    if seen is None or seen == (_newest_key_id(source) or ""):
        return None
    messages.error(
        request,
        f"The keys of {source.name} changed since that form was opened; nothing was done. "
        "Check the list below and try again if needed.",
    )
    return redirect("source-list", org_id=request.workspace.public_id)


def _limit_context(request: WorkspaceRequest, used: int) -> dict:
    allowed = request.workspace.plan.max_sources
    return {
        "sources_used": used,
        "sources_allowed": allowed,
        "at_limit": allowed is not None and used >= allowed,
    }


def _curl(base: str, path: str, secret: str, body: dict) -> str:
    """A copy-pasteable shell command; the JSON is single-quoted and contains no single quote."""
    payload = json.dumps(body, separators=(",", ":"))
    return (
        f"curl -sS -X POST {base}{path} \\\n"
        f'  -H "Authorization: Bearer {secret}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d '{payload}'"
    )


# Secrets waiting for their one GET, by key id (ackly/handover.py).
KEYS_TO_SHOW = "sources.keys_to_show"


def _hand_over(request: WorkspaceRequest, issued: IssuedKey, action: str) -> HttpResponse:
    """Keep the secret for the key page's first GET and redirect there; the URL names only the key."""
    handover.hold(request, KEYS_TO_SHOW, issued.key.public_id, secret=issued.secret, action=action)
    return redirect(
        "key-shown", org_id=request.workspace.public_id,
        app_id=issued.key.source.public_id, key_id=issued.key.public_id,
    )


@workspace_view()
def source_list(request: WorkspaceRequest) -> HttpResponse:
    """Every source with its keys' prefixes, states and last use; the create form for managers."""
    now = timezone.now()
    sources = list(
        Source.objects.for_workspace(request.workspace).prefetch_related(
            Prefetch("keys", queryset=Key.objects.order_by("-created_at", "-id"))
        )
    )
    for source in sources:
        keys = list(source.keys.all())
        source.key_rows = [(key, key.status_at(now)) for key in keys]
        source.newest_key_id = keys[0].public_id if keys else ""
    context = {
        "sources": sources,
        "can_manage": request.membership.can_manage,
        "create_form": SourceCreateForm(),
        "new_key_form": NewKeyForm(),
        **_limit_context(request, len(sources)),
    }
    return render(request, "sources/list.html", context)


@workspace_view(permission=Permission.MANAGE_SOURCES)
@require_http_methods(["GET", "POST"])
def source_new(request: WorkspaceRequest) -> HttpResponse:
    """Create a source and its first key; the plan's source limit is a form error, not a crash."""
    form = SourceCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            _, issued = create_source(
                request.workspace,
                data["name"],
                slug=data["slug"] or None,
                allowed_event_types=data["event_types"],
                actor=request.user,
            )
        except SourceLimitReached as exc:
            form.add_error(None, str(exc))
        except (SlugTaken, IntegrityError):
            form.add_error("slug", "Another source in this workspace already uses this slug.")
        else:
            return _hand_over(request, issued, "created")
    used = Source.objects.for_workspace(request.workspace).count()
    status = 400 if request.method == "POST" else 200
    return render(
        request, "sources/new.html", {"form": form, **_limit_context(request, used)}, status=status
    )


@workspace_view(permission=Permission.MANAGE_SOURCES)
@require_http_methods(["GET", "POST"])
def source_edit(request: WorkspaceRequest, app_id: str) -> HttpResponse:
    """Rename, change the slug and the developer API's eventType whitelist."""
    source = _source_of(request, app_id)
    form = SourceEditForm(request.POST or None, instance=source)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                form.save()
                if form.changed_data:
                    record_source_changed(source, form.changed_data, actor=request.user)
        except IntegrityError:
            # Two edits raced for the same slug; the constraint held, tell the loser.
            form.add_error("slug", "Another source in this workspace already uses this slug.")
        else:
            messages.success(request, f"Saved {source.name}.")
            return redirect("source-list", org_id=request.workspace.public_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "sources/edit.html", {"source": source, "form": form}, status=status)


@workspace_view(permission=Permission.MANAGE_SOURCES)
@require_http_methods(["GET", "POST"])
def source_rotate(request: WorkspaceRequest, app_id: str) -> HttpResponse:
    """Confirm, then issue a new key; the current ones stop now or at the end of the chosen grace."""
    source = _source_of(request, app_id)
    if request.method == "POST" and (refused := _stale(request, source)):
        return refused
    form = RotateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        return _hand_over(request, rotate_key(source, grace=form.grace, actor=request.user), "rotated")
    status = 400 if request.method == "POST" else 200
    return render(
        request, "sources/key_action.html",
        {"source": source, "form": form, "action": "rotate",
         "stopping": list(
             Key.objects.filter(source=source, scope=KeyScope.INGEST).usable()
             .order_by("-created_at", "-id")
         ),
         "newest": request.POST.get("newest", _newest_key_id(source) or "")},
        status=status,
    )


def _expiry_in_utc(form: NewKeyForm) -> bool:
    """Store the expiry in UTC (PostgreSQL refuses offsets past ±15:59, which ISO 8601 allows);
    False, with the error on the form, when it is past 9999-12-31 in UTC."""
    moment = form.cleaned_data["expires_at"]
    if moment is None:
        return True
    try:
        form.cleaned_data["expires_at"] = moment.astimezone(UTC)
    except OverflowError:
        form.add_error("expires_at", "The expiry must be on or before 9999-12-31 in UTC.")
        return False
    return True


@workspace_view(permission=Permission.MANAGE_SOURCES)
@require_http_methods(["GET", "POST"])
def key_new(request: WorkspaceRequest, app_id: str) -> HttpResponse:
    """An additional key for the source, optionally expiring; existing keys keep working."""
    source = _source_of(request, app_id)
    if request.method == "POST" and (refused := _stale(request, source)):
        return refused
    form = NewKeyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid() and _expiry_in_utc(form):
        issued = issue_key(
            source, expires_at=form.cleaned_data["expires_at"], actor=request.user,
            scope=form.cleaned_data["scope"],
        )
        return _hand_over(request, issued, "added")
    status = 400 if request.method == "POST" else 200
    return render(
        request, "sources/key_action.html",
        {"source": source, "form": form, "action": "new-key",
         "newest": request.POST.get("newest", _newest_key_id(source) or "")},
        status=status,
    )


@workspace_view(permission=Permission.MANAGE_SOURCES)
@require_GET
def key_shown(request: WorkspaceRequest, app_id: str, key_id: str) -> HttpResponse:
    """The one page that ever shows a secret, on its first GET; later GETs say it is gone."""
    source = _source_of(request, app_id)
    key = _key_of(source, key_id)
    entry = handover.take(request, KEYS_TO_SHOW, key.public_id)
    if entry is None:
        return handover.no_store(render(request, "sources/key_gone.html", {"source": source, "key": key}))
    secret = entry["secret"]
    base = request.build_absolute_uri("/").rstrip("/")
    context = {
        "source": source,
        "key": key,
        "secret": secret,
        "action": entry["action"],
        "curl_ingest": _curl(base, "/api/ingest", secret, INGEST_EXAMPLE),
        "curl_read": (
            f"curl -sS '{base}/api/v1/events?limit=10' \\\n"
            f'  -H "Authorization: Bearer {secret}"'
        ),
        "curl_v1": _curl(base, "/api/v1/ingest/events", secret, V1_EXAMPLE),
        "v1_type_allowed": V1_EVENT_TYPE in (source.allowed_event_types or ()),
        "v1_event_type": V1_EVENT_TYPE,
        "developer_api": request.workspace.plan.developer_api,
    }
    return handover.no_store(render(request, "sources/key_shown.html", context))


@workspace_view(permission=Permission.MANAGE_SOURCES)
@require_POST
def key_revoke(request: WorkspaceRequest, app_id: str, key_id: str) -> HttpResponse:
    """Revoke one key; it fails on the very next request (the signal drops its cached look-up)."""
    source = _source_of(request, app_id)
    key = _key_of(source, key_id)
    revoke_key(key, actor=request.user)
    messages.success(request, f"Revoked key {key.prefix}… of {source.name}.")
    return redirect("source-list", org_id=request.workspace.public_id)
