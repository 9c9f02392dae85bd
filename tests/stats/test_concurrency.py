"""The event counters under concurrent writers: two real servers on one PostgreSQL database, one
serving the fast lane (group commit, COPY) and one the Django pipeline, both writing single
events and v1 batches of the same workspace at once. No deadlock (the counters are locked after
the quota row, events' and timeline's apart: docs/decisions.md), and every counter equals a
count of the stored rows.
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

from stats.models import bucket_of
from tests.reliability.test_lock_order import _deadlocks_once_idle, _sql
from tests.servers import (
    all_at_once,
    manage,
    own_database,
    require_postgres_and_redis,
    server_env,
    uvicorn,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.server]

ROUNDS = 3
SINGLES = 16  # per round and server
BATCHES = 4  # per round and server
EVENTS_PER_BATCH = 25
V1 = "/api/v1/ingest/events"

# A Pro workspace with this period's quota row, one worker and two sources.
SETUP = """
import json
from django.db import transaction
from billing.services import limits_of, reserve_quota
from sources.services import create_source
from workspaces.models import Worker
from workspaces.services import create_workspace

ws = create_workspace("Counters", "pro")
with transaction.atomic():
    reserve_quota(limits_of(ws), 0)
Worker.objects.create(workspace=ws, external_id="alex", email=None, display_name="Alex")
keys = [create_source(ws, f"Source {n}", slug=f"source-{n}",
                      allowed_event_types=["ticket.resolved"])[1].secret for n in range(2)]
print(json.dumps({"workspace": ws.pk, "keys": keys}))
"""


def _calls(client: httpx.Client, bases: list[str], keys: list[str], n: int) -> list:
    events = [{"eventType": "ticket.resolved", "category": "support",
               "actor": {"externalId": "alex"}} for _ in range(EVENTS_PER_BATCH)]
    batch = json.dumps({"events": events}).encode()
    calls = []
    for s, base in enumerate(bases):
        for i in range(max(SINGLES, BATCHES)):
            headers = {"Content-Type": "application/json",
                       "Authorization": f"Bearer {keys[i % len(keys)]}"}
            if i < BATCHES:
                idem = {"Idempotency-Key": f"round-{n}-server-{s}-batch-{i}"}
                calls.append(lambda base=base, headers=headers, idem=idem: client.post(
                    f"{base}{V1}", content=batch, headers={**headers, **idem}))
            if i < SINGLES:
                body = json.dumps({"status": ("success", "failure", "partial")[i % 3]}).encode()
                calls.append(lambda base=base, headers=headers, body=body: client.post(
                    f"{base}/api/ingest", content=body, headers=headers))
    return calls


def _counters_and_rows(dsn: str) -> tuple[dict, dict]:
    counters = {(ws, src, bucket, kind): n for ws, src, bucket, kind, n in _sql(
        dsn, "SELECT workspace_id, source_id, bucket, kind, count FROM stats_eventcount")}
    rows: Counter = Counter()
    for ws, src, at, kind in _sql(
        dsn, "SELECT workspace_id, source_id, received_at, status FROM ingest_event "
             "UNION ALL SELECT workspace_id, source_id, received_at, 'timeline' "
             "FROM ingest_timelineevent"):
        rows[ws, src, bucket_of(at), kind] += 1
    return counters, dict(rows)


def test_concurrent_writers_on_both_lanes_keep_the_counters_exact_without_deadlock(tmp_path):
    require_postgres_and_redis()
    with own_database(server_env(INGEST_FAST_LANE="1"), "ackly_test_counters") as env:
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        dsn = env["DATABASE_URL"]
        answers: Counter[int] = Counter()
        accepted = 0
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        with (
            uvicorn(env, tmp_path / "fastlane.log") as fast,
            uvicorn({**env, "INGEST_FAST_LANE": "0"}, tmp_path / "django.log") as django,
            httpx.Client(timeout=60, limits=limits) as client,
        ):
            for n in range(ROUNDS):
                for response in all_at_once(_calls(client, [fast, django], data["keys"], n)):
                    answers[response.status_code] += 1
                    if response.url.path == V1 and response.status_code == 202:
                        accepted += response.json()["accepted"]
                    elif response.status_code == 201:
                        accepted += 1
        deadlocks = _deadlocks_once_idle({"dsn": dsn, "database": dsn.rsplit("/", 1)[1]})
        counters, rows = _counters_and_rows(dsn)
        # The fast lane's group commit took part: single events stored several to a transaction.
        [(grouped,)] = _sql(dsn, "SELECT count(*) FROM (SELECT xmin::text FROM ingest_event "
                                 "GROUP BY 1 HAVING count(*) > 1) g")

    assert (dict(answers), deadlocks) == (
        {201: ROUNDS * 2 * SINGLES, 202: ROUNDS * 2 * BATCHES}, 0)
    assert counters == rows
    assert sum(counters.values()) == accepted == ROUNDS * 2 * (SINGLES + BATCHES * EVENTS_PER_BATCH)
    assert {key[0] for key in counters} == {data["workspace"]}
    assert grouped > 0
