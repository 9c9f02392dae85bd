"""The timeline's references, checked once per statement by triggers (migration ingest.0003).

The three per-row foreign keys were replaced for speed (docs/performance.md). These tests hold
the replacement to what the keys guaranteed, and to the one thing more it checks: a row's
source and worker belong to the row's workspace. They run on SQLite (row triggers) and on
PostgreSQL (statement triggers, deferred parent-side checks, row locks).
"""

from __future__ import annotations

import importlib
import threading

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ingest.models import TimelineEvent
from sources.services import create_source
from workspaces.models import Worker


def timeline(workspace, source, worker, **fields) -> TimelineEvent:
    return TimelineEvent(
        workspace=workspace, source=source, worker=worker, event_type="call.logged",
        category="success", timestamp=timezone.now(), request_id="req_test", **fields,
    )


@pytest.fixture
def worker(workspace):
    return Worker.objects.create(workspace=workspace, display_name="Ada")


@pytest.fixture
def foreign(other_workspace):
    """A source and a worker of another workspace."""
    source, _ = create_source(other_workspace, "Globex CI")
    return source, Worker.objects.create(workspace=other_workspace, display_name="Gina")


def assert_refused(make_rows) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make_rows()


@pytest.mark.django_db
class TestWriting:
    def test_rows_in_their_own_workspace_are_stored(self, workspace, source, worker):
        TimelineEvent.objects.bulk_create([timeline(workspace, source, worker) for _ in range(3)])
        assert TimelineEvent.objects.filter(worker=worker).count() == 3

    def test_a_worker_of_another_workspace_is_refused(self, workspace, source, foreign):
        assert_refused(lambda: timeline(workspace, source, foreign[1]).save())
        assert TimelineEvent.objects.count() == 0

    def test_a_source_of_another_workspace_is_refused(self, workspace, worker, foreign):
        assert_refused(lambda: timeline(workspace, foreign[0], worker).save())
        assert TimelineEvent.objects.count() == 0

    def test_a_row_claiming_another_workspace_is_refused(self, workspace, other_workspace,
                                                         source, worker):
        assert_refused(lambda: timeline(other_workspace, source, worker).save())
        assert TimelineEvent.objects.count() == 0

    @pytest.mark.parametrize("field", ["worker_id", "source_id", "workspace_id"])
    def test_an_id_that_does_not_exist_is_refused(self, workspace, source, worker, field):
        row = timeline(workspace, source, worker)
        setattr(row, field, 987654321)
        assert_refused(row.save)
        assert TimelineEvent.objects.count() == 0

    def test_one_bad_row_refuses_the_whole_statement(self, workspace, source, worker, foreign):
        rows = [timeline(workspace, source, worker) for _ in range(499)]
        rows.insert(250, timeline(workspace, source, foreign[1]))
        assert_refused(lambda: TimelineEvent.objects.bulk_create(rows))
        assert TimelineEvent.objects.count() == 0

    @pytest.mark.parametrize("field", ["worker", "source"])
    def test_moving_a_row_to_another_workspace_s_parent_is_refused(
        self, workspace, source, worker, foreign, field
    ):
        row = timeline(workspace, source, worker)
        row.save()
        moved = foreign[1] if field == "worker" else foreign[0]
        assert_refused(lambda: TimelineEvent.objects.filter(pk=row.pk).update(**{field: moved}))
        row.refresh_from_db()
        assert (row.source_id, row.worker_id) == (source.pk, worker.pk)


