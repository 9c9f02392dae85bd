"""Event counters per (workspace, source, quarter hour, kind), kept by the database.

Triggers on ingest_event and ingest_timelineevent add each stored row to its counter and take
each deleted row off it, so every writer is counted without knowing of it (the Django
pipeline, the fast lane's COPY, bulk_create, the demo's history) and so is every delete (the
retention purge, a cascade). The rows are immutable: an UPDATE that would move a row to
another counter (workspace, source, status, received_at) fails. docs/decisions.md.

* PostgreSQL: statement triggers reading the statement's rows as transition tables, one
  `INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE` per insert statement (a 500-row COPY
  touches one counter row), one grouped UPDATE per delete statement; a counter that reaches
  0 is deleted. The upsert takes its counter rows in key order (ORDER BY), so two statements
  never wait on each other's counters in opposite orders.
* SQLite: the same per row (UPSERT needs SQLite >= 3.24).

A delete only decrements counters that exist: Django's cascade may delete a workspace's or
source's counters before or after its events, and neither order leaves a stray row.

The quarter hour is the one stats.models.bucket_of computes: on PostgreSQL date_bin over
UTC; on SQLite from the text Django stores (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC), the minute
rounded down to 0, 15, 30 or 45 and the seconds dropped.

Later migrations: on SQLite, Django rebuilds a table to alter it and the rebuild drops the
table's triggers; a migration altering ingest_event or ingest_timelineevent must run
`RunPython(create_sqlite_counters, drop_sqlite_counters)` from this module after it (and
`drop_sqlite_counters` before altering stats_eventcount), as ingest.0003 describes for its own.
"""

import django.db.models.deletion
from django.db import migrations, models

# (table, kind expression, the columns an UPDATE must not change)
COUNTED = (
    ("ingest_event", "status", "workspace_id, source_id, status, received_at"),
    ("ingest_timelineevent", "'timeline'", "workspace_id, source_id, received_at"),
)
KEY = "workspace_id, source_id, bucket, kind"

# -- PostgreSQL ------------------------------------------------------------------------------
_PG_BUCKET = "date_bin('15 minutes', received_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')"


def _pg_forward(s: str) -> list[str]:
    statements = [
        f"""
    CREATE FUNCTION {s}.ackly_immutable_counted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE integrity_constraint_violation USING
        MESSAGE = format('%s rows are immutable: stats_eventcount counts them', TG_TABLE_NAME);
    END
    $$
    """
    ]
    for table, kind, columns in COUNTED:
        grouped = (
            f"SELECT workspace_id, source_id, {_PG_BUCKET} AS bucket, {kind} AS kind, "
            f"count(*) AS n FROM {{rows}} GROUP BY 1, 2, 3, 4"
        )
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns.split(", "))
        statements += [
            f"""
    CREATE FUNCTION {s}.ackly_count_{table}_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO {s}.stats_eventcount AS c ({KEY}, count)
      {grouped.format(rows="new_rows")} ORDER BY 1, 2, 3, 4
      ON CONFLICT ({KEY}) DO UPDATE SET count = c.count + EXCLUDED.count;
      RETURN NULL;
    END
    $$
    """,
            f"""
    CREATE FUNCTION {s}.ackly_count_{table}_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      emptied bigint[];
    BEGIN
      WITH gone AS ({grouped.format(rows="old_rows")}),
      changed AS (
        UPDATE {s}.stats_eventcount AS c SET count = c.count - gone.n FROM gone
        WHERE (c.workspace_id, c.source_id, c.bucket, c.kind)
              = (gone.workspace_id, gone.source_id, gone.bucket, gone.kind)
        RETURNING c.id, c.count
      )
      SELECT array_agg(id) INTO emptied FROM changed WHERE count = 0;
      IF emptied IS NOT NULL THEN
        DELETE FROM {s}.stats_eventcount WHERE id = ANY (emptied) AND count = 0;
      END IF;
      RETURN NULL;
    END
    $$
    """,
            f"CREATE TRIGGER stats_count_inserted AFTER INSERT ON {s}.{table} "
            f"REFERENCING NEW TABLE AS new_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.ackly_count_{table}_inserted()",
            f"CREATE TRIGGER stats_count_deleted AFTER DELETE ON {s}.{table} "
            f"REFERENCING OLD TABLE AS old_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.ackly_count_{table}_deleted()",
            f"CREATE TRIGGER stats_count_immutable BEFORE UPDATE OF {columns} ON {s}.{table} "
            f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION {s}.ackly_immutable_counted()",
        ]
    return statements


def _pg_backward(s: str) -> list[str]:
    statements = []
    for table, _, _ in COUNTED:
        statements += [
            f"DROP TRIGGER IF EXISTS stats_count_{name} ON {s}.{table}"
            for name in ("inserted", "deleted", "immutable")
        ]
        statements += [
            f"DROP FUNCTION IF EXISTS {s}.ackly_count_{table}_{name}()"
            for name in ("inserted", "deleted")
        ]
    statements.append(f"DROP FUNCTION IF EXISTS {s}.ackly_immutable_counted()")
    return statements


