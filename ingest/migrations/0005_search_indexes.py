"""pg_trgm GIN indexes for the feed's free-text search, on PostgreSQL only.

Each index is on the exact expression Django's icontains writes for one searched column,
UPPER(column::text), so `workspaces.live.search_events` and `search_timeline` read them
(tests/dashboard/test_search.py checks the plan). Built CONCURRENTLY, outside a transaction,
so ingest keeps writing while a large table is indexed. On SQLite every step does nothing:
the search there reads the rows.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

from ingest.online import create_index_concurrently, drop_index_concurrently

# The planner weighs an index against reading the newest rows by how many rows it expects a
# term to match, from ANALYZE's sample of each indexed expression. With the default sample a
# term in 0.5 % of the events looks like a miss and is collected from the index, row by row
# (657 ms at 2,500,000 events), where reading the newest rows finds the page in 51 ms; with
# 1,000 the estimate is right (bench/results/2026-12-05-search-index.txt). Workers are few.
STATISTICS = 1000
# (index name, app label, model, column)
INDEXES = [
    # The feed's and read API's search of ingest events: message, externalId, metadata.
    ("event_message_trgm", "ingest", "Event", "message"),
    ("event_external_id_trgm", "ingest", "Event", "external_id"),
    ("event_metadata_trgm", "ingest", "Event", "metadata"),
    # Timeline events: their metadata here, their worker's name and external id below.
    ("timeline_metadata_trgm", "ingest", "TimelineEvent", "metadata"),
    ("worker_display_name_trgm", "workspaces", "Worker", "display_name"),
    ("worker_external_id_trgm", "workspaces", "Worker", "external_id"),
]


class CreatePgTrgm(TrigramExtension):
    """CREATE EXTENSION IF NOT EXISTS pg_trgm, and on reversal DROP EXTENSION: on PostgreSQL only.

    Django's operation already skips SQLite going forwards, but not backwards.
    """

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    for name, app, model, column in INDEXES:
        table = apps.get_model(app, model)._meta.db_table
        create_index_concurrently(
            schema_editor, name, table, f"USING gin ((UPPER({quote(column)}::text)) gin_trgm_ops)"
        )
        if app == "ingest":
            schema_editor.execute(
                f"ALTER INDEX {quote(name)} ALTER COLUMN 1 SET STATISTICS {STATISTICS}"
            )
    # An expression has no statistics until ANALYZE: until then every term would look
    # common. ANALYZE takes no lock that stops writes.
    for app, model in (("ingest", "Event"), ("ingest", "TimelineEvent"), ("workspaces", "Worker")):
        schema_editor.execute(f"ANALYZE {quote(apps.get_model(app, model)._meta.db_table)}")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, *_ in INDEXES:
        drop_index_concurrently(schema_editor, name)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("ingest", "0004_rejected_requests"),
        ("workspaces", "0004_invitation"),
    ]

    operations = [
        # docs/operations.md says what to do when the database role may not create it.
        CreatePgTrgm(),
        migrations.RunPython(create_indexes, drop_indexes),
    ]
