"""The worker merges the search indexes' pending lists, so that ingest requests never do.

A pg_trgm GIN index with `fastupdate` (PostgreSQL's default) takes a new row's trigrams into a
pending list; the list is merged into the index's tree in bulk by VACUUM, by
`gin_clean_pending_list()`, or, once it outgrows `gin_pending_list_limit`, by whichever insert
finds it full. That insert is an ingest request: at the default 4 MB limit the search indexes
were merged inline every second or two under load, and those requests made ingest's p99
(34 ms against 18 ms without the index). Ingest migration 0009 sets the two search indexes'
limit to 32 MB, more than a few seconds of any rate `make bench` reaches, and `manage.py worker`
merges both lists every SEARCH_MERGE_MS: an insert then only appends to the list, and a
search reads a short one (every search scans the whole pending list).

Without a running worker the lists are merged inline at 32 MB, as before at 4 MB, in fewer and
longer stalls. `gin_clean_pending_list` needs the role that owns the tables (as VACUUM does);
under another role the worker says so once and leaves the merging to the inserts.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, ProgrammingError, close_old_connections, connection

from workspaces.live import EVENT_SEARCH_INDEX, TIMELINE_SEARCH_INDEX

logger = logging.getLogger("ackly.search")

# The indexes ingest writes on every request: the workers' name indexes change only when a
# worker is first seen and stay small.
MERGED = (EVENT_SEARCH_INDEX, TIMELINE_SEARCH_INDEX)


def merge_pending_lists() -> int:
    """Merge each search index's pending list into its tree; the pending pages merged.

    On PostgreSQL only (SQLite's search reads the rows: there is nothing to merge). Raises
    ProgrammingError when the role may not (it does not own the tables).
    """
    if connection.vendor != "postgresql":
        return 0
    merged = 0
    with connection.cursor() as cursor:
        for index in MERGED:
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
            merged += cursor.fetchone()[0]
    return merged


def run_forever(stop: threading.Event | None = None) -> None:
    """The worker's merge loop: merge_pending_lists every SEARCH_MERGE_MS.

    A failure is logged and the next round tries again with a fresh connection; a role that
    may not merge is told once, and the loop ends (the inserts go on merging, as without it).
    """
    every = settings.SEARCH_MERGE_MS / 1000
    if connection.vendor != "postgresql" or every <= 0:
        return
    stop = stop or threading.Event()
    try:
        while not stop.is_set():
            started = time.monotonic()
            close_old_connections()
            try:
                merge_pending_lists()
            except ProgrammingError:
                logger.warning(
                    "Search index pending lists not merged: gin_clean_pending_list needs the role "
                    "that owns the tables (docs/operations.md); ingest requests merge them instead"
                )
                return
            except DatabaseError:
                logger.exception("Merging the search indexes' pending lists failed; retrying")
                connection.close()
            stop.wait(max(0.0, every - (time.monotonic() - started)))
    finally:
        connection.close()  # this thread's connection back to the pool
