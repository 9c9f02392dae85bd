"""The retention purge: what goes, what stays, and the counters after it, however it is cut.

Every test compares the event counters with a GROUP BY of the rows after each purge
(tests/stats/test_counts.py's helpers); the batch sizes are tiny so that batches end inside a
quarter hour, on a day boundary and among rows sharing one instant.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from bench.purge import BY_RETENTION, COUNTER_CHECK
from billing.models import Plan
from ingest import retention
from ingest.management.commands import purge_expired as command
from ingest.models import Event, TimelineEvent
from ingest.retention import PurgeReport, purge_expired
from sources.services import create_source
from tests.servers import ROOT, manage, own_database, server_env
from tests.stats.test_counts import assert_exact, make_rows
from workspaces.live import retention_cutoff
from workspaces.models import Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker(workspace):
    return Worker.objects.create(workspace=workspace, display_name="Alex", external_id="alex")


def kept_ids() -> tuple[set[int], set[int]]:
    return (set(Event.objects.values_list("pk", flat=True)),
            set(TimelineEvent.objects.values_list("pk", flat=True)))


def test_a_purge_across_a_day_boundary_deletes_up_to_the_cut_off_and_keeps_the_counters_exact(
    workspace, source, worker
):
    # The cut-off falls 5 minutes after a UTC midnight: rows on both sides of midnight expire.
    midnight = (timezone.now() - timedelta(days=workspace.plan.retention_days)).astimezone(
        UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    now = midnight + timedelta(minutes=5) + timedelta(days=workspace.plan.retention_days)
    cutoff = retention_cutoff(workspace, now)
    assert cutoff == midnight + timedelta(minutes=5)
    for minutes in (-30, -16, -15, -1, 0, 1, 4, 14):
        make_rows(source, worker, midnight + timedelta(minutes=minutes, seconds=30))
    make_rows(source, worker, cutoff - timedelta(microseconds=1))
    make_rows(source, worker, cutoff)
    make_rows(source, worker, cutoff + timedelta(hours=1))
    assert_exact()

    report = purge_expired(now=now, batch_size=2)

    assert_exact()
    assert report.deleted["ingest.Event"] == 8
    assert report.deleted["ingest.TimelineEvent"] == 8
    assert not Event.objects.filter(received_at__lt=cutoff).exists()
    assert not TimelineEvent.objects.filter(received_at__lt=cutoff).exists()
    kept = sorted(Event.objects.values_list("received_at", flat=True))
    assert kept == [cutoff, cutoff + timedelta(minutes=9, seconds=30),
                    cutoff + timedelta(hours=1)]


def test_rows_sharing_one_instant_go_together_however_many_batches_they_take(
    workspace, source, worker
):
    now = timezone.now()
    instant = retention_cutoff(workspace, now) - timedelta(hours=2)
    for _ in range(7):
        make_rows(source, worker, instant)
    make_rows(source, worker, instant + timedelta(microseconds=1))

    report = purge_expired(now=now, batch_size=3)

    assert report.deleted["ingest.Event"] == 8
    assert not Event.objects.exists()
    assert not TimelineEvent.objects.exists()
    assert_exact()


def test_a_plan_change_that_shortens_then_lengthens_retention(workspace, source, worker):
    now = timezone.now()
    pro = workspace.plan
    free = Plan.objects.get(code="free")
    ages = (0, free.retention_days - 1, free.retention_days + 1, 30, pro.retention_days - 1,
            pro.retention_days + 1, pro.retention_days + 40)
    for days in ages:
        make_rows(source, worker, now - timedelta(days=days, minutes=3))

    first = purge_expired(now=now, batch_size=2)
    assert first.deleted["ingest.Event"] == 2  # older than Pro's 90 days
    assert_exact()
    within_pro = kept_ids()

    workspace.plan = free
    workspace.save(update_fields=["plan"])
    shorter = purge_expired(now=now, batch_size=2)
    assert shorter.deleted["ingest.Event"] == 3  # 8, 30 and 89 days old
    assert shorter.deleted["ingest.TimelineEvent"] == 3
    assert_exact()
    within_free = kept_ids()
    assert all(now - at < timedelta(days=free.retention_days)
               for at in Event.objects.values_list("received_at", flat=True))

    # Lengthening retention again deletes nothing more, and brings nothing back.
    workspace.plan = pro
    workspace.save(update_fields=["plan"])
    longer = purge_expired(now=now, batch_size=2)
    assert longer.total == 0
    assert kept_ids() == within_free
    assert within_free[0] < within_pro[0]
    assert_exact()


def test_nothing_inside_retention_is_deleted_in_any_workspace(
    workspace, free_workspace, source, worker
):
    free_source, _ = create_source(free_workspace, "Free jobs")
    free_worker = Worker.objects.create(workspace=free_workspace, display_name="F")
    now = timezone.now()
    expired = set()
    for src, wrk, ws in ((source, worker, workspace), (free_source, free_worker, free_workspace)):
        cutoff = retention_cutoff(ws, now)
        make_rows(src, wrk, cutoff - timedelta(microseconds=1))
        expired.add(Event.objects.latest("pk").pk)
        for delta in (timedelta(0), timedelta(microseconds=1), timedelta(minutes=14, seconds=59)):
            make_rows(src, wrk, cutoff + delta)
    before = set(Event.objects.values_list("pk", flat=True))

    report = purge_expired(now=now, batch_size=1)

    assert report.deleted["ingest.Event"] == report.deleted["ingest.TimelineEvent"] == 2
    assert set(Event.objects.values_list("pk", flat=True)) == before - expired
    assert TimelineEvent.objects.count() == 6
    assert_exact()


def test_a_purge_stopped_midway_leaves_rows_and_counters_consistent_and_the_next_run_finishes(
    workspace, source, worker
):
    now = timezone.now()
    cutoff = retention_cutoff(workspace, now)
    for minutes in range(12):  # 12 expired rows per table across quarter hours
        make_rows(source, worker, cutoff - timedelta(minutes=7 * minutes + 1))
    make_rows(source, worker, cutoff + timedelta(minutes=1))

    class Stop(Exception):
        pass

    def stop_after_two(report: PurgeReport) -> None:
        if report.batches == 2:
            raise Stop

    with pytest.raises(Stop):
        purge_expired(now=now, batch_size=5, progress=stop_after_two)

    # Each batch went whole with its counters: the oldest 10 events, none of the rest.
    assert Event.objects.filter(received_at__lt=cutoff).count() == 2
    assert TimelineEvent.objects.filter(received_at__lt=cutoff).count() == 12
    assert_exact()

    report = purge_expired(now=now, batch_size=5)
    assert report.deleted["ingest.Event"] == 2
    assert report.deleted["ingest.TimelineEvent"] == 12
    assert Event.objects.count() == TimelineEvent.objects.count() == 1
    assert_exact()


@pytest.mark.django_db(transaction=True)
def test_a_stopped_purge_keeps_what_its_committed_batches_deleted(workspace, source, worker):
    """Each batch commits on its own: stopping the run rolls back nothing already done."""
    now = timezone.now()
    cutoff = retention_cutoff(workspace, now)
    for minutes in range(6):
        make_rows(source, worker, cutoff - timedelta(minutes=minutes + 1))

    def stop(report: PurgeReport) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        purge_expired(now=now, batch_size=4, progress=stop)

    assert Event.objects.count() == 2
    assert_exact()


class Clock:
    """time.monotonic and time.sleep for ingest.retention: every reading finds the clock `batch`
    seconds on (so each batch takes that long), every sleep is recorded."""

    def __init__(self, batch: float) -> None:
        self.now, self.batch, self.slept = 0.0, batch, []

    def monotonic(self) -> float:
        self.now += self.batch
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_command_rests_in_proportion_to_each_batch_and_prints_progress(
    workspace, source, worker, monkeypatch
):
    monkeypatch.setattr(command, "PROGRESS_EVERY", 0.0)
    clock = Clock(batch=0.2)
    monkeypatch.setattr(retention, "time", clock)
    cutoff = retention_cutoff(workspace)
    for minutes in range(5):
        make_rows(source, worker, cutoff - timedelta(hours=1, minutes=minutes))
    out = StringIO()

    call_command("purge_expired", "--batch-size", "2", "--duty-percent", "25", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("… 2 rows deleted in 1 batches, ")
    assert lines[0].endswith(" rows/s")
    assert "ingest.Event: 5 deleted" in lines
    assert lines[-1] == "Purged 10 rows in 6 batches."
    # Busy 25 % of the time: every batch of 0.2 s is followed by 0.6 s of rest.
    assert clock.slept == pytest.approx([0.6] * 6)
    assert_exact()


@pytest.mark.parametrize(("duty", "rest"), [(100, None), (50, 0.3), (10, 2.7)])
def test_the_rest_after_a_batch_is_proportional_to_its_time(
    workspace, source, worker, monkeypatch, duty, rest
):
    clock = Clock(batch=0.3)
    monkeypatch.setattr(retention, "time", clock)
    make_rows(source, worker, retention_cutoff(workspace) - timedelta(hours=1))

    purge_expired(batch_size=10, duty_percent=duty)

    assert clock.slept == ([] if rest is None else pytest.approx([rest, rest]))


def test_by_default_the_purge_spends_a_quarter_of_its_time_deleting(
    workspace, source, worker, monkeypatch, settings
):
    assert settings.PURGE_DUTY_PERCENT == 25
    clock = Clock(batch=0.1)
    monkeypatch.setattr(retention, "time", clock)
    make_rows(source, worker, retention_cutoff(workspace) - timedelta(hours=1))

    purge_expired()

    assert clock.slept == pytest.approx([0.3, 0.3])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--duty-percent", "0", "the duty cycle (--duty-percent, PURGE_DUTY_PERCENT) must be "
                                "1 to 100, got 0"),
        ("--duty-percent", "101", "must be 1 to 100, got 101"),
        ("--duty-percent", "0.5", "--duty-percent must be a whole number, got '0.5'"),
        ("--duty-percent", "soon", "--duty-percent must be a whole number, got 'soon'"),
        ("--batch-size", "0", "the batch size (--batch-size, PURGE_BATCH_SIZE) must be at least "
                              "1, got 0"),
        ("--batch-size", "many", "--batch-size must be a whole number, got 'many'"),
    ],
)
def test_the_command_refuses_a_bad_pacing_and_deletes_nothing(
    workspace, source, worker, option, value, message
):
    make_rows(source, worker, retention_cutoff(workspace) - timedelta(hours=1))
    with pytest.raises(CommandError) as refused:
        call_command("purge_expired", option, value, stdout=StringIO())
    assert message in str(refused.value)
    assert Event.objects.count() == 1


@pytest.mark.parametrize("pacing", [{"duty_percent": 0}, {"duty_percent": 101},
                                    {"batch_size": 0}])
def test_purge_expired_refuses_a_pacing_out_of_range(pacing):
    with pytest.raises(retention.PacingError):
        purge_expired(**pacing)


# --- a real process killed midway (PostgreSQL) ----------------------------------------------------

KILL_SEED = """
INSERT INTO ingest_event (public_id, workspace_id, source_id, status, message, description,
  event_type, external_id, received_at)
