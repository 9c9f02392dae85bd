"""Check a timeline row's references once per statement instead of once per row.

A v1 batch writes 500 timeline rows in one statement. PostgreSQL checks a foreign key with one
look-up per row and key, so the three keys (workspace, source, worker) were ~10 µs of the
~20 µs each row cost (COPY of 200,000 rows: 3.2 s with them, 1.5 s with these triggers;
docs/performance.md). The keys are replaced by triggers that check the same references, and
one more, with one look-up per distinct value of the statement (docs/decisions.md):

* written (INSERT, UPDATE, COPY): each row's source and worker exist and belong to the row's
  workspace. They are locked FOR KEY SHARE until COMMIT, as a foreign key's check locks them,
  so a concurrent delete, or move to another workspace, waits and then fails, or finishes
  first and the write fails. (A move conflicts with that lock only because workspace_id is a
  key column: source_unique_slug and worker_workspace_key.) The workspace's own existence
  follows: a source references its workspace by a foreign key. On PostgreSQL an AFTER ... FOR
  EACH STATEMENT trigger reading the statement's rows as a transition table.
* the other side (DELETE of a source or worker, or a change of its id or workspace): fails
  while timeline rows still reference it. On PostgreSQL a constraint trigger deferred to
  COMMIT like Django's foreign keys, so Django's cascade may delete in any order within its
  transaction; at COMMIT a READ COMMITTED transaction sees every row committed by the writers
  it waited for. A TRUNCATE of either table that leaves timeline rows fails (as TRUNCATE of a
  referenced table does); Django's flush truncates them all in one statement.

Every table is named with the schema the migration runs in, so a session's search_path (a
temporary table of the same name, or an empty path as pg_dump sets) cannot redirect a check.

SQLite (the development default) gets the written-side checks as row triggers. It has no
deferred triggers, and Django's flush deletes tables in any order, so there deleting a source
or worker deletes its timeline rows (what Django's on_delete=CASCADE does anyway): no orphan
either way. A change of a referenced parent's id or workspace fails, as on PostgreSQL.

Later migrations: on SQLite, Django rebuilds a table to alter it, and the rebuild of any of
the three tables fails while these triggers name it ("error in trigger ...: no such table").
Such a migration runs `RunPython(drop_sqlite_checks, create_sqlite_checks)` first and
`RunPython(create_sqlite_checks, drop_sqlite_checks)` last (import them from this module with
importlib); tests/ingest/test_timeline_references.py shows it working.
"""

from django.db import migrations, models

PARENTS = (("source_id", "sources_source", "source"), ("worker_id", "workspaces_worker", "worker"))

# -- PostgreSQL ------------------------------------------------------------------------------
# One look-up per distinct (workspace, parent) of the statement's rows (`written`), each found
# parent locked FOR KEY SHARE until COMMIT, as a foreign key's check locks it.
_PG_PARENT_CHECK = """
      IF EXISTS (
        SELECT FROM (SELECT DISTINCT workspace_id, {column} FROM written) AS w
        WHERE NOT EXISTS (
          SELECT FROM {s}.{table} AS p
          WHERE p.id = w.{column} AND p.workspace_id = w.workspace_id
          FOR KEY SHARE
        )
      ) THEN
        RAISE foreign_key_violation USING
          MESSAGE = 'ingest_timelineevent: a {noun} that is not in the row''s workspace';
      END IF;"""


