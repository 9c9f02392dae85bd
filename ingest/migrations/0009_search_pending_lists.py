"""The search indexes' pending lists hold 32 MB before an insert merges them, on PostgreSQL only.

`manage.py worker` merges them every SEARCH_MERGE_MS (workspaces/search_upkeep.py), so ingest
requests only append to them; at PostgreSQL's default of 4 MB a busy ingest filled a list every
second or two and the request that found it full merged it. Setting a GIN index's
`gin_pending_list_limit` takes a SHARE UPDATE EXCLUSIVE lock, which writes do not wait for.
Reversed, the limit is PostgreSQL's default again. On SQLite there are no such indexes.
"""

from django.db import migrations

INDEXES = ("event_search_trgm", "timeline_metadata_trgm")
LIMIT_KB = 32 * 1024


def _alter(schema_editor, setting: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for index in INDEXES:
        schema_editor.execute(f"ALTER INDEX {schema_editor.quote_name(index)} {setting}")


def larger(apps, schema_editor):
    _alter(schema_editor, f"SET (gin_pending_list_limit = {LIMIT_KB})")


def default(apps, schema_editor):
    _alter(schema_editor, "RESET (gin_pending_list_limit)")


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0008_covering_filter_indexes"),
    ]

    operations = [
        migrations.RunPython(larger, default),
    ]
