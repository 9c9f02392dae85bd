"""`{% alert_banner %}`: the workspace's firing alerts, on every page of the workspace."""

from __future__ import annotations

from django import template
from django.urls import reverse

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
    org_id = workspace.public_id
    # The page's script links a live alert by its id: never to a URL a frame names.
    template_url = reverse("alert-detail", kwargs={"org_id": org_id, "alr_id": "alr_ID"})
    return {"alerts": list(alerts), "org_id": org_id, "alert_url": template_url}
