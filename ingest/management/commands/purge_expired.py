"""`manage.py purge_expired`: delete rows past retention in bounded batches (a daily cron)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from ingest.retention import PurgeReport, purge_expired

# Seconds between two progress lines of a long run.
PROGRESS_EVERY = 10.0


class Command(BaseCommand):
    help = (
        "Delete events, timeline events, snapshot history and rejections past each plan's "
        "retention, and idempotency records past their window."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--batch-size", help="Rows per DELETE (default: settings.PURGE_BATCH_SIZE)."
        )
        parser.add_argument(
            "--pause", default="0",
            help="Seconds to sleep between two DELETEs, leaving the database to ingest (default 0).",
        )

    def handle(self, *args, batch_size: str | None, pause: str, **options) -> None:
        size = None
        if batch_size is not None:
            try:
                size = int(batch_size)
            except ValueError:
                size = 0
            if size < 1:
                raise CommandError(f"--batch-size must be a whole number ≥ 1, got {batch_size!r}")
        try:
            pause_s = float(pause)
        except ValueError:
            pause_s = -1.0
        if not 0 <= pause_s < float("inf"):
            raise CommandError(f"--pause must be a number of seconds ≥ 0, got {pause!r}")
        started = time.monotonic()
        last = started

        def progress(report: PurgeReport) -> None:
            nonlocal last
            now = time.monotonic()
            if options["verbosity"] < 1 or now - last < PROGRESS_EVERY:
                return
            last = now
            rate = report.total / max(now - started, 1e-9)
            self.stdout.write(
                f"… {report.total} rows deleted in {report.batches} batches, "
                f"{now - started:.0f} s, {rate:.0f} rows/s"
            )
            self.stdout.flush()

        report = purge_expired(batch_size=size, pause=pause_s, progress=progress)
        for label, count in sorted(report.deleted.items()):
            self.stdout.write(f"{label}: {count} deleted")
        elapsed = time.monotonic() - started
        self.stdout.write(f"Purged {report.total} rows in {report.batches} batches.")
        if options["verbosity"] >= 2:
            self.stdout.write(f"{elapsed:.1f} s, {report.total / max(elapsed, 1e-9):.0f} rows/s")