SELECT substr(md5(%(tag)s || i), 1, 24), %(ws)s, %(src)s,
  (ARRAY['success', 'failure', 'partial'])[1 + i %% 3], '', '', 'seed', '',
  now() - make_interval(days => %(days)s) - make_interval(secs => i)
FROM generate_series(1, %(n)s) AS i
"""


@pytest.mark.postgres
@pytest.mark.server
def test_a_purge_process_killed_midway_leaves_rows_and_counters_consistent():
    """SIGKILL in the middle of a run: the batch in flight rolls back whole, the ones before it
    stay deleted with their counters, and the next run deletes the rest."""
    with own_database(server_env(), "ackly_test_purge_kill") as env:
        org = manage(env, "createworkspace", "Killed", "--plan", "pro").split()[-1]
        manage(env, "createsource", org, "jobs")
        url = env["DATABASE_URL"]
        with psycopg.connect(url, autocommit=True) as conn:
            ws, src = conn.execute(
                "SELECT w.id, s.id FROM workspaces_workspace w JOIN sources_source s "
                "ON s.workspace_id = w.id WHERE w.public_id = %s", (org,)).fetchone()
            conn.execute(KILL_SEED, {"tag": "old", "ws": ws, "src": src, "days": 95, "n": 20_000})
            conn.execute(KILL_SEED, {"tag": "new", "ws": ws, "src": src, "days": 3, "n": 500})

            def expired() -> int:
                return conn.execute(BY_RETENTION.format(table="ingest_event", where="",
                                                        cmp="<")).fetchone()[0]

            purge = subprocess.Popen(
                [sys.executable, "manage.py", "purge_expired", "--batch-size", "200",
                 "--duty-percent", "50"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 60
                while expired() == 20_000 and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.3)
                os.kill(purge.pid, signal.SIGKILL)
            finally:
                purge.kill()
                purge.wait(timeout=30)
            # The server rolls back the killed client's open transaction once it sees it gone.
            deadline = time.monotonic() + 30
            while conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state <> 'idle'").fetchone()[0]:
                assert time.monotonic() < deadline
                time.sleep(0.1)

            left = expired()
            assert 0 < left < 20_000
            assert conn.execute(COUNTER_CHECK).fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM ingest_event").fetchone()[0] == left + 500

            manage(env, "purge_expired")
            assert expired() == 0
            assert conn.execute("SELECT count(*) FROM ingest_event").fetchone()[0] == 500
            assert conn.execute(COUNTER_CHECK).fetchone()[0] == 0


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("PURGE_DUTY_PERCENT", 0, "the duty cycle (--duty-percent, PURGE_DUTY_PERCENT) must be 1 to "
                              "100, got 0"),
    ("PURGE_BATCH_SIZE", -5, "the batch size (--batch-size, PURGE_BATCH_SIZE) must be at least 1, "
                             "got -5"),
])
def test_a_setting_out_of_range_is_refused_by_name_and_deletes_nothing(
    workspace, source, worker, settings, setting, value, message
):
    setattr(settings, setting, value)
    make_rows(source, worker, retention_cutoff(workspace) - timedelta(hours=1))
    with pytest.raises(CommandError) as refused:
        call_command("purge_expired", stdout=StringIO())
    assert message in str(refused.value)
    assert Event.objects.count() == 1
