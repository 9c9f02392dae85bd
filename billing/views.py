"""The Usage & plan page: this period's events against the limit, retention, plan change."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.downgrade import retention_cut
from billing.forms import PlanChangeForm
from billing.models import Plan
from billing.services import get_workspace_limits, quota_state, set_plan
from workspaces.access import WorkspaceRequest, workspace_view
from workspaces.roles import Permission


def _usage_context(request: WorkspaceRequest) -> dict:
    workspace = request.workspace
    # The same cached limits the ingest path uses, so the page shows what the API enforces.
    limits = get_workspace_limits(workspace.pk)
    start, end = limits.period()
    state = quota_state(limits)
    percent = min(100.0, 100.0 * state.used / state.limit) if state.limit else 100.0
    return {
        "limits": limits,
        "state": state,
        "period_start": start,
        "period_end": end,
        "percent": round(percent, 1),
        "level": "full" if percent >= 100 else "high" if percent >= 80 else "ok",
        "sources_used": workspace.sources.count(),
        "plan": workspace.plan,
        "plans": Plan.objects.order_by("monthly_event_limit"),
        "can_change_plan": request.membership.can(Permission.CHANGE_PLAN),
    }


@workspace_view()
def usage(request: WorkspaceRequest) -> HttpResponse:
    context = _usage_context(request)
    context["form"] = PlanChangeForm(initial={"plan": request.workspace.plan.code})
    return render(request, "billing/usage.html", context)


@workspace_view(permission=Permission.CHANGE_PLAN)
@require_POST
def change_plan(request: WorkspaceRequest) -> HttpResponse:
    """Switch the plan; the signals drop the cached limits, so the next API request uses it."""
    form = PlanChangeForm(request.POST)
    if not form.is_valid():
        context = _usage_context(request)
        context["form"] = form
        return render(request, "billing/usage.html", context, status=400)
    plan = form.cleaned_data["plan"]
    if plan.pk != request.workspace.plan_id:
        # A shorter retention purges history: said first, and done only once confirmed for
        # this very plan (the confirmation names it).
        cut = retention_cut(request.workspace, plan)
        if cut is not None and request.POST.get("confirm") != plan.code:
            return render(request, "billing/confirm_plan.html", {"plan": plan, "cut": cut})
        set_plan(request.workspace, plan.code, actor=request.user)
        messages.success(request, f"The workspace is now on the {plan.name} plan.")
    return redirect("usage", org_id=request.workspace.public_id)
