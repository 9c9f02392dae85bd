from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "ingest"

    def ready(self) -> None:
        # Registers the OpenAPI extensions (bearer scheme, the views' schemas) before any
        # schema is generated; the API modules themselves carry no documentation code.
        from ingest import schema, schema_read  # noqa: F401
