"""The worker merges the search indexes' pending lists (workspaces/search_upkeep.py).

On PostgreSQL an insert only appends a row's trigrams to its index's pending list, which holds
32 MB (ingest migration 0009); `manage.py worker` merges the lists into the indexes, so that no
ingest request does. The pending pages are read with pgstattuple's pgstatginindex.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.db import ProgrammingError, connection, transaction
from django.utils import timezone

from bench.run import die_with_parent
from ingest.models import Event, TimelineEvent
from tests.servers import ROOT, manage, own_database, server_env
from workspaces import live, search_upkeep

INDEXES = (live.EVENT_SEARCH_INDEX, live.TIMELINE_SEARCH_INDEX)


def _pending_pages(cursor) -> dict[str, int]:
    cursor.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    pages = {}
    for index in INDEXES:
        cursor.execute("SELECT pending_pages FROM pgstatginindex(%s::regclass)", [index])
        pages[index] = cursor.fetchone()[0]
    return pages


def _fill(workspace, source, worker, rows: int) -> None:
    now = timezone.now()
    Event.objects.bulk_create(
        Event(workspace=workspace, source=source, status="success",
              message=f"nightly backup {i} finished", external_id=f"backup-{i}",
              metadata={"host": f"db-{i % 7}", "bytes": i * 1000},
              received_at=now - timedelta(seconds=i))
        for i in range(rows)
    )
    TimelineEvent.objects.bulk_create(
        TimelineEvent(workspace=workspace, source=source, worker=worker, event_type="t.done",
                      category="support", timestamp=now,
                      metadata={"ticket": f"ZD-{i}", "queue": "billing"},
                      request_id="req_x", received_at=now - timedelta(seconds=i))
        for i in range(rows)
    )


@pytest.fixture
def filled(workspace, source, worker_row):
    _fill(workspace, source, worker_row, 300)
    return workspace


@pytest.fixture
def worker_row(workspace):
    from workspaces.models import Worker

    return Worker.objects.create(workspace=workspace, external_id="agent-1", display_name="Agent")


@pytest.mark.django_db
def test_nothing_to_merge_on_sqlite():
    if connection.vendor == "postgresql":
        pytest.skip("SQLite's search reads the rows: nothing is indexed")
    assert search_upkeep.merge_pending_lists() == 0
    search_upkeep.run_forever(threading.Event())  # returns at once: there is no loop to run


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_lists_hold_32_mb():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s) ORDER BY relname",
            [list(INDEXES)],
        )
        options = dict(cursor.fetchall())
    assert options == {index: ["gin_pending_list_limit=32768"] for index in INDEXES}


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_merge_empties_the_lists_and_search_finds_the_same_rows(filled):
    f = live.FeedFilters(q="backup 12")
    before = [item["id"] for item in live.feed(filled, f)]
    with connection.cursor() as cursor:
        pending = _pending_pages(cursor)
        assert all(pages > 0 for pages in pending.values()), pending
        assert search_upkeep.merge_pending_lists() == sum(pending.values())
        assert _pending_pages(cursor) == dict.fromkeys(INDEXES, 0)
    assert search_upkeep.merge_pending_lists() == 0
    after = [item["id"] for item in live.feed(filled, f)]
    # backup 12, 120-129: found in the pending list before and in the index's tree after.
    assert len(after) == 11
    assert after == before


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_loop_merges_until_stopped(filled, source, worker_row, settings):
    settings.SEARCH_MERGE_MS = 20
    stop = threading.Event()
    loop = threading.Thread(target=search_upkeep.run_forever, args=(stop,))
    with connection.cursor() as cursor:
        assert sum(_pending_pages(cursor).values()) > 0
        lent = _lent(connection.pool)
        loop.start()
        try:
            deadline = time.monotonic() + 30
            while sum(_pending_pages(cursor).values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _pending_pages(cursor) == dict.fromkeys(INDEXES, 0)
            # It goes on: rows stored now are merged in a later round.
            _fill(filled, source, worker_row, 50)
            while sum(_pending_pages(cursor).values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _pending_pages(cursor) == dict.fromkeys(INDEXES, 0)
        finally:
            stop.set()
            loop.join(10)
    assert not loop.is_alive()
    assert _lent(connection.pool) == lent  # the loop's connection went back to the pool


def _lent(pool) -> int:
    stats = pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_role_that_does_not_own_the_tables_may_not_merge(filled):
    role = f"ackly_not_owner_{secrets.token_hex(4)}"
    with connection.cursor() as cursor:
        # Inside the test's transaction: rolled back with it, the role included.
        cursor.execute(f"CREATE ROLE {role}")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        with pytest.raises(ProgrammingError, match="must be owner"), transaction.atomic():
            cursor.execute(f"SET LOCAL ROLE {role}")
            search_upkeep.merge_pending_lists()
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] != role


@pytest.fixture
def demo_database(tmp_path):
    """A database of the test's own holding the demo's week of rows, their trigrams pending."""
    env = server_env(SEARCH_MERGE_MS="100", LOG_LEVEL="INFO")
    with own_database(env, "ackly_search_merge") as env:
        manage(env, "demo")
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            cursor = conn.cursor()
            assert sum(_pending_pages(cursor).values()) > 0
            yield env, cursor


@contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[None]:
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "worker"], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
    try:
        yield
    finally:
        worker.terminate()
        worker.wait(30)


@pytest.mark.postgres
def test_manage_py_worker_merges_the_lists(demo_database, tmp_path):
    env, cursor = demo_database
    log = tmp_path / "worker.log"
    with worker_process(env, log):
        deadline = time.monotonic() + 60
        while sum(_pending_pages(cursor).values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _pending_pages(cursor) == dict.fromkeys(INDEXES, 0), log.read_text()


@pytest.mark.postgres
def test_a_worker_that_does_not_own_the_tables_says_so_once(demo_database, tmp_path):
    """Connected as a role that may write every table but owns none: the worker warns once,
    goes on with its other work, and the lists are left to the inserts."""
    env, cursor = demo_database
    role = f"ackly_not_owner_{secrets.token_hex(4)}"
    url = urlsplit(env["DATABASE_URL"])
    cursor.execute(f"CREATE ROLE {role} LOGIN")
    try:
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        as_role = dict(env, DATABASE_URL=urlunsplit(url._replace(netloc=f"{role}@{url.hostname}:{url.port}")))
        log = tmp_path / "worker.log"
        with worker_process(as_role, log):
            deadline = time.monotonic() + 60
            while "needs the role that owns the tables" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            time.sleep(1)  # ten more rounds' time: had the loop gone on, it would warn again
            pending = _pending_pages(cursor)
            text = log.read_text()
        assert text.count("needs the role that owns the tables") == 1, text
        assert all(pages > 0 for pages in pending.values()), pending
    finally:
        cursor.execute(f"DROP OWNED BY {role}")
        cursor.execute(f"DROP ROLE {role}")
