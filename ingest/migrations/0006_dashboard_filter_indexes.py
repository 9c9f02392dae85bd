"""Indexes for the live page's filters at scale (docs/performance.md, the scale part).

* event_ws_type, timeline_ws_type: the event-type filter (a prefix, LIKE 'deploy.%') reads
  only the matching rows; through (workspace, received_at) a type that matches nothing read
  every row of the workspace.
* timeline_source_recent replaces the timeline's plain source_id index (Django's, for the
  foreign key): the source filter reads a source's newest rows in order, and a source's
  deletion still finds its rows by it. So the timeline table keeps its number of indexes.

The old index is dropped by name, the same on PostgreSQL and SQLite, and Django's state only
learns that the field has no index of its own: altering the field itself would rebuild the
table on SQLite, which the triggers of ingest.0003 and stats.0001 forbid.
On PostgreSQL the indexes are built CONCURRENTLY, outside a transaction, so ingest keeps
writing while a large table is indexed (about a minute per index for 20,000,000 rows on two
cores); SQLite builds them plainly.
"""

import django.db.models.deletion
from django.db import migrations, models

from ingest.online import AddIndexOnline

OLD_SOURCE_INDEX = "ingest_timelineevent_source_id_6903f321"


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("ingest", "0005_search_indexes"),
        ("sources", "0002_key_scope"),
    ]

    operations = [
        AddIndexOnline(
            model_name="timelineevent",
            index=models.Index(fields=["source", "-received_at"], name="timeline_source_recent"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="timelineevent",
                    name="source",
                    field=models.ForeignKey(
                        db_constraint=False, db_index=False,
                        on_delete=django.db.models.deletion.CASCADE, related_name="timeline",
                        to="sources.source",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX {OLD_SOURCE_INDEX}",
                    f"CREATE INDEX {OLD_SOURCE_INDEX} ON ingest_timelineevent (source_id)",
                ),
            ],
        ),
        AddIndexOnline(
            model_name="event",
            index=models.Index(
                fields=["workspace", "event_type", "-received_at"], name="event_ws_type",
                opclasses=["", "varchar_pattern_ops", ""],
            ),
        ),
        AddIndexOnline(
            model_name="timelineevent",
            index=models.Index(
                fields=["workspace", "event_type", "-received_at"], name="timeline_ws_type",
                opclasses=["", "varchar_pattern_ops", ""],
            ),
        ),
    ]