def delete_raw(table: str, pk: int) -> None:
    """A delete that skips Django's cascade, as a hand-written query or another program would."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])


@pytest.mark.django_db(transaction=True)
class TestTheReferencedSide:
    """Committed transactions, so PostgreSQL's deferred checks run at a real COMMIT."""

    @pytest.mark.parametrize("table", ["workspaces_worker", "sources_source"])
    def test_deleting_a_referenced_parent_leaves_no_orphan(self, workspace, source, worker, table):
        """PostgreSQL refuses at COMMIT, as the foreign keys did; SQLite, which has no deferred
        triggers, deletes the rows with their parent. Either way no row outlives its parent."""
        timeline(workspace, source, worker).save()
        source.keys.all().delete()  # the timeline's rows are then its only references
        pk = worker.pk if table == "workspaces_worker" else source.pk
        if connection.vendor == "postgresql":
            with pytest.raises(IntegrityError), transaction.atomic():
                delete_raw(table, pk)
            assert TimelineEvent.objects.filter(worker=worker, source=source).count() == 1
            assert Worker.objects.filter(pk=worker.pk).exists()
        else:
            delete_raw(table, pk)
            assert TimelineEvent.objects.count() == 0
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM ingest_timelineevent t WHERE NOT EXISTS "
                "(SELECT 1 FROM workspaces_worker k WHERE k.id = t.worker_id) OR NOT EXISTS "
                "(SELECT 1 FROM sources_source s WHERE s.id = t.source_id)"
            )
            assert cursor.fetchone() == (0,)

    def test_moving_a_referenced_worker_to_another_workspace_fails(
        self, workspace, other_workspace, source, worker
    ):
        timeline(workspace, source, worker).save()
        with pytest.raises(IntegrityError), transaction.atomic():
            Worker.objects.filter(pk=worker.pk).update(workspace=other_workspace)
        worker.refresh_from_db()
        assert worker.workspace_id == workspace.pk

    def test_an_unreferenced_worker_can_be_renamed_moved_and_deleted(
        self, workspace, other_workspace, source, worker
    ):
        idle = Worker.objects.create(workspace=workspace, display_name="Idle")
        timeline(workspace, source, worker).save()
        Worker.objects.filter(pk=worker.pk).update(display_name="Ada L.")  # not a key column
        Worker.objects.filter(pk=idle.pk).update(workspace=other_workspace)
        delete_raw("workspaces_worker", idle.pk)
        assert not Worker.objects.filter(pk=idle.pk).exists()

    def test_django_s_cascade_deletes_through_every_parent(
        self, workspace, other_workspace, source, worker, foreign
    ):
        timeline(workspace, source, worker).save()
        timeline(other_workspace, *foreign).save()
        worker.delete()
        assert not TimelineEvent.objects.filter(workspace=workspace).exists()
        timeline(workspace, source, Worker.objects.create(workspace=workspace, display_name="B")
                 ).save()
        source.delete()
        assert not TimelineEvent.objects.filter(workspace=workspace).exists()
        timeline(other_workspace, *foreign).save()
        other_workspace.delete()
        assert TimelineEvent.objects.count() == 0


# -- PostgreSQL: the row locks a foreign key's check takes ------------------------------------

def _connect() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params)


INSERT_SQL = (
    "INSERT INTO ingest_timelineevent (public_id, workspace_id, source_id, worker_id, "
    "event_type, category, timestamp, request_id, received_at) "
    "VALUES (%s, %s, %s, %s, 'call.logged', 'success', now(), 'req_lock', now())"
)


DELETE_WORKER_SQL = "DELETE FROM workspaces_worker WHERE id = %s"