def _pg_backfill(s: str) -> list[str]:
    return [
        f"INSERT INTO {s}.stats_eventcount ({KEY}, count) "
        f"SELECT workspace_id, source_id, {_PG_BUCKET}, {kind}, count(*) "
        f"FROM {s}.{table} GROUP BY 1, 2, 3, 4"
        for table, kind, _ in COUNTED
    ]


# -- SQLite ----------------------------------------------------------------------------------
def _sqlite_bucket(column: str) -> str:
    return (
        f"substr({column}, 1, 14) "
        f"|| printf('%02d', CAST(substr({column}, 15, 2) AS INTEGER) / 15 * 15) || ':00'"
    )


def _sqlite_forward() -> list[str]:
    statements = []
    for table, kind, columns in COUNTED:
        row_kind = "NEW.status" if kind == "status" else kind
        old_kind = "OLD.status" if kind == "status" else kind
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns.split(", "))
        statements += [
            f"CREATE TRIGGER stats_{table}_inserted AFTER INSERT ON {table} BEGIN "
            f"INSERT INTO stats_eventcount ({KEY}, count) VALUES (NEW.workspace_id, "
            f"NEW.source_id, {_sqlite_bucket('NEW.received_at')}, {row_kind}, 1) "
            f'ON CONFLICT ({KEY}) DO UPDATE SET "count" = "count" + 1; END',
            f"CREATE TRIGGER stats_{table}_deleted AFTER DELETE ON {table} BEGIN "
            f'UPDATE stats_eventcount SET "count" = "count" - 1 '
            f"WHERE workspace_id = OLD.workspace_id AND source_id = OLD.source_id "
            f"AND bucket = {_sqlite_bucket('OLD.received_at')} AND kind = {old_kind}; "
            f'DELETE FROM stats_eventcount WHERE "count" = 0 '
            f"AND workspace_id = OLD.workspace_id AND source_id = OLD.source_id "
            f"AND bucket = {_sqlite_bucket('OLD.received_at')} AND kind = {old_kind}; END",
            f"CREATE TRIGGER stats_{table}_immutable BEFORE UPDATE OF {columns} ON {table} "
            f"WHEN {changed} BEGIN "
            f"SELECT RAISE(ABORT, '{table} rows are immutable: stats_eventcount counts them'); END",
        ]
    return statements


def _sqlite_backward() -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS stats_{table}_{name}"
        for table, _, _ in COUNTED
        for name in ("inserted", "deleted", "immutable")
    ]


def _sqlite_backfill() -> list[str]:
    return [
        f"INSERT INTO stats_eventcount ({KEY}, count) "
        f"SELECT workspace_id, source_id, {_sqlite_bucket('received_at')}, {kind}, count(*) "
        f"FROM {table} GROUP BY 1, 2, 3, 4"
        for table, kind, _ in COUNTED
    ]


def create_sqlite_counters(apps, schema_editor) -> None:
    """(Re)create the SQLite triggers: those a table rebuild left in place are replaced."""
    if schema_editor.connection.vendor == "sqlite":
        for statement in _sqlite_backward() + _sqlite_forward():
            schema_editor.execute(statement, params=None)


def drop_sqlite_counters(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        for statement in _sqlite_backward():
            schema_editor.execute(statement, params=None)


# -- Both ------------------------------------------------------------------------------------
def _statements(schema_editor, direction: int) -> list[str]:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        return _sqlite_backfill() + _sqlite_forward() if direction == 0 else _sqlite_backward()
    if vendor != "postgresql":
        raise NotImplementedError(f"stats.0001: no event counters for {vendor}")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    s = schema_editor.quote_name(schema)
    if direction == 1:
        return _pg_backward(s)
    # The tables are locked first so that no row is stored between the backfill and the
    # triggers' creation (it would be counted by neither).
    lock = f"LOCK TABLE {s}.ingest_event, {s}.ingest_timelineevent IN SHARE ROW EXCLUSIVE MODE"
    return [lock, *_pg_backfill(s), *_pg_forward(s)]


def _run(direction: int):
    def run(apps, schema_editor):
        for statement in _statements(schema_editor, direction):
            schema_editor.execute(statement, params=None)  # no placeholders: % is literal

    return run


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("ingest", "0004_rejected_requests"),
        ("sources", "0002_key_scope"),
        ("workspaces", "0004_invitation"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("bucket", models.DateTimeField(help_text="Start of the quarter hour, UTC.")),
                ("kind", models.CharField(choices=[("success", "Success"), ("partial", "Partial"),
                                                   ("failure", "Failure"),
                                                   ("timeline", "Timeline")], max_length=10)),
                ("count", models.BigIntegerField(default=0)),
                ("source", models.ForeignKey(db_constraint=False, db_index=False,
                                             on_delete=django.db.models.deletion.CASCADE,
                                             related_name="+", to="sources.source")),
                ("workspace", models.ForeignKey(db_constraint=False, db_index=False,
                                                on_delete=django.db.models.deletion.CASCADE,
                                                related_name="+", to="workspaces.workspace")),
            ],
            options={
                "indexes": [
                    models.Index(fields=["workspace", "bucket"], name="eventcount_ws_bucket"),
                    models.Index(fields=["source"], name="eventcount_source"),
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("workspace", "source", "bucket", "kind"),
                                            name="eventcount_unique"),
                ],
            },
        ),
        migrations.RunPython(_run(0), _run(1)),
    ]
