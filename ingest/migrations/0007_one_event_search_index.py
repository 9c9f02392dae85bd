"""One pg_trgm GIN index for the search of ingest events instead of one per column, on
PostgreSQL only.

`workspaces.live.search_events` matches a term against the event's message, external_id and
metadata's JSON text joined into one text, a unit separator (U+001F, which no term may hold)
between them, so that one index serves the search and each insert pays one GIN insertion
instead of 0005's three (docs/decisions.md). The index is on exactly the expression Django's
icontains writes for it, UPPER(<joined text>::text), the cast of a text to text being nothing.

The expression is written out here, not imported from `workspaces.live.event_search_text`
where the query defines it: a migration is history, and an import would make this one build
whatever the code says today. tests/dashboard/test_search.py checks on PostgreSQL that the
query reads this index. Every part is IMMUTABLE, as an index needs: || on text (concat() is
only STABLE), the jsonb-to-text cast, COALESCE (metadata may be NULL; message and external_id
are NOT NULL).

Built CONCURRENTLY, outside a transaction, so ingest keeps writing; a build that was
interrupted leaves an invalid index, which is dropped and built again. Then the three old
indexes are dropped CONCURRENTLY. Reversed, the old indexes are built again before the new one
is dropped, so search is indexed throughout. On SQLite every step does nothing.
"""

from django.db import migrations

from ingest.online import create_index_concurrently, drop_index_concurrently

NAME = "event_search_trgm"
EXPRESSION = (
    "UPPER((message || E'\\x1f' || external_id || E'\\x1f' || COALESCE(metadata::text, '')))"
)
# 0005's indexes on ingest_event, one per column, on UPPER(column::text).
OLD = [
    ("event_message_trgm", "UPPER(message::text)"),
    ("event_external_id_trgm", "UPPER(external_id::text)"),
    ("event_metadata_trgm", "UPPER(metadata::text)"),
]
# As in 0005: with the default sample the planner takes a term in 0.5 % of the events for a
# miss and collects it from the index row by row; with 1,000 the estimate is right.
STATISTICS = 1000


def _build(schema_editor, table: str, name: str, expression: str) -> None:
    create_index_concurrently(schema_editor, name, table, f"USING gin (({expression}) gin_trgm_ops)")
    quote = schema_editor.quote_name
    schema_editor.execute(f"ALTER INDEX {quote(name)} ALTER COLUMN 1 SET STATISTICS {STATISTICS}")


def one_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("ingest", "Event")._meta.db_table
    _build(schema_editor, table, NAME, EXPRESSION)
    # The expression has no statistics until ANALYZE, which takes no lock that stops writes.
    schema_editor.execute(f"ANALYZE {schema_editor.quote_name(table)}")
    for name, _ in OLD:
        drop_index_concurrently(schema_editor, name)


def three_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("ingest", "Event")._meta.db_table
    for name, expression in OLD:
        _build(schema_editor, table, name, expression)
    schema_editor.execute(f"ANALYZE {schema_editor.quote_name(table)}")
    drop_index_concurrently(schema_editor, NAME)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("ingest", "0006_dashboard_filter_indexes"),
    ]

    operations = [
        migrations.RunPython(one_index, three_indexes),
    ]
