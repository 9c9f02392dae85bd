"""The Usage & plan page: this period's numbers, and a plan change that the next request sees."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from billing.models import Usage
from billing.services import get_workspace_limits, quota_state, reserve_quota
from sources.services import create_source
from workspaces.models import Membership, Role, Workspace

pytestmark = pytest.mark.django_db


def url(ws, suffix: str = "") -> str:
    return f"/w/{ws.public_id}/usage/{suffix}"


def use(ws, n: int) -> None:
    """Count `n` accepted events this period, the way ingest does."""
    with transaction.atomic():
        granted = reserve_quota(get_workspace_limits(ws.pk), n).granted
    assert granted == n


def test_a_visitor_is_sent_to_the_login_page(client, workspace):
    response = client.get(url(workspace))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_an_outsider_gets_404(client, outsider, other_workspace, workspace):
    client.force_login(outsider)
    assert client.get(url(workspace)).status_code == 404
    assert client.post(url(workspace, "plan/"), {"plan": "free"}).status_code == 404
    workspace.refresh_from_db()
    assert workspace.plan.code == "pro"


@pytest.mark.parametrize("persona", ["owner", "member"])
def test_members_and_owners_see_usage(client, request, persona, free_workspace, member):
    from workspaces.models import Membership

    Membership.objects.get_or_create(workspace=free_workspace, user=member)
    create_source(free_workspace, "One")
    use(free_workspace, 2500)
    client.force_login(request.getfixturevalue(persona))

    response = client.get(url(free_workspace))

    assert response.status_code == 200
    page = response.content.decode()
    assert "2,500" in page and "10,000" in page
    assert "25.0% used" in page
    assert 'aria-valuenow="2500"' in page and 'aria-valuemax="10000"' in page
    assert '<rect width="25.0%"' in page  # the bar: an SVG rect, no style attribute (CSP)
    assert "7 days" in page  # Free retention
    assert "1 of 3" in page  # sources
    assert "not included" in page  # developer API
    start, end = get_workspace_limits(free_workspace.pk).period()
    assert end.strftime("%Y-%m-%d %H:%M") in page
    assert start.strftime("%Y-%m-%d %H:%M") in page


def test_the_page_counts_only_the_current_period(client, owner, workspace):
    limits = get_workspace_limits(workspace.pk)
    start, _ = limits.period()
    Usage.objects.create(
        workspace=workspace,
        period_start=start - timedelta(days=31),
        period_end=start,
        events=987_654,
    )
    use(workspace, 5)
    client.force_login(owner)
    response = client.get(url(workspace))
    assert response.context["state"].used == 5
    page = response.content.decode()
    # Figures render with thousands separators, which no ULID or CSRF token holds (a bare "777"
    # once matched a workspace id); neither the old period nor old + new is shown.
    assert "987,654" not in page and "987,659" not in page
    assert 'aria-valuenow="5"' in page


def test_a_full_quota_is_called_out(client, owner, free_workspace):
    use(free_workspace, 10_000)
    client.force_login(owner)
    page = client.get(url(free_workspace)).content.decode()
    assert "meter-full" in page
    assert "quota_exceeded" in page


def test_only_owners_see_the_plan_form(client, owner, member, workspace):
    Membership.objects.filter(workspace=workspace, user=member).update(role=Role.ADMIN)
    client.force_login(member)
    admin_page = client.get(url(workspace)).content.decode()
    client.force_login(owner)
    owner_page = client.get(url(workspace)).content.decode()
    assert "Change plan" not in admin_page and "Only owners can change the plan" in admin_page
    assert "Change plan" in owner_page and 'name="csrfmiddlewaretoken"' in owner_page


def test_an_admin_cannot_change_the_plan(client, member, workspace):
    Membership.objects.filter(workspace=workspace, user=member).update(role=Role.ADMIN)
    client.force_login(member)
    response = client.post(url(workspace, "plan/"), {"plan": "free"})
    assert response.status_code == 403
    assert Workspace.objects.get(pk=workspace.pk).plan.code == "pro"


def test_a_member_cannot_change_the_plan(client, member, workspace):
    client.force_login(member)
    response = client.post(url(workspace, "plan/"), {"plan": "free"})
    assert response.status_code == 403
    assert Workspace.objects.get(pk=workspace.pk).plan.code == "pro"


def test_an_upgrade_takes_effect_on_the_next_request(client, owner, free_workspace):
    use(free_workspace, 10_000)
    limits = get_workspace_limits(free_workspace.pk)  # cached, as the ingest path has it
    with transaction.atomic():
        assert reserve_quota(limits, 1).granted == 0
    client.force_login(owner)

    response = client.post(url(free_workspace, "plan/"), {"plan": "starter"})

    assert response.status_code == 302
    assert response["Location"] == url(free_workspace)
    assert Workspace.objects.get(pk=free_workspace.pk).plan.code == "starter"
    fresh = get_workspace_limits(free_workspace.pk)
    assert fresh.plan_code == "starter"
    assert fresh.monthly_event_limit == 250_000
    assert fresh.developer_api is True
    with transaction.atomic():
        assert reserve_quota(fresh, 1).granted == 1
    assert quota_state(fresh).used == 10_001
    page = client.get(url(free_workspace)).content.decode()
    assert "now on the Starter plan" in page
    assert "250,000" in page


def test_a_downgrade_lowers_the_limit_at_once(client, owner, workspace):
    use(workspace, 20_000)
    get_workspace_limits(workspace.pk)
    client.force_login(owner)

    # Free keeps 7 days instead of 90: confirmed as the page asks (tests/billing/test_plan_change.py).
    response = client.post(url(workspace, "plan/"), {"plan": "free", "confirm": "free"})

    assert response.status_code == 302
    limits = get_workspace_limits(workspace.pk)
    assert limits.monthly_event_limit == 10_000
    assert limits.developer_api is False
    with transaction.atomic():
        assert reserve_quota(limits, 1).granted == 0
    page = client.get(url(workspace)).content.decode()
    assert "100.0% used" in page


def test_an_unknown_plan_is_a_form_error(client, owner, workspace):
    client.force_login(owner)
    response = client.post(url(workspace, "plan/"), {"plan": "platinum"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert Workspace.objects.get(pk=workspace.pk).plan.code == "pro"


def test_the_plan_change_only_accepts_post(client, owner, workspace):
    client.force_login(owner)
    assert client.get(url(workspace, "plan/")).status_code == 405


def test_the_usage_page_is_timezone_safe_at_the_period_edge(client, owner, workspace):
    # A billing anchor in the past month still yields a period that contains now.
    Workspace.objects.filter(pk=workspace.pk).update(
        billing_anchor=timezone.now() - timedelta(days=40)
    )
    client.force_login(owner)
    response = client.get(url(workspace))
    start, end = response.context["period_start"], response.context["period_end"]
    assert start <= timezone.now() < end
