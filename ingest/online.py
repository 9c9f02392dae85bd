"""Index operations for migrations that keep ingest writing on PostgreSQL.

CREATE and DROP INDEX CONCURRENTLY take no lock that stops inserts, so a migration can add an
index to a table of tens of millions of rows while events keep arriving; they cannot run in a
transaction (the migration sets atomic = False). Other databases get the plain operation.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db.migrations.operations import AddIndex, RemoveIndex
from django.db.migrations.operations.base import Operation


class _PlainElsewhere(Operation):
    """The concurrent operation (the next class in the MRO) on PostgreSQL, `plain` elsewhere."""

    plain: type[Operation]

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexOnline(_PlainElsewhere, AddIndexConcurrently):
    """AddIndexConcurrently on PostgreSQL; a plain AddIndex on other databases."""

    plain = AddIndex


class RemoveIndexOnline(_PlainElsewhere, RemoveIndexConcurrently):
    """RemoveIndexConcurrently on PostgreSQL; a plain RemoveIndex on other databases."""

    plain = RemoveIndex


def create_index_concurrently(schema_editor, name: str, table: str, definition: str) -> None:
    """CREATE INDEX CONCURRENTLY `name` ON `table` `definition` (from USING on), for RunPython
    on PostgreSQL. A concurrent build that failed leaves an invalid index under its name: that
    one is dropped and built again; a valid one is kept."""
    quote = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name]
        )
        invalid = cursor.fetchone()
    if invalid and invalid[0]:
        drop_index_concurrently(schema_editor, name)
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(name)} ON {quote(table)} {definition}"
    )


def drop_index_concurrently(schema_editor, name: str) -> None:
    """DROP INDEX CONCURRENTLY IF EXISTS `name`, for RunPython on PostgreSQL."""
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
