"""Check a timeline row's references once per statement instead of once per row.

A v1 batch writes 500 timeline rows in one statement. PostgreSQL checks a foreign key with one
look-up per row and key, so the three keys (workspace, source, worker) were ~10 µs of the
~20 µs each row cost (COPY of 200,000 rows: 3.2 s with them, 1.3 s without; docs/performance.md).
The keys are replaced by triggers that check the same references, and one more, with one
look-up per distinct value of the statement:

* written (INSERT, UPDATE): each row's source and worker exist and belong to the row's
  workspace. The checked rows are locked FOR KEY SHARE until COMMIT, as a foreign key's check
  locks them, so a concurrent delete waits and then fails, or finishes first and the write
  fails. The workspace's own existence follows: a source references its workspace by a
  foreign key. On PostgreSQL it is an AFTER ... FOR EACH STATEMENT trigger reading the
  statement's rows as a transition table.
* the other side (DELETE of a source or worker, or a change of its id or workspace): fails
  while timeline rows still reference it. On PostgreSQL a constraint trigger, deferred to
  COMMIT like Django's foreign keys, so Django's cascade may delete in any order within its
  transaction; it runs its query at COMMIT, when a READ COMMITTED transaction sees every row
  committed by the writers it waited for.

SQLite (the development default) gets the written-side checks as row triggers. It has no
deferred triggers, and Django's flush deletes tables in any order, so there deleting a source
or worker deletes its timeline rows (what Django's on_delete=CASCADE does anyway): no orphan
either way. A change of a referenced parent's id or workspace fails, as on PostgreSQL. A table that
Django's SQLite schema editor rebuilds loses its triggers: a later migration that alters
these tables must create them again (tests/ingest/test_timeline_references.py fails if not).
"""

from django.db import migrations, models

# -- PostgreSQL ------------------------------------------------------------------------------
# One look-up per distinct (workspace, parent) of the statement's rows (`written`), each found
# parent locked FOR KEY SHARE until COMMIT, as a foreign key's check locks it.
_PG_PARENT_CHECK = """
      IF EXISTS (
        SELECT FROM (SELECT DISTINCT workspace_id, {column} FROM written) AS w
        WHERE NOT EXISTS (
          SELECT FROM {table} AS p
          WHERE p.id = w.{column} AND p.workspace_id = w.workspace_id
          FOR KEY SHARE
        )
      ) THEN
        RAISE foreign_key_violation USING
          MESSAGE = 'ingest_timelineevent: a {noun} that is not in the row''s workspace';
      END IF;"""
PARENTS = (("source_id", "sources_source", "source"), ("worker_id", "workspaces_worker", "worker"))

PG_FORWARD = [
    """
    CREATE FUNCTION ackly_timeline_refs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN"""
    + "".join(
        _PG_PARENT_CHECK.format(column=column, table=table, noun=noun)
        for column, table, noun in PARENTS
    )
    + """
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER timeline_refs_insert AFTER INSERT ON ingest_timelineevent
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ackly_timeline_refs()
    """,
    """
    CREATE TRIGGER timeline_refs_update AFTER UPDATE ON ingest_timelineevent
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ackly_timeline_refs()
    """,
    """
    CREATE FUNCTION ackly_timeline_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.workspace_id = OLD.workspace_id THEN
        RETURN NULL;
      END IF;
      IF (TG_TABLE_NAME = 'sources_source'
            AND EXISTS (SELECT FROM ingest_timelineevent WHERE source_id = OLD.id))
         OR (TG_TABLE_NAME = 'workspaces_worker'
            AND EXISTS (SELECT FROM ingest_timelineevent WHERE worker_id = OLD.id)) THEN
        RAISE foreign_key_violation USING
          MESSAGE = format('%s %s is still referenced from ingest_timelineevent',
                           TG_TABLE_NAME, OLD.id);
      END IF;
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE CONSTRAINT TRIGGER timeline_source_referenced
    AFTER DELETE OR UPDATE OF id, workspace_id ON sources_source
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ackly_timeline_referenced()
    """,
    """
    CREATE CONSTRAINT TRIGGER timeline_worker_referenced
    AFTER DELETE OR UPDATE OF id, workspace_id ON workspaces_worker
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ackly_timeline_referenced()
    """,
]
PG_BACKWARD = [
    "DROP TRIGGER IF EXISTS timeline_worker_referenced ON workspaces_worker",
    "DROP TRIGGER IF EXISTS timeline_source_referenced ON sources_source",
    "DROP FUNCTION IF EXISTS ackly_timeline_referenced()",
    "DROP TRIGGER IF EXISTS timeline_refs_update ON ingest_timelineevent",
    "DROP TRIGGER IF EXISTS timeline_refs_insert ON ingest_timelineevent",
    "DROP FUNCTION IF EXISTS ackly_timeline_refs()",
]

