"""Drop the indexes no query uses, each paid for on every insert (docs/performance.md).

The foreign keys' own indexes are the leading columns of named composite indexes already
(Django's deletion cascades and every filter use those). On PostgreSQL Django also makes a
`varchar_pattern_ops` copy of every unique CharField's index for LIKE queries; nothing filters
public ids with LIKE, so the events' and timeline events' copies go too.
"""

import django.db.models.deletion
from django.db import migrations, models

PATTERN_INDEXES = (("ingest_event", "public_id"), ("ingest_timelineevent", "public_id"))


def drop_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, column in PATTERN_INDEXES:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname LIKE %s",
                [table, f"{table}_{column}_%_like"],
            )
            for (name,) in cursor.fetchall():
                schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


def restore_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column in PATTERN_INDEXES:
        name = schema_editor.quote_name(f"{table}_{column}_like")
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column} varchar_pattern_ops)"
        )


class Migration(migrations.Migration):

    dependencies = [
        ('ingest', '0001_initial'),
        ('sources', '0001_initial'),
        ('workspaces', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='event',
            name='source',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='sources.source'),
        ),
        migrations.AlterField(
            model_name='event',
            name='workspace',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='workspaces.workspace'),
        ),
        migrations.AlterField(
            model_name='idempotencyrecord',
            name='source',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='sources.source'),
        ),
        migrations.AlterField(
            model_name='timelineevent',
            name='worker',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='timeline', to='workspaces.worker'),
        ),
        migrations.AlterField(
            model_name='timelineevent',
            name='workspace',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='workspaces.workspace'),
        ),
        migrations.RunPython(drop_pattern_indexes, restore_pattern_indexes),
    ]
