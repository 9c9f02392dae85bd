"""`manage.py purge_expired`: delete rows past retention in bounded, paced batches (a daily cron)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from ackly.commands import whole_number
from ingest.retention import PacingError, PurgeReport, purge_expired

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
            "--duty-percent",
            help="The share of its time spent deleting, 1 to 100: after each DELETE it sleeps "
                 "in proportion to how long it took, leaving the database to ingest; 100 never "
                 "sleeps (default: settings.PURGE_DUTY_PERCENT).",
        )

    def handle(
        self, *args, batch_size: str | None, duty_percent: str | None, **options
    ) -> None:
        size = whole_number(batch_size, "--batch-size")
        duty = whole_number(duty_percent, "--duty-percent")
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

        try:
            report = purge_expired(batch_size=size, duty_percent=duty, progress=progress)
        except PacingError as exc:  # raised before anything is deleted
            raise CommandError(str(exc)) from None
        for label, count in sorted(report.deleted.items()):
            self.stdout.write(f"{label}: {count} deleted")
        elapsed = time.monotonic() - started
        self.stdout.write(f"Purged {report.total} rows in {report.batches} batches.")
        if options["verbosity"] >= 2:
            self.stdout.write(f"{elapsed:.1f} s, {report.total / max(elapsed, 1e-9):.0f} rows/s")
