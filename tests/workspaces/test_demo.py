"""`manage.py demo` seeds a believable week once, and `demo --live` keeps events flowing."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum
from django.utils import timezone

from billing.models import Usage
from billing.services import get_workspace_limits
from ingest.models import (
    Event,
    EventStatus,
    RejectedRequest,
    Rejection,
    Snapshot,
    SnapshotHistory,
    TimelineEvent,
)
from sources.models import Source
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

HISTORY = (Event, TimelineEvent, SnapshotHistory, Snapshot, RejectedRequest, Rejection)


def demo(*args: str) -> str:
    out = StringIO()
    call_command("demo", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def rows() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in HISTORY)


def test_the_demo_seeds_a_week_of_every_kind_once():
    first = demo()
    seeded = rows()
    second = demo()

    assert rows() == seeded  # a second run adds nothing
    assert "History:" in first and "History:" not in second
    events, timeline, history, cards, refused, counters = seeded
    assert events > 300 and timeline > 300 and history > 20 and cards == 4 and refused > 10
    now = timezone.now()
    oldest = Event.objects.order_by("received_at").first().received_at
    assert now - timedelta(days=8) <= oldest <= now - timedelta(days=6)
    assert not Event.objects.filter(received_at__gt=now).exists()
    for slug in ("nightly-jobs", "crm-hub", "ci-pipeline"):
        statuses = set(Event.objects.filter(source__slug=slug).values_list("status", flat=True))
        assert {EventStatus.SUCCESS, EventStatus.FAILURE} <= statuses, slug
        assert not Event.objects.filter(source__slug=slug, duration_ms__isnull=True).exists()
    agent = TimelineEvent.objects.filter(source__slug="support-agent")
    assert agent.exists() and agent.values("worker").distinct().count() == 1
    assert TimelineEvent.objects.filter(source__slug="crm-hub").values("worker").distinct().count() == 3


def test_the_refused_requests_are_behind_the_rejection_counts():
    demo()

    for source in Source.objects.all():
        for code in set(RejectedRequest.objects.filter(source=source).values_list("code", flat=True)):
            kept = RejectedRequest.objects.filter(source=source, code=code).count()
            counted = Rejection.objects.filter(source=source, code=code).aggregate(n=Sum("count"))
            assert counted["n"] == kept, (source.slug, code)
    assert RejectedRequest.objects.filter(code="key_revoked").first().message.startswith(
        "The key was revoked"
    )
    recent = timezone.now() - timedelta(hours=24)
    assert Rejection.objects.filter(hour__gte=recent - timedelta(hours=1)).count() >= 3


def test_the_usage_counter_holds_exactly_the_seeded_events_of_this_period():
    demo()
    workspace = Workspace.objects.get(name="Demo")
    start, _ = get_workspace_limits(workspace.pk).period()

    inserted = (
        Event.objects.filter(workspace=workspace, received_at__gte=start).count()
        + TimelineEvent.objects.filter(workspace=workspace, received_at__gte=start).count()
    )

    assert Usage.objects.get(workspace=workspace, period_start=start).events == inserted > 0
    assert workspace.created_at <= Event.objects.order_by("received_at").first().received_at


def test_the_demo_refuses_a_nonsense_trickle():
    with pytest.raises(CommandError, match="--interval must be positive"):
        demo("--live", "--interval", "0")
    assert not Workspace.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_demo_live_sends_requests_through_the_real_api_until_its_count(live_server):
    demo()
    before = rows()

    out = demo("--live", "--interval", "0.01", "--count", "8", "--base-url", live_server.url)

    assert "Sent 8 requests." in out
    trickle = out.split("Ctrl-C to stop):", 1)[1].splitlines()
    answers = [line.split()[2] for line in trickle if "/api/" in line]
    assert len(answers) == 8 and set(answers) <= {"201", "202", "400"}, out
    events, timeline, _, _, refused, _ = (after - was for after, was in zip(rows(), before, strict=True))
    assert events + timeline + refused == 8
    assert (events, timeline, refused) == (
        answers.count("201"),
        answers.count("202"),
        answers.count("400"),
    )
