"""`manage.py worker`: evaluates alert rules, runs silence timers and delivers notifications,
and merges the search indexes' pending lists (workspaces/search_upkeep.py).

Run as many as you like, on as many machines: evaluation passes take turns on one row lock,
and each delivery is claimed before it is attempted.
"""

from __future__ import annotations

import logging
import threading

from django.core.management import call_command
from django.core.management.base import BaseCommand

from alerts.engine import run_forever
from workspaces import search_upkeep

logger = logging.getLogger("alerts.worker")


class Command(BaseCommand):
    help = "Evaluate alert rules and deliver notifications (Ctrl-C stops)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--interval", type=float, default=0.1,
            help="Seconds the delivery queue waits when it finds nothing (default 0.1).",
        )
        parser.add_argument("--worker-id", help="A unique name for this worker (default: random).")

    def handle(self, *args, interval: float, worker_id: str | None, **options) -> None:
        logger.info("Alerts worker starting: evaluation loop and delivery queue")
        # The evaluation loop runs beside the queue; it holds no state of its own, so it simply
        # ends with the process (an interrupted pass rolls back and is done again by the next).
        threading.Thread(target=run_forever, name="alerts-evaluation", daemon=True).start()
        # So does the merge of the search indexes' pending lists (PostgreSQL only).
        threading.Thread(
            target=search_upkeep.run_forever, name="search-merge", daemon=True
        ).start()
        # The delivery queue is django-tasks-db's own worker (signals, claiming, results).
        extra = {"worker_id": worker_id} if worker_id else {}
        call_command(
            "db_worker", queue_name="alerts", interval=interval, reload=False,
            startup_delay=False, verbosity=max(0, options.get("verbosity", 1) - 1), **extra,
        )