def _waits_for(conn: psycopg.Connection, sql: str, params: list, then) -> psycopg.Error | None:
    """Run `sql` and COMMIT on `conn` in a thread, which must wait on another transaction's
    lock until `then()` ends that transaction; what it ended with (None: committed)."""
    outcome: list[psycopg.Error | None] = []

    def run() -> None:
        try:
            conn.execute(sql, params)
            conn.commit()
            outcome.append(None)
        except psycopg.Error as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive(), "the statement must wait on the other transaction's lock"
    then()
    thread.join(5)
    return outcome[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestConcurrentDeletes:
    def test_a_write_locks_the_worker_until_it_commits(self, workspace, source, worker):
        with _connect() as writer, _connect() as deleter:
            writer.execute(INSERT_SQL, ["tle_lock1", workspace.pk, source.pk, worker.pk])
            deleter.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                deleter.execute(DELETE_WORKER_SQL, [worker.pk])
            deleter.rollback()
            writer.commit()
        assert TimelineEvent.objects.filter(public_id="tle_lock1", worker=worker).exists()

    def test_a_delete_that_waited_for_a_write_fails_at_commit(self, workspace, source, worker):
        """The cascade saw no rows, then waited on the writer's lock; its COMMIT sees them."""
        with _connect() as writer, _connect() as deleter:
            writer.execute(INSERT_SQL, ["tle_lock2", workspace.pk, source.pk, worker.pk])
            deleter.execute("DELETE FROM ingest_timelineevent WHERE worker_id = %s", [worker.pk])
            outcome = _waits_for(deleter, DELETE_WORKER_SQL, [worker.pk], then=writer.commit)
        assert isinstance(outcome, psycopg.errors.ForeignKeyViolation)
        assert Worker.objects.filter(pk=worker.pk).exists()
        assert TimelineEvent.objects.filter(public_id="tle_lock2").exists()

    def test_a_write_that_waited_for_a_delete_fails(self, workspace, source, worker):
        with _connect() as writer, _connect() as deleter:
            deleter.execute(DELETE_WORKER_SQL, [worker.pk])
            outcome = _waits_for(writer, INSERT_SQL,
                                 ["tle_lock3", workspace.pk, source.pk, worker.pk],
                                 then=deleter.commit)
        assert isinstance(outcome, psycopg.errors.ForeignKeyViolation)
        assert not Worker.objects.filter(pk=worker.pk).exists()
        assert not TimelineEvent.objects.filter(public_id="tle_lock3").exists()

    def test_a_write_after_a_rolled_back_delete_is_stored(self, workspace, source, worker):
        with _connect() as writer, _connect() as deleter:
            deleter.execute(DELETE_WORKER_SQL, [worker.pk])
            outcome = _waits_for(writer, INSERT_SQL,
                                 ["tle_lock4", workspace.pk, source.pk, worker.pk],
                                 then=deleter.rollback)
        assert outcome is None
        assert TimelineEvent.objects.filter(public_id="tle_lock4", worker=worker).exists()


MOVE_SQL = {
    "worker": "UPDATE workspaces_worker SET workspace_id = %s WHERE id = %s",
    "source": "UPDATE sources_source SET workspace_id = %s WHERE id = %s",
}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("parent", ["worker", "source"])
class TestConcurrentMoves:
    """A move to another workspace conflicts with the writer's FOR KEY SHARE lock only because
    workspace_id is a key column (worker_workspace_key, source_unique_slug)."""

    def moved(self, parent, source, worker):
        return worker.pk if parent == "worker" else source.pk

    def test_a_move_that_waited_for_a_write_fails_at_commit(
        self, parent, workspace, other_workspace, source, worker
    ):
        with _connect() as writer, _connect() as mover:
            writer.execute(INSERT_SQL, ["tle_move1", workspace.pk, source.pk, worker.pk])
            outcome = _waits_for(mover, MOVE_SQL[parent],
                                 [other_workspace.pk, self.moved(parent, source, worker)],
                                 then=writer.commit)
        assert isinstance(outcome, psycopg.errors.ForeignKeyViolation)
        assert TimelineEvent.objects.filter(
            public_id="tle_move1", worker__workspace=workspace, source__workspace=workspace
        ).exists()

    def test_a_write_that_waited_for_a_move_fails(
        self, parent, workspace, other_workspace, source, worker
    ):
        with _connect() as writer, _connect() as mover:
            mover.execute(MOVE_SQL[parent], [other_workspace.pk, self.moved(parent, source, worker)])
            outcome = _waits_for(writer, INSERT_SQL,
                                 ["tle_move2", workspace.pk, source.pk, worker.pk],
                                 then=mover.commit)
        assert isinstance(outcome, psycopg.errors.ForeignKeyViolation)
        assert not TimelineEvent.objects.filter(public_id="tle_move2").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("table", ["workspaces_worker", "sources_source"])
def test_truncating_a_referenced_table_fails(workspace, source, worker, table):
    timeline(workspace, source, worker).save()
    with (pytest.raises(IntegrityError, match="still references it"), transaction.atomic(),
          connection.cursor() as cursor):
        cursor.execute(f"TRUNCATE {table} CASCADE")
    assert TimelineEvent.objects.filter(worker=worker, source=source).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_checks_name_their_tables_whatever_the_search_path(workspace, source, worker):
    """A temporary table of the same name cannot stand in for the workers, and an empty
    search_path (as pg_dump sets) still finds them."""
    schema = connection.ops.quote_name(_schema())
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE workspaces_worker (id bigint, workspace_id bigint)")
        cursor.execute("INSERT INTO workspaces_worker VALUES (987654321, %s)", [workspace.pk])
        try:
            row = timeline(workspace, source, worker)
            row.worker_id = 987654321
            assert_refused(row.save)
        finally:
            cursor.execute("DROP TABLE pg_temp.workspaces_worker")
        cursor.execute("SELECT set_config('search_path', '', true)")
        cursor.execute(
            f"INSERT INTO {schema}.ingest_timelineevent "
            "(public_id, workspace_id, source_id, worker_id, event_type, category, timestamp, "
            "request_id, received_at) VALUES ('tle_path', %s, %s, %s, 'call.logged', 'success', "
            "now(), 'req_path', now())",
            [workspace.pk, source.pk, worker.pk],
        )
        cursor.execute("RESET search_path")
    assert TimelineEvent.objects.filter(public_id="tle_path").exists()


def _schema() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_checks_are_statement_triggers_not_foreign_keys():
    """What makes a 500-row batch cheap: no per-row RI trigger on the timeline table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint "
            "WHERE conrelid = 'ingest_timelineevent'::regclass AND contype = 'f'"
        )
        assert cursor.fetchone() == (0,)
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'ingest_timelineevent'::regclass "
            "AND NOT tgisinternal AND tgtype & 1 = 0 ORDER BY tgname"  # bit 0 clear: statement
        )
        assert [name for (name,) in cursor.fetchall()] == [
            # stats.0001's event counters, then this migration's checks.
            "stats_count_deleted", "stats_count_inserted",
            "timeline_refs_insert", "timeline_refs_update",
        ]



@pytest.mark.django_db(transaction=True)
def test_the_migration_refuses_stored_rows_outside_their_workspace(workspace, source, foreign):
    """The old keys only checked that the ids existed: 0003 holds the stored rows to the new
    check before it installs it, as VALIDATE CONSTRAINT would."""
    from django.db.migrations.executor import MigrationExecutor

    before, checks = [("ingest", "0002_fewer_indexes")], [("ingest", "0003_timeline_statement_checks")]

    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(target)

    migrate(before)
    try:
        # Allowed by the foreign keys: both ids exist, but the worker is another workspace's.
        with connection.cursor() as cursor:
            cursor.execute(
                INSERT_SQL.replace("now()", "CURRENT_TIMESTAMP"),
                ["tle_stray", workspace.pk, source.pk, foreign[1].pk],
            )
        with pytest.raises(RuntimeError, match="1 timeline rows name a source or worker"):
            migrate(checks)
        assert TimelineEvent.objects.filter(public_id="tle_stray").exists()
        TimelineEvent.objects.filter(public_id="tle_stray").delete()
        migrate(checks)
    finally:
        TimelineEvent.objects.filter(public_id="tle_stray").delete()
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert_refused(lambda: timeline(workspace, source, foreign[1]).save())  # installed again


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_a_later_migration_rebuilds_these_tables_with_the_documented_recipe(
    workspace, source, worker, foreign
):
    """Django rebuilds a SQLite table to alter it; with the checks naming the table, that fails
    unless the migration drops them first and creates them again after (0003's docstring)."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's table rebuild; PostgreSQL alters in place")
    from django.db import OperationalError, models

    checks = importlib.import_module("ingest.migrations.0003_timeline_statement_checks")
    old = Worker._meta.get_field("display_name")
    new = models.CharField(max_length=old.max_length + 1)
    new.set_attributes_from_name("display_name")

    with pytest.raises(OperationalError, match="error in trigger"), connection.schema_editor() as editor:
        editor.alter_field(Worker, old, new)

    def rebuild(before, after) -> None:
        with connection.schema_editor() as editor:
            checks.drop_sqlite_checks(None, editor)
            editor.alter_field(Worker, before, after)
            checks.create_sqlite_checks(None, editor)

    rebuild(old, new)
    try:
        assert_refused(lambda: timeline(workspace, source, foreign[1]).save())
        timeline(workspace, source, worker).save()
    finally:
        rebuild(new, old)
    assert_refused(lambda: timeline(workspace, source, foreign[1]).save())
