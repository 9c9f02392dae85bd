"""Lock order: a v1 batch and a group of single events of one key, in flight together, never
deadlock (docs/decisions.md, "Ordering of locks").

Both fast-lane write paths lock the workspace's counter row; a key whose `last_used_at` is due
is written too. Each round uses a fresh key (new to the server's in-process throttle, last used
an hour ago in the database: due in both) and sends 12 batches and 24 single events with it at once to a
real uvicorn serving the fast lane on PostgreSQL and Redis. Every request must be answered
201/202 (never 500), the rows stored must be exactly those acknowledged, and PostgreSQL must
have detected no deadlock in the database (`pg_stat_database.deadlocks`, read once the server
has stopped, so every backend has reported its figures).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.servers import (
    all_at_once,
    manage,
    own_database,
    own_redis,
    require_postgres_and_redis,
    server_env,
    uvicorn,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.server]

REDIS_DB = 14  # this file's own Redis database (its keys cleared before and after)
ROUNDS = 8
BATCHES = 12  # per round, each with an Idempotency-Key of its own
SINGLES = 24  # per round
EVENTS_PER_BATCH = 40
V1 = "/api/v1/ingest/events"

# Run in the server's environment: a Pro workspace with this period's counter row (so no
# request is handed over for a missing row), one worker, and one source per round, whose key
# was last used an hour ago (so it is due).
SETUP = f"""
import json
from datetime import timedelta
from django.db import transaction
from django.utils import timezone
from billing.services import limits_of, reserve_quota
from sources.services import create_source
from workspaces.models import Worker
from workspaces.services import create_workspace

ws = create_workspace("Locks", "pro")
with transaction.atomic():
    reserve_quota(limits_of(ws), 0)
Worker.objects.create(workspace=ws, external_id="alex", email=None, display_name="Alex")
rounds = []
for n in range({ROUNDS}):
    source, issued = create_source(ws, f"Round {{n}}", slug=f"round-{{n}}",
                                   allowed_event_types=["ticket.resolved"])
    type(issued.key).objects.filter(pk=issued.key.pk).update(
        last_used_at=timezone.now() - timedelta(hours=1))
    rounds.append({{"source": source.pk, "key": issued.secret, "key_id": issued.key.pk}})
print(json.dumps({{"workspace": ws.pk, "rounds": rounds}}))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    """A fresh database and Redis db 14, seeded; the server itself is started by the test."""
    require_postgres_and_redis()
    with own_redis(REDIS_DB) as redis_url, own_database(
        server_env(REDIS_URL=redis_url, INGEST_FAST_LANE="1"), "ackly_test_locks"
    ) as env:
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        yield {"env": env, "dsn": env["DATABASE_URL"],
               "database": urlsplit(env["DATABASE_URL"]).path.lstrip("/"),
               "logs": tmp_path_factory.mktemp("lock-order"), **data}