def _pg_forward(s: str) -> list[str]:
    """The statements, every table named in schema `s` (quoted)."""
    checks = "".join(
        _PG_PARENT_CHECK.format(s=s, column=column, table=table, noun=noun)
        for column, table, noun in PARENTS
    )
    referenced = f"""
    CREATE FUNCTION {s}.ackly_timeline_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.workspace_id = OLD.workspace_id THEN
        RETURN NULL;
      END IF;
      IF (TG_TABLE_NAME = 'sources_source'
            AND EXISTS (SELECT FROM {s}.ingest_timelineevent WHERE source_id = OLD.id))
         OR (TG_TABLE_NAME = 'workspaces_worker'
            AND EXISTS (SELECT FROM {s}.ingest_timelineevent WHERE worker_id = OLD.id)) THEN
        RAISE foreign_key_violation USING
          MESSAGE = format('%s %s is still referenced from ingest_timelineevent',
                           TG_TABLE_NAME, OLD.id);
      END IF;
      RETURN NULL;
    END
    $$
    """
    truncated = f"""
    CREATE FUNCTION {s}.ackly_timeline_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT FROM {s}.ingest_timelineevent) THEN
        RAISE foreign_key_violation USING
          MESSAGE = format('%s truncated while ingest_timelineevent still references it',
                           TG_TABLE_NAME);
      END IF;
      RETURN NULL;
    END
    $$
    """
    statements = [
        f"""
    CREATE FUNCTION {s}.ackly_timeline_refs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN{checks}
      RETURN NULL;
    END
    $$
    """,
        referenced,
        truncated,
    ]
    for event in ("INSERT", "UPDATE"):  # a transition table serves one event only
        statements.append(
            f"CREATE TRIGGER timeline_refs_{event.lower()} AFTER {event} "
            f"ON {s}.ingest_timelineevent REFERENCING NEW TABLE AS written "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.ackly_timeline_refs()"
        )
    for _, table, noun in PARENTS:
        statements += [
            f"CREATE CONSTRAINT TRIGGER timeline_{noun}_referenced "
            f"AFTER DELETE OR UPDATE OF id, workspace_id ON {s}.{table} "
            f"DEFERRABLE INITIALLY DEFERRED "
            f"FOR EACH ROW EXECUTE FUNCTION {s}.ackly_timeline_referenced()",
            f"CREATE TRIGGER timeline_{noun}_truncated AFTER TRUNCATE ON {s}.{table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.ackly_timeline_truncated()",
        ]
    return statements


def _pg_backward(s: str) -> list[str]:
    statements = []
    for _, table, noun in PARENTS:
        statements += [
            f"DROP TRIGGER IF EXISTS timeline_{noun}_truncated ON {s}.{table}",
            f"DROP TRIGGER IF EXISTS timeline_{noun}_referenced ON {s}.{table}",
        ]
    statements += [
        f"DROP TRIGGER IF EXISTS timeline_refs_update ON {s}.ingest_timelineevent",
        f"DROP TRIGGER IF EXISTS timeline_refs_insert ON {s}.ingest_timelineevent",
    ]
    statements += [
        f"DROP FUNCTION IF EXISTS {s}.{name}()"
        for name in ("ackly_timeline_truncated", "ackly_timeline_referenced", "ackly_timeline_refs")
    ]
    return statements


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
        *(f"timeline_{column}_{op}" for column, _, _ in PARENTS for op in ("delete", "update")),
    )
]


def create_sqlite_checks(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def drop_sqlite_checks(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement)


# -- Both ------------------------------------------------------------------------------------
# The rows already stored are held to the new check, as VALIDATE CONSTRAINT would: the old keys
# guaranteed that the ids exist, not that they belong to the row's workspace. It runs first,
# before dropping the keys locks the four tables.
_ROWS_OUTSIDE_THEIR_WORKSPACE = """
    SELECT count(*) FROM ingest_timelineevent AS t
    WHERE NOT EXISTS (SELECT 1 FROM sources_source AS s
                      WHERE s.id = t.source_id AND s.workspace_id = t.workspace_id)
       OR NOT EXISTS (SELECT 1 FROM workspaces_worker AS k
                      WHERE k.id = t.worker_id AND k.workspace_id = t.workspace_id)
"""


def refuse_stray_rows(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_ROWS_OUTSIDE_THEIR_WORKSPACE)
        (stray,) = cursor.fetchone()
    if stray:
        raise RuntimeError(
            f"ingest.0003: {stray} timeline rows name a source or worker of another "
            "workspace; correct them before migrating (the query is in this migration)"
        )


def _statements(schema_editor, direction: int) -> list[str]:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        return (SQLITE_FORWARD, SQLITE_BACKWARD)[direction]
    if vendor != "postgresql":
        raise NotImplementedError(f"ingest.0003: no reference checks for {vendor}")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    return (_pg_forward, _pg_backward)[direction](schema_editor.quote_name(schema))


def _run(direction: int):
    def run(apps, schema_editor):
        for statement in _statements(schema_editor, direction):
            schema_editor.execute(statement, params=None)  # no placeholders: % is literal

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("ingest", "0002_fewer_indexes"),
        ("sources", "0001_initial"),
        # Its unique (workspace, id) makes a worker's move wait for a writer's lock; on
        # SQLite it also rebuilds the workers table, which must happen before the triggers.
        ("workspaces", "0002_worker_workspace_key"),
    ]

    operations = [
        migrations.RunPython(refuse_stray_rows, migrations.RunPython.noop),
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
