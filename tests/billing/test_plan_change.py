"""A plan change says what it does: a shorter retention asks first, with what the purge deletes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from billing.downgrade import retention_cut
from billing.models import Plan
from ingest.models import Event, TimelineEvent
from sources.services import create_source
from tests.test_admin import _workspace_form
from workspaces.models import Worker, Workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(workspace, source, other_workspace):
    """In the Pro workspace: 3 events and 2 timeline events older than 7 days, 1 + 1 newer;
    another workspace's old rows count for nothing here."""
    now = timezone.now()
    worker = Worker.objects.create(workspace=workspace, display_name="Alex")

    def rows(ws, src, wrk, days: float, events: int, timeline: int) -> None:
        at = now - timedelta(days=days)
        Event.objects.bulk_create(
            Event(workspace=ws, source=src, status="success", received_at=at) for _ in range(events)
        )
        TimelineEvent.objects.bulk_create(
            TimelineEvent(workspace=ws, source=src, worker=wrk, event_type="t", category="support",
                          timestamp=at, received_at=at, request_id="req_x")
            for _ in range(timeline)
        )

    rows(workspace, source, worker, 30, 3, 2)
    rows(workspace, source, worker, 1, 1, 1)
    foreign, _ = create_source(other_workspace, "Globex")
    rows(other_workspace, foreign, Worker.objects.create(workspace=other_workspace, display_name="G"),
         30, 5, 5)
    return workspace


def plan(code: str) -> Plan:
    return Plan.objects.get(code=code)


def test_a_shorter_retention_counts_both_kinds_of_events_past_it(history):
    cut = retention_cut(history, plan("free"))

    assert cut is not None
    assert (cut.old_days, cut.new_days, cut.events, cut.timeline_events) == (90, 7, 3, 2)
    assert "3 events and 2 timeline events received before" in cut.summary
    assert "next daily retention purge" in cut.summary


def test_a_plan_keeping_as_long_or_longer_purges_nothing(free_workspace, history):
    assert retention_cut(free_workspace, plan("pro")) is None
    assert retention_cut(history, plan("pro")) is None


def test_the_usage_page_asks_before_a_downgrade_that_purges_then_applies_it_once_confirmed(
    client, owner, history
):
    client.force_login(owner)
    change = reverse("change-plan", kwargs={"org_id": history.public_id})

    asked = client.post(change, {"plan": "free"})

    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Move to the Free plan?" in page
    assert "3 events and 2 timeline events" in page
    assert 'name="confirm" value="free"' in page
    assert Workspace.objects.get(pk=history.pk).plan.code == "pro"
    # A confirmation names its plan: it does not confirm another.
    assert client.post(change, {"plan": "free", "confirm": "starter"}).status_code == 200
    assert Workspace.objects.get(pk=history.pk).plan.code == "pro"

    done = client.post(change, {"plan": "free", "confirm": "free"})

    assert done.status_code == 302
    assert Workspace.objects.get(pk=history.pk).plan.code == "free"


def test_an_upgrade_is_applied_without_asking(client, owner, free_workspace):
    client.force_login(owner)
    done = client.post(
        reverse("change-plan", kwargs={"org_id": free_workspace.public_id}), {"plan": "pro"}
    )
    assert done.status_code == 302
    assert Workspace.objects.get(pk=free_workspace.pk).plan.code == "pro"


def test_the_usage_page_shows_every_plans_limits(client, member, workspace):
    client.force_login(member)
    page = client.get(reverse("usage", kwargs={"org_id": workspace.public_id})).content.decode()
    for p in Plan.objects.all():
        assert f"{p.burst_per_key} / {p.burst_per_workspace}" in page
        assert f"{p.retention_days} d" in page
    assert "Burst (req/s)" in page and "Dev API" in page and "Events / month" in page


def test_setplan_refuses_a_purging_downgrade_without_yes(history):
    with pytest.raises(CommandError, match="3 events and 2 timeline events .* --yes"):
        call_command("setplan", history.public_id, "free")
    assert Workspace.objects.get(pk=history.pk).plan.code == "pro"

    call_command("setplan", history.public_id, "free", "--yes")

    assert Workspace.objects.get(pk=history.pk).plan.code == "free"


def test_the_admin_asks_to_confirm_a_purging_downgrade(admin_client, history):
    change = reverse("admin:workspaces_workspace_change", args=[history.pk])
    free = plan("free")

    refused = admin_client.post(change, _workspace_form(history, plan=free.pk))

    assert refused.status_code == 200
    assert "3 events and 2 timeline events" in refused.content.decode()
    assert Workspace.objects.get(pk=history.pk).plan.code == "pro"

    saved = admin_client.post(change, _workspace_form(history, plan=free.pk, confirm_purge="on"))

    assert saved.status_code == 302
    assert Workspace.objects.get(pk=history.pk).plan.code == "free"


def test_the_admin_asks_before_shortening_a_plans_retention_for_all_its_workspaces(
    admin_client, history
):
    pro = plan("pro")
    change = reverse("admin:billing_plan_change", args=[pro.pk])
    form = {
        "code": "pro", "name": "Pro", "monthly_event_limit": pro.monthly_event_limit,
        "retention_days": 7, "max_sources": "", "developer_api": "on",
        "burst_per_key": pro.burst_per_key, "burst_per_workspace": pro.burst_per_workspace,
    }

    refused = admin_client.post(change, form)

    assert refused.status_code == 200
    # Both Pro workspaces: the fixture's 3 + 2 and the other workspace's 5 + 5.
    assert "8 events and 7 timeline events in its 2 workspaces received before" in (
        refused.content.decode()
    )
    assert plan("pro").retention_days == 90

    saved = admin_client.post(change, {**form, "confirm_purge": "on"})

    assert saved.status_code == 302
    assert plan("pro").retention_days == 7
    assert admin_client.post(change, {**form, "retention_days": 30}).status_code == 302
