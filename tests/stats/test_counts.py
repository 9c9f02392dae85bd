"""The event counters (stats.EventCount) equal a count of the rows, whoever wrote or deleted them.

Each test compares every counter with a GROUP BY of the stored rows, bucketed in Python
(stats.models.bucket_of), so the database's quarter hour is checked against Python's too.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.downgrade import plan_edit_cut, retention_cut
from billing.models import Plan
from ingest.models import Event, TimelineEvent
from ingest.retention import purge_expired
from sources.services import create_source
from stats.models import EventCount, bucket_of
from tests.ingest.v1support import post_events, seed_event
from workspaces.live import hourly_chart, retention_cutoff
from workspaces.models import Worker

pytestmark = pytest.mark.django_db

Key = tuple[int, int, datetime, str]


def counters() -> dict[Key, int]:
    return {(c.workspace_id, c.source_id, c.bucket, c.kind): c.count
            for c in EventCount.objects.all()}


def row_counts() -> dict[Key, int]:
    """GROUP BY (workspace, source, quarter hour, kind) of the rows, bucketed in Python."""
    counted: Counter[Key] = Counter()
    for ws, src, at, status in Event.objects.values_list(
        "workspace_id", "source_id", "received_at", "status"
    ):
        counted[ws, src, bucket_of(at), status] += 1
    for ws, src, at in TimelineEvent.objects.values_list("workspace_id", "source_id", "received_at"):
        counted[ws, src, bucket_of(at), "timeline"] += 1
    return dict(counted)


def assert_exact() -> None:
    """Every counter equals its rows' count, and no counter is left at 0."""
    assert counters() == row_counts()


def single(status: str = "success", **fields) -> dict:
    return {"status": status, "message": "nightly backup", **fields}


# Instants on and around quarter-hour edges, with and without a fraction of a second.
EDGES = [timedelta(minutes=m, seconds=s, microseconds=us) for m, s, us in (
    (0, 0, 0), (0, 0, 1), (14, 59, 999_999), (15, 0, 0), (29, 59, 0), (30, 0, 500_000),
    (44, 59, 999_999), (45, 0, 0), (59, 59, 999_999),
)]


@pytest.fixture
def worker(workspace):
    return Worker.objects.create(workspace=workspace, display_name="Alex", external_id="alex")


@pytest.fixture
def hour() -> datetime:
    """A whole UTC hour three hours ago (inside the chart)."""
    return timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def make_rows(source, worker, at: datetime, status: str = "success") -> None:
    Event.objects.bulk_create([Event(workspace=source.workspace, source=source, status=status,
                                     received_at=at)])
    TimelineEvent.objects.bulk_create([TimelineEvent(
        workspace=source.workspace, source=source, worker=worker, event_type="ticket.resolved",
        category="support", timestamp=at, request_id="req", received_at=at)])


def test_events_posted_through_the_api_are_counted_by_status_and_kind(api, auth_header, workspace):
    for status in ("success", "success", "failure", "partial"):
        assert api.post("/api/ingest", single(status), **auth_header).status_code == 201
    batch = [seed_event(), seed_event(), seed_event(category="support")]
    response = post_events(api, batch, auth_header)
    assert response.status_code == 202, response.content

    assert_exact()
    by_kind = Counter()
    for (ws, _, _, kind), n in counters().items():
        assert ws == workspace.pk
        by_kind[kind] += n
    assert by_kind == {"success": 2, "failure": 1, "partial": 1, "timeline": 3}


def test_a_quarter_hour_holds_minutes_0_to_14_15_to_29_30_to_44_and_45_to_59(
    source, worker, hour
):
    for edge in EDGES:
        make_rows(source, worker, hour + edge, status="partial")

    assert_exact()
    buckets = Counter({bucket: n for (_, _, bucket, kind), n in counters().items()
                       if kind == "partial"})
    assert buckets == {hour: 3, hour + timedelta(minutes=15): 2,
                       hour + timedelta(minutes=30): 2, hour + timedelta(minutes=45): 2}


def test_the_chart_reads_the_counters(client, owner, workspace, source, worker, hour):
    for edge in EDGES:
        make_rows(source, worker, hour + edge, status="failure")
    Event.objects.create(workspace=workspace, source=source, status="success")

    chart = hourly_chart(workspace)

    first = datetime.fromisoformat(chart["start"])
    at = (hour - first) // timedelta(minutes=15)
    assert chart["series"]["failure"][at:at + 4] == [3, 2, 2, 2]
    assert chart["series"]["timeline"][at:at + 4] == [3, 2, 2, 2]
    assert sum(chart["series"]["success"]) == 1
    assert sum(map(sum, chart["series"].values())) == 2 * len(EDGES) + 1


