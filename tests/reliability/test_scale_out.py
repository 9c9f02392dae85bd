"""Scale-out (SPEC §11): two Daphne processes share one PostgreSQL database and one Redis.

Nothing a request needs may live in one process's memory: a broadcast, a revocation, a burst
window, the quota and an idempotency record made through process A all hold on process B.
The servers get a throwaway database (created, migrated, dropped) and Redis db 9 (its Ackly keys cleared
before and after); both are started once for the module and stopped even when a test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import (
    all_at_once,
    daphne,
    dashboard_socket,
    manage,
    own_database,
    own_redis,
    server_env,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.server]

REDIS_DB = 9
BURST_PER_KEY = 3
QUOTA = 7

# Run in the servers' environment: a member with a logged-in session, a workspace on a plan whose
# per-key burst is tiny, and a quota-capped workspace; printed as one JSON line.
SETUP = f"""
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from bench.setup_data import logged_in_session
from billing.models import Plan
from sources.services import create_source
from workspaces.services import create_workspace

user = get_user_model().objects.create_user("sam-scale", "sam@example.com", "a-long-passphrase")
session_key = logged_in_session(user)
pro = Plan.objects.get(code="pro")
tight = Plan.objects.create(
    code="tight", name="Tight", monthly_event_limit=1000000, retention_days=30,
    developer_api=True, burst_per_key={BURST_PER_KEY}, burst_per_workspace=1000,
)
main = create_workspace("Scale", "pro", owner=user)
capped = create_workspace("Capped", "pro", owner=user, event_limit={QUOTA})
burst = create_workspace("Bursty", "tight", owner=user)
out = {{"session": session_key, "cookie": settings.SESSION_COOKIE_NAME,
        "org": main.public_id, "capped_org": capped.public_id}}
for name, ws in (("main", main), ("revoked", main), ("capped", capped), ("burst", burst)):
    src, issued = create_source(ws, name.title(), slug=name)
    out[name] = issued.secret
    out[name + "_key_id"] = issued.key.public_id
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    """Processes A and B on one fresh PostgreSQL database and Redis db 9; their URLs and data."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://…")
    logs = tmp_path_factory.mktemp("scale-out")
    with own_redis(REDIS_DB) as redis_url, own_database(
        server_env(REDIS_URL=redis_url), "ackly_scale"
    ) as env:
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        with daphne(env, logs / "a.log") as a, daphne(env, logs / "b.log") as b:
            yield {"a": a, "b": b, "env": env, "dsn": env["DATABASE_URL"], **data}


def _sql(cluster: dict, query: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(cluster["dsn"]) as conn:
        return conn.execute(query, params).fetchall()


def _ingest(base: str, key: str, body: dict | bytes, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{base}/api/ingest", content=content, timeout=30,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
    )




def test_an_event_ingested_through_a_reaches_a_dashboard_socket_on_b(cluster):
    import aiohttp

    marker = f"scale-{secrets.token_hex(6)}"

    async def scenario() -> dict:
        async with dashboard_socket(
            cluster["b"], cluster["org"], cluster["cookie"], cluster["session"]
        ) as ws:
            # The subscription is in Redis once accepted; ingest only then, through the other process.
            response = await asyncio.to_thread(
                _ingest, cluster["a"], cluster["main"], {"status": "success", "message": marker}
            )
            assert response.status_code == 201, response.text
            while True:
                message = await ws.receive(timeout=15)
                assert message.type == aiohttp.WSMsgType.TEXT, message
                payload = json.loads(message.data)
                if payload["type"] == "events":
                    return {"payload": payload, "id": response.json()["id"]}

    got = asyncio.run(scenario())
    [item] = got["payload"]["items"]
    assert item["id"] == got["id"]
    assert item["message"] == marker


def test_a_key_revoked_through_a_is_refused_by_b_on_the_next_request(cluster):
    key = cluster["revoked"]
    body = {"status": "success", "message": "before revocation"}
    # Both processes have looked the key up (and cached it) before it is revoked.
    assert _ingest(cluster["b"], key, body).status_code == 201
    assert _ingest(cluster["a"], key, body).status_code == 201

    manage(cluster["env"], "revokekey", cluster["revoked_key_id"])

    for base in (cluster["b"], cluster["a"]):
        response = _ingest(base, key, {"status": "success", "message": "after revocation"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "key_revoked"
    assert _sql(cluster, "SELECT count(*) FROM ingest_event WHERE message = 'after revocation'") == [(0,)]


def test_the_per_key_burst_limit_holds_across_both_processes(cluster):
    key = cluster["burst"]
    bases = [cluster["a"], cluster["b"]] * 8
    # Start just after a second begins, so the burst usually falls in one window: then a limit
    # kept per process (3 on A + 3 on B) would show as 6 accepted and fail.
    time.sleep(1.02 - time.time() % 1)
    started = time.time()
    responses = all_at_once(
        [lambda base=base: _ingest(base, key, {"status": "success"}) for base in bases]
    )
    ended = time.time()
    accepted = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    # Windows are whole seconds shared through Redis: at most BURST_PER_KEY per second touched,
    # however the requests were split between A and B (each alone would allow that many again).
    windows = int(ended) - int(started) + 1
    assert 1 <= len(accepted) <= BURST_PER_KEY * windows
    assert len(refused) >= len(bases) - BURST_PER_KEY * windows > 0
    for response in refused:
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limited"
        assert int(response.headers["Retry-After"]) >= 1
    assert _sql(cluster, "SELECT count(*) FROM ingest_event e JOIN workspaces_workspace w "
                "ON w.id = e.workspace_id WHERE w.name = 'Bursty'") == [(len(accepted),)]


def test_the_quota_is_exact_across_both_processes(cluster):
    key = cluster["capped"]
    bases = [cluster["a"], cluster["b"]] * (QUOTA + 1)
    responses = all_at_once(
        [lambda i=i, base=base: _ingest(base, key, {"status": "success", "message": f"q{i}"})
         for i, base in enumerate(bases)]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * QUOTA + [429] * (len(bases) - QUOTA)
    codes = {r.json()["error"]["code"] for r in responses if r.status_code == 429}
    assert codes == {"quota_exceeded"}
    assert _sql(cluster, "SELECT count(*) FROM ingest_event e JOIN workspaces_workspace w "
                "ON w.id = e.workspace_id WHERE w.public_id = %s", cluster["capped_org"]) == [(QUOTA,)]


def test_identical_retries_sent_to_a_and_b_at_once_store_one_event(cluster):
    key = cluster["main"]
    for attempt in range(5):
        marker = f"idem-{attempt}-{secrets.token_hex(4)}"
        body = json.dumps({"status": "success", "message": marker}).encode()
        headers = {"Idempotency-Key": marker}
        first, second = all_at_once(
            [lambda base=base, body=body, headers=headers: _ingest(base, key, body, **headers)
             for base in (cluster["a"], cluster["b"])]
        )
        assert (first.status_code, second.status_code) == (201, 201), (first.text, second.text)
        assert first.content == second.content
        replayed = [r.headers.get("Idempotent-Replayed") for r in (first, second)]
        assert replayed.count("true") == 1
        assert _sql(cluster, "SELECT public_id FROM ingest_event WHERE message = %s", marker) == [
            (first.json()["id"],)
        ]
