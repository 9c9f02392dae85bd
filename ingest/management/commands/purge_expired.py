"""`manage.py purge_expired`: delete rows past retention in bounded batches (a daily cron)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ingest.retention import purge_expired


class Command(BaseCommand):
    help = (
        "Delete events, timeline events, snapshot history and rejections past each plan's "
        "retention, and idempotency records past their window."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--batch-size", help="Rows per DELETE (default: settings.PURGE_BATCH_SIZE)."
        )

    def handle(self, *args, batch_size: str | None, **options) -> None:
        size = None
        if batch_size is not None:
            try:
                size = int(batch_size)
            except ValueError:
                size = 0
            if size < 1:
                raise CommandError(f"--batch-size must be a whole number ≥ 1, got {batch_size!r}")
        report = purge_expired(batch_size=size)
        for label, count in sorted(report.deleted.items()):
            self.stdout.write(f"{label}: {count} deleted")
        self.stdout.write(f"Purged {report.total} rows in {report.batches} batches.")
