"""`{% alert_banner %}`: the workspace's firing alerts, on every page of the workspace."""

from __future__ import annotations

from django import template

from alerts.models import Alert

register = template.Library()

# A page names at most this many firing alerts; the Alerts page lists them all.
BANNER_LIMIT = 5


@register.inclusion_tag("alerts/_banner.html", takes_context=True)
def alert_banner(context: template.Context) -> dict:
    """One query, on workspace pages only (base.html asks only when there is a workspace)."""
    workspace = getattr(context.get("request"), "workspace", None)
    if workspace is None:
        return {"alerts": []}
    alerts = (
        Alert.objects.filter(workspace=workspace, resolved_at__isnull=True)
        .select_related("rule")
        .order_by("-opened_at", "-id")[:BANNER_LIMIT]
    )
    return {"alerts": list(alerts), "org_id": workspace.public_id}
