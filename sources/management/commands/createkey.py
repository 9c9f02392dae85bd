"""`manage.py createkey SOURCE_ID [--expires-at ISO8601]` → an extra key, alone on the last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from sources.management.commands._common import future_datetime, source_by_id
from sources.services import issue_key
from workspaces import audit


class Command(BaseCommand):
    help = "Issue an extra key for a source; prints the key alone on the last line (shown once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source_id", help="The source's app_… id.")
        parser.add_argument("--expires-at", help="ISO 8601, e.g. 2026-12-31T23:59:00Z.")

    def handle(self, *args, source_id: str, expires_at: str | None, **options) -> None:
        expires = future_datetime(expires_at, "--expires-at") if expires_at else None
        source = source_by_id(source_id)
        issued = issue_key(source, expires_at=expires, actor=audit.COMMAND)
        until = f", expires {expires.isoformat()}" if expires else ""
        self.stdout.write(
            f"Issued key {issued.key.public_id} for {source.public_id} ({source.name}){until}. "
            "It is shown only once."
        )
        self.stdout.write(issued.secret)
