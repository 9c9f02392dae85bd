"""What a plan change does to kept history: a shorter retention purges what is past it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from billing.models import Plan
from stats.models import stored_before


@dataclass(frozen=True)
class RetentionCut:
    """The rows a move to `plan` would purge: received before `cutoff`, at the next purge."""

    plan: Plan
    old_days: int
    new_days: int
    cutoff: datetime
    events: int
    timeline_events: int
    workspaces: int | None = None  # an edit of the plan itself: across its workspaces

    @property
    def summary(self) -> str:
        where = "" if self.workspaces is None else (
            f" in its {self.workspaces} workspace{'s' if self.workspaces != 1 else ''}"
        )
        return (
            f"The {self.plan.name} plan keeps {self.new_days} days of history instead of "
            f"{self.old_days}: {self.events:,} event{'s' if self.events != 1 else ''} and "
            f"{self.timeline_events:,} timeline event{'s' if self.timeline_events != 1 else ''}"
            f"{where} received before {self.cutoff:%Y-%m-%d %H:%M} UTC (and older snapshot history) "
            "will be deleted by the next daily retention purge."
        )


def retention_cut(workspace, plan: Plan, now: datetime | None = None) -> RetentionCut | None:
    """None unless `plan` keeps history for fewer days than the workspace's current plan."""
    old_days = workspace.plan.retention_days
    if plan.retention_days >= old_days:
        return None
    cutoff = (now or timezone.now()) - timedelta(days=plan.retention_days)
    # From the event counters, not by counting months of rows (stats.models.stored_before).
    events, timeline_events = stored_before(cutoff, workspace=workspace)
    return RetentionCut(
        plan=plan,
        old_days=old_days,
        new_days=plan.retention_days,
        cutoff=cutoff,
        events=events,
        timeline_events=timeline_events,
    )


def plan_edit_cut(plan: Plan, new_days: int, now: datetime | None = None) -> RetentionCut | None:
    """None unless editing `plan` (as stored) to keep `new_days` shortens its retention; else
    what the next purge deletes in every workspace on it."""
    if new_days >= plan.retention_days:
        return None
    cutoff = (now or timezone.now()) - timedelta(days=new_days)
    events, timeline_events = stored_before(cutoff, workspace__plan=plan)
    return RetentionCut(
        plan=plan,
        old_days=plan.retention_days,
        new_days=new_days,
        cutoff=cutoff,
        events=events,
        timeline_events=timeline_events,
        workspaces=plan.workspaces.count(),
    )
