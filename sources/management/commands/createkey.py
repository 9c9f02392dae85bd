"""`manage.py createkey SOURCE_ID [--expires-at ISO8601] [--scope ingest|read]` → an extra key,
alone on the last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from sources.management.commands._common import future_datetime, source_by_id
from sources.models import KeyScope
from sources.services import issue_key
from workspaces import audit


class Command(BaseCommand):
    help = "Issue an extra key for a source; prints the key alone on the last line (shown once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source_id", help="The source's app_… id.")
        parser.add_argument("--expires-at", help="ISO 8601, e.g. 2026-12-31T23:59:00Z.")
        parser.add_argument(
            "--scope", choices=KeyScope.values, default=KeyScope.INGEST,
            help="ingest (send events, the default) or read (GET /api/v1/events only).",
        )

    def handle(
        self, *args, source_id: str, expires_at: str | None, scope: str, **options
    ) -> None:
        expires = future_datetime(expires_at, "--expires-at") if expires_at else None
        source = source_by_id(source_id)
        issued = issue_key(source, expires_at=expires, actor=audit.COMMAND, scope=scope)
        until = f", expires {expires.isoformat()}" if expires else ""
        self.stdout.write(
            f"Issued {scope} key {issued.key.public_id} for {source.public_id} ({source.name})"
            f"{until}. "
            "It is shown only once."
        )
        self.stdout.write(issued.secret)