def _sql(dsn: str, query: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _maintenance(cluster: dict) -> str:
    """The server's maintenance database, where its statistics views are read."""
    return urlunsplit(urlsplit(cluster["dsn"])._replace(path="/postgres"))


def _deadlocks_once_idle(cluster: dict, timeout: float = 30) -> int:
    """The database's deadlock count, read when no backend is connected to it any more (a
    backend reports its figures when it exits)."""
    maintenance = _maintenance(cluster)
    deadline = time.monotonic() + timeout
    while _sql(maintenance, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
               cluster["database"]) != [(0,)]:
        assert time.monotonic() < deadline, "the server's connections did not close"
        time.sleep(0.1)
    [(deadlocks,)] = _sql(maintenance, "SELECT deadlocks FROM pg_stat_database WHERE datname = %s",
                          cluster["database"])
    return deadlocks


def _complaints(log: Path) -> str:
    """The server log's warnings and errors (and PostgreSQL's error), to say why a test failed."""
    lines = log.read_text(errors="replace").splitlines()
    said = [line for line in lines if " WARNING " in line or " ERROR " in line or line.startswith("psycopg.")]
    return "\n".join(said)[:4000]


def _round(client: httpx.Client, base: str, key: str, n: int) -> list[httpx.Response]:
    """BATCHES batches and SINGLES single events of `key`, interleaved, released together."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    events = [{"eventType": "ticket.resolved", "category": "support", "actor": {"externalId": "alex"},
               "duration": i} for i in range(EVENTS_PER_BATCH)]
    batch = json.dumps({"events": events}).encode()

    def send_batch(i: int):
        return lambda: client.post(f"{base}{V1}", content=batch,
                                   headers={**headers, "Idempotency-Key": f"round-{n}-batch-{i}"})

    def send_single(i: int):
        body = json.dumps({"status": "success", "message": f"round {n} single {i}"}).encode()
        return lambda: client.post(f"{base}/api/ingest", content=body, headers=headers)

    calls = []
    for i in range(max(BATCHES, SINGLES)):
        if i < BATCHES:
            calls.append(send_batch(i))
        if i < SINGLES:
            calls.append(send_single(i))
    return all_at_once(calls)


def test_batches_and_single_events_of_one_due_key_never_deadlock(cluster):
    dsn = cluster["dsn"]
    acknowledged = stored = 0
    answers: Counter[int] = Counter()
    fast_batches = grouped_singles = 0  # written by the fast lane
    recently = datetime.now(UTC) - timedelta(minutes=10)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with uvicorn(cluster["env"], cluster["logs"] / "uvicorn.log") as base, httpx.Client(
        timeout=30, limits=limits
    ) as client:
        for n, spec in enumerate(cluster["rounds"]):
            responses = _round(client, base, spec["key"], n)
            answers.update(r.status_code for r in responses)
            singles = [r for r in responses if r.url.path == "/api/ingest" and r.status_code == 201]
            batches = [r for r in responses if r.url.path == V1 and r.status_code == 202]
            acknowledged += len(singles) + sum(r.json()["accepted"] for r in batches)
            [(events, timeline)] = _sql(
                dsn,
                "SELECT (SELECT count(*) FROM ingest_event WHERE source_id = %s), "
                "(SELECT count(*) FROM ingest_timelineevent WHERE source_id = %s)",
                spec["source"], spec["source"],
            )
            stored += events + timeline
            # Which the fast lane wrote: a batch's rows in its record's own transaction, single
            # events several to a transaction (the pipeline writes neither so).
            [(fast_batches_now, grouped_now, last_used)] = _sql(
                dsn,
                "SELECT (SELECT count(*) FROM ingest_idempotencyrecord r WHERE r.source_id = %s "
                "  AND (SELECT array_agg(DISTINCT t.xmin::text) FROM ingest_timelineevent t "
                "       WHERE t.request_id = (r.response_body::jsonb ->> 'requestId')) "
                "      = ARRAY[r.xmin::text]), "
                "(SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM ingest_event "
                "  WHERE source_id = %s GROUP BY xmin::text HAVING count(*) > 1) g), "
                "(SELECT last_used_at FROM sources_key WHERE id = %s)",
                spec["source"], spec["source"], spec["key_id"],
            )
            fast_batches += fast_batches_now
            grouped_singles += grouped_now
            assert last_used > recently, f"round {n}: the key's use was not recorded"
    deadlocks = _deadlocks_once_idle(cluster)
    [(used,)] = _sql(dsn, "SELECT sum(events) FROM billing_usage WHERE workspace_id = %s",
                     cluster["workspace"])

    total = ROUNDS * (BATCHES + SINGLES)
    assert (dict(answers), deadlocks) == ({201: ROUNDS * SINGLES, 202: ROUNDS * BATCHES}, 0), (
        f"answers {dict(answers)} and {deadlocks} deadlocks for {total} requests; the server "
        f"said:\n{_complaints(cluster['logs'] / 'uvicorn.log')}")
    assert stored == acknowledged == ROUNDS * (SINGLES + BATCHES * EVENTS_PER_BATCH) == used
    # The race was staged: the fast lane wrote most batches and most single events (a request
    # it hands over is the pipeline's, which takes no part in the race).
    assert fast_batches * 2 >= ROUNDS * BATCHES and grouped_singles * 2 >= ROUNDS * SINGLES, (
        fast_batches, grouped_singles)