# -- SQLite ----------------------------------------------------------------------------------
_SQLITE_ROW_MISSES = """
    NOT EXISTS (SELECT 1 FROM sources_source
                WHERE id = NEW.source_id AND workspace_id = NEW.workspace_id)
    OR NOT EXISTS (SELECT 1 FROM workspaces_worker
                   WHERE id = NEW.worker_id AND workspace_id = NEW.workspace_id)
"""
_SQLITE_FAIL = "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END"
SQLITE_FORWARD = [
    f"CREATE TRIGGER timeline_refs_insert BEFORE INSERT ON ingest_timelineevent "
    f"WHEN {_SQLITE_ROW_MISSES} {_SQLITE_FAIL}",
    f"CREATE TRIGGER timeline_refs_update "
    f"BEFORE UPDATE OF workspace_id, source_id, worker_id ON ingest_timelineevent "
    f"WHEN {_SQLITE_ROW_MISSES} {_SQLITE_FAIL}",
] + [
    statement
    for column, table, _ in PARENTS
    for statement in (
        # SQLite has no deferred triggers, and Django's flush deletes tables in any order:
        # the rows go with their parent, as Django's own cascade (on_delete) would take them.
        f"CREATE TRIGGER timeline_{column}_delete AFTER DELETE ON {table} "
        f"BEGIN DELETE FROM ingest_timelineevent WHERE {column} = OLD.id; END",
        f"CREATE TRIGGER timeline_{column}_update BEFORE UPDATE OF id, workspace_id ON {table} "
        f"WHEN (NEW.id <> OLD.id OR NEW.workspace_id <> OLD.workspace_id) "
        f"AND EXISTS (SELECT 1 FROM ingest_timelineevent WHERE {column} = OLD.id) "
        f"{_SQLITE_FAIL}",
    )
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "timeline_refs_insert", "timeline_refs_update",
        "timeline_source_id_delete", "timeline_source_id_update",
        "timeline_worker_id_delete", "timeline_worker_id_update",
    )
]

STATEMENTS = {
    "postgresql": (PG_FORWARD, PG_BACKWARD),
    "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD),
}


# The rows already stored are held to the new check too, as VALIDATE CONSTRAINT would: the old
# keys guaranteed that the ids exist, not that they belong to the row's workspace.
_ROWS_OUTSIDE_THEIR_WORKSPACE = """
    SELECT count(*) FROM ingest_timelineevent AS t
    WHERE NOT EXISTS (SELECT 1 FROM sources_source AS s
                      WHERE s.id = t.source_id AND s.workspace_id = t.workspace_id)
       OR NOT EXISTS (SELECT 1 FROM workspaces_worker AS k
                      WHERE k.id = t.worker_id AND k.workspace_id = t.workspace_id)
"""


def _run(direction: int):
    def run(apps, schema_editor):
        statements = STATEMENTS.get(schema_editor.connection.vendor)
        if statements is None:
            raise NotImplementedError(
                f"ingest.0003: no reference checks for {schema_editor.connection.vendor}"
            )
        if direction == 0:
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(_ROWS_OUTSIDE_THEIR_WORKSPACE)
                (stray,) = cursor.fetchone()
            if stray:
                raise RuntimeError(
                    f"ingest.0003: {stray} timeline rows name a source or worker of another "
                    "workspace; correct them before migrating (the query is in this migration)"
                )
        for statement in statements[direction]:
            schema_editor.execute(statement, params=None)  # no placeholders: % is literal

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("ingest", "0002_fewer_indexes"),
        ("sources", "0001_initial"),
        ("workspaces", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="timelineevent",
            name="workspace",
            field=models.ForeignKey(
                db_constraint=False, db_index=False, on_delete=models.deletion.CASCADE,
                related_name="+", to="workspaces.workspace",
            ),
        ),
        migrations.AlterField(
            model_name="timelineevent",
            name="source",
            field=models.ForeignKey(
                db_constraint=False, on_delete=models.deletion.CASCADE,
                related_name="timeline", to="sources.source",
            ),
        ),
        migrations.AlterField(
            model_name="timelineevent",
            name="worker",
            field=models.ForeignKey(
                db_constraint=False, db_index=False, on_delete=models.deletion.CASCADE,
                related_name="timeline", to="workspaces.worker",
            ),
        ),
        migrations.RunPython(_run(0), _run(1)),
    ]