def test_bulk_inserts_across_sources_and_workspaces_are_counted(
    source, worker, other_workspace, hour
):
    other, _ = create_source(other_workspace, "Other", slug="other")
    stranger = Worker.objects.create(workspace=other_workspace, display_name="Sam", external_id="s")
    Event.objects.bulk_create(
        [Event(workspace=s.workspace, source=s, status=status, received_at=hour + edge)
         for s in (source, other) for status in ("success", "failure") for edge in EDGES],
        batch_size=7,
    )
    TimelineEvent.objects.bulk_create(
        [TimelineEvent(workspace=s.workspace, source=s, worker=w, event_type="call.logged",
                       category="sales", timestamp=hour, request_id="r", received_at=hour + edge)
         for s, w in ((source, worker), (other, stranger)) for edge in EDGES],
    )

    assert_exact()
    assert sum(counters().values()) == 3 * 2 * len(EDGES)


def test_the_demo_s_week_of_history_is_counted():
    call_command("demo", "--base-url", "http://127.0.0.1:9999", stdout=StringIO())

    assert_exact()
    assert sum(counters().values()) == Event.objects.count() + TimelineEvent.objects.count() > 100


def test_deleted_rows_are_taken_off_and_an_emptied_counter_goes(source, worker, hour):
    for edge in EDGES:
        make_rows(source, worker, hour + edge)

    Event.objects.filter(received_at__lt=hour + timedelta(minutes=15)).delete()
    TimelineEvent.objects.filter(received_at__gte=hour + timedelta(minutes=44)).delete()

    assert_exact()
    assert not EventCount.objects.filter(count__lte=0).exists()
    assert not EventCount.objects.filter(bucket=hour, kind="success").exists()


def test_deleting_a_source_or_workspace_leaves_no_counter_behind(
    workspace, source, worker, other_workspace, hour
):
    second, _ = create_source(workspace, "Second", slug="second")
    for edge in EDGES[:3]:
        make_rows(source, worker, hour + edge)
        make_rows(second, worker, hour + edge)
    other, _ = create_source(other_workspace, "Other", slug="other")
    Event.objects.create(workspace=other_workspace, source=other, status="success")

    source.delete()
    assert_exact()
    assert {key[1] for key in counters()} == {second.pk, other.pk}

    workspace.delete()
    assert_exact()
    assert {key[0] for key in counters()} == {other_workspace.pk}


def test_a_row_cannot_be_moved_to_another_counter(source, worker, hour):
    make_rows(source, worker, hour)
    for queryset, change in (
        (Event.objects.all(), {"status": "failure"}),
        (Event.objects.all(), {"received_at": hour - timedelta(hours=1)}),
        (TimelineEvent.objects.all(), {"received_at": hour - timedelta(hours=1)}),
    ):
        with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
            queryset.update(**change)
    # Other columns may change (nothing does today); the counters are untouched.
    Event.objects.update(message="edited")
    assert_exact()


def test_the_purge_keeps_the_counters_exact_across_a_quarter_hour_boundary(
    workspace, source, worker
):
    now = timezone.now()
    cutoff = retention_cutoff(workspace, now)
    edge = bucket_of(cutoff)  # the quarter hour holding the cut-off instant
    for offset in (-16, -1, 0, 1, 14, 16):  # minutes from the quarter hour's start
        for _ in range(2):
            make_rows(source, worker, edge + timedelta(minutes=offset, seconds=7))
    make_rows(source, worker, cutoff - timedelta(microseconds=1))
    make_rows(source, worker, cutoff)

    purge_expired(now=now, batch_size=3)

    assert_exact()
    assert not Event.objects.filter(received_at__lt=cutoff).exists()
    assert Event.objects.filter(received_at=cutoff).exists()


def test_after_a_plan_change_shortens_retention_the_purge_keeps_them_exact(
    workspace, source, worker
):
    now = timezone.now()
    free = Plan.objects.get(code="free")
    assert free.retention_days < workspace.plan.retention_days
    for days in (0, free.retention_days - 1, free.retention_days, free.retention_days + 1,
                 workspace.plan.retention_days - 1):
        for minutes in (0, 7, 15):
            make_rows(source, worker, now - timedelta(days=days, minutes=minutes))
    purge_expired(now=now, batch_size=4)
    assert_exact()
    kept = Event.objects.count()

    workspace.plan = free
    workspace.save(update_fields=["plan"])
    purge_expired(now=now, batch_size=4)

    assert_exact()
    assert 0 < Event.objects.count() < kept


def test_the_chart_shows_a_quarter_hour_only_when_it_starts_within_retention(
    workspace, source, worker, settings
):
    """Retention applies per quarter hour: the one holding the cut-off is left out whole, so
    what the chart shows is exactly the rows' count per shown quarter hour."""
    one_day = Plan.objects.create(code="one-day", name="One day", retention_days=1,
                                  monthly_event_limit=1000, burst_per_key=10,
                                  burst_per_workspace=10)
    workspace.plan = one_day
    workspace.save(update_fields=["plan"])
    now = timezone.now().replace(minute=20, second=0, microsecond=0)
    cutoff = retention_cutoff(workspace, now)  # 24 hours ago, at minute 20
    for minutes in (-30, -10, 0, 5, 10, 30, 60):
        Event.objects.create(workspace=workspace, source=source, status="success",
                             received_at=cutoff + timedelta(minutes=minutes))

    chart = hourly_chart(workspace, now)

    first = datetime.fromisoformat(chart["start"])
    shown = Counter()
    for at in Event.objects.values_list("received_at", flat=True):
        bucket = bucket_of(at)
        if bucket >= cutoff:
            shown[(bucket - first) // timedelta(minutes=15)] += 1
    series = chart["series"]["success"]
    assert {i: n for i, n in enumerate(series) if n} == dict(shown)
    # The quarter hour from minute 15 holds rows on both sides of the cut-off: not shown.
    assert series[(bucket_of(cutoff) - first) // timedelta(minutes=15)] == 0
    assert sum(series) == 3


def test_what_a_shorter_retention_would_purge_is_counted_exactly_from_the_counters(
    workspace, source, worker, other_workspace
):
    """Whole quarter hours from the counters, the one holding the cut-off by its rows."""
    now = timezone.now()
    free = Plan.objects.get(code="free")
    cutoff = now - timedelta(days=free.retention_days)
    for minutes in (-40, -16, -15, -14, -1, 0, 1, 14, 15, 16, 600, 60 * 24 * 30):
        for at in (cutoff - timedelta(minutes=minutes), cutoff - timedelta(minutes=minutes, seconds=1)):
            make_rows(source, worker, at, status=("success", "failure")[minutes % 2])
    other, _ = create_source(other_workspace, "Other", slug="other")
    Event.objects.create(workspace=other_workspace, source=other, status="success",
                         received_at=cutoff - timedelta(days=3))

    cut = retention_cut(workspace, free, now)
    edit = plan_edit_cut(workspace.plan, free.retention_days, now)

    past = {"received_at__lt": cutoff}
    assert cut is not None and edit is not None
    assert (cut.events, cut.timeline_events) == (
        Event.objects.filter(workspace=workspace, **past).count(),
        TimelineEvent.objects.filter(workspace=workspace, **past).count(),
    )
    # Every workspace on the plan (both are Pro here).
    assert (edit.events, edit.timeline_events) == (
        Event.objects.filter(**past).count(), TimelineEvent.objects.filter(**past).count(),
    )
    assert cut.events == edit.events - 1 > 0


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_the_rows_already_stored(source, worker, hour):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def migrate(target) -> None:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(target)

    migrate([("stats", None)])
    try:
        for edge in EDGES:  # stored while no trigger counts them
            make_rows(source, worker, hour + edge, status="partial")
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    assert_exact()
    assert sum(counters().values()) == 2 * len(EDGES)
    make_rows(source, worker, hour)  # and the triggers count from then on
    assert_exact()


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_a_later_migration_rebuilding_the_events_table_creates_the_triggers_again(
    source, worker, hour
):
    """Django rebuilds a SQLite table to alter it, which drops the table's triggers: the
    migration's docstring says to run create_sqlite_counters after such an alteration."""
    import importlib

    from django.db import connection, models

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's table rebuild; PostgreSQL alters in place")
    counting = importlib.import_module("stats.migrations.0001_initial")
    old = Event._meta.get_field("event_type")
    new = models.CharField(max_length=old.max_length + 1, blank=True, default="")
    new.set_attributes_from_name("event_type")

    def rebuild(before, after, recreate: bool) -> None:
        with connection.schema_editor() as editor:
            editor.alter_field(Event, before, after)
            if recreate:
                counting.create_sqlite_counters(None, editor)

    make_rows(source, worker, hour)
    rebuild(old, new, recreate=False)
    try:
        make_rows(source, worker, hour)
        assert counters() != row_counts()  # the event row was not counted
        Event.objects.filter(received_at=hour).delete()
        TimelineEvent.objects.all().delete()
        EventCount.objects.all().delete()
        with connection.schema_editor() as editor:
            counting.create_sqlite_counters(None, editor)
        make_rows(source, worker, hour)
        assert_exact()
    finally:
        rebuild(new, old, recreate=True)
    make_rows(source, worker, hour + timedelta(minutes=20))
    assert_exact()
    assert sum(counters().values()) == 4
