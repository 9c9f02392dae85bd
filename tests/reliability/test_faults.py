"""Faults (issue 7, item 2): Redis and PostgreSQL stop under a running Daphne, then come back.

The server runs the production configuration on a PRIVATE PostgreSQL cluster and a PRIVATE
Redis (tests/faults.py), which these tests kill and restart; the machine's shared servers are
never touched. So the module runs the same way in both CI passes, and is skipped with the reason
where redis-server or PostgreSQL's server binaries are missing.

* Redis killed: both APIs keep answering 201/202 and store exactly what they answered, the
  skipped broadcast is logged, and `feed.json?after=` returns everything ingested during the
  outage. Once Redis is back a socket (retried as the page does) is live again, and a socket
  that was open through the outage is closed so its page fetches what it missed.
* PostgreSQL stopped (immediate shutdown) under concurrent load: every answer is 201/202 or
  the JSON `internal_error` envelope, never HTML; no request is half-stored, the quota counter
  equals the stored rows, and service resumes without restarting the server.
* PostgreSQL stopped, requests in two waves through the fast lane: each is answered the
  envelope within DB_POOL_TIMEOUT and a margin (not once per pool it could wait for), and the
  log has one line per refusal, no traceback. A dashboard page while no connection can be had
  (Django's test client): Django's 500 page and one log line.

Measurements are printed (`-s`), never asserted: latency with Redis down, recovery times.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.db import OperationalError, ProgrammingError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client
from psycopg_pool import PoolTimeout

from ackly import resilient_cache
from tests.faults import PrivateCluster, PrivateRedis, private_services
from tests.servers import Server, daphne, dashboard_socket_target, free_port, manage, server_env

pytestmark = pytest.mark.server

# How long a request may wait for a pooled PostgreSQL connection. The default (10 s) is what a
# request hangs while the database is down; this bounds the test's own wall time.
POOL_TIMEOUT_SECONDS = 3
BATCH = 3

# Run in the server's environment: the schema, a member with a logged-in session, and one Pro
# workspace per scenario (a source allowing the v1 event type, its key), so no scenario sees
# another's live feed; printed as one JSON line.
SETUP = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from bench.setup_data import logged_in_session
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from billing.models import Plan
from sources.services import create_source
from workspaces.services import create_workspace

Plan.objects.filter(code="pro").update(burst_per_key=100000, burst_per_workspace=100000)
user = get_user_model().objects.create_user("fran-faults", "fran@example.com", "a-long-passphrase")
session_key = logged_in_session(user)
spaces = {}
for name in ("main", "revive", "silent", "outage"):
    ws = create_workspace(name.title(), "pro", owner=user)
    source, issued = create_source(ws, "Faulty", slug="faulty", allowed_event_types=["fault.check"])
    spaces[name] = {"key": issued.secret, "org": ws.public_id}
print(json.dumps({"spaces": spaces, "session": session_key,
                  "cookie": settings.SESSION_COOKIE_NAME}))
"""


@dataclass
class Stack:
    base: Server
    log: Path
    cluster: PrivateCluster
    redis: PrivateRedis
    dsn: str
    spaces: dict[str, dict[str, str]]  # scenario -> {"key": …, "org": …}
    session: str
    cookie: str

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """Daphne on a private PostgreSQL cluster and a private Redis, all stopped afterwards."""
    work = tmp_path_factory.mktemp("faults")
    started = time.monotonic()
    with private_services(work) as (cluster, redis_server):
        services_up = time.monotonic() - started
        cluster.execute("CREATE DATABASE ackly")
        env = server_env(
            DATABASE_URL=cluster.url("ackly"), REDIS_URL=redis_server.url(0),
            DB_POOL_TIMEOUT=str(POOL_TIMEOUT_SECONDS), LOG_LEVEL="WARNING",
        )
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        with daphne(env, work / "daphne.log") as base:
            print(f"\n[faults] private PostgreSQL (initdb + start) and Redis up in {services_up:.1f} s; "
                  f"migrated, seeded and serving after {time.monotonic() - started:.1f} s")
            yield Stack(base=base, log=work / "daphne.log", cluster=cluster, redis=redis_server,
                        dsn=cluster.url("ackly"), **data)


def _sql(stack: Stack, query: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(stack.dsn) as conn:
        return conn.execute(query, params).fetchall()


def _post(stack: Stack, path: str, body: dict, space: str = "main", **headers: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base}{path}", content=json.dumps(body).encode(), timeout=60,
        headers={"Authorization": f"Bearer {stack.spaces[space]['key']}",
                 "Content-Type": "application/json", **headers},
    )


def _event(marker: str) -> dict:
    return {"status": "success", "message": marker}


def _batch(marker: str) -> dict:
    return {"events": [
        {"eventType": "fault.check", "category": "operations", "actor": {"externalId": "fault-bot"},
         "metadata": {"batch": marker, "n": n}}
        for n in range(BATCH)
    ]}


def _events_with(stack: Stack, marker: str) -> int:
    return _sql(stack, "SELECT count(*) FROM ingest_event WHERE message = %s", marker)[0][0]


def _timeline_with(stack: Stack, marker: str) -> int:
    return _sql(stack, "SELECT count(*) FROM ingest_timelineevent WHERE metadata->>'batch' = %s",
                marker)[0][0]


def _assert_internal_error(response: httpx.Response) -> None:
    """The JSON envelope a client can parse and retry on: never Django's HTML error page."""
    assert response.status_code == 500, response.text[:300]
    assert response.headers["Content-Type"] == "application/json", response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert error["requestId"] == response.headers["X-Request-Id"]
    assert error["docsUrl"].startswith("http")


# --- the cache backend on its own ---------------------------------------------------------------

@pytest.fixture
def fresh_health(monkeypatch):
    """Each test sees the process's Redis health from scratch (it is one per process)."""
    monkeypatch.setattr(resilient_cache, "_health", resilient_cache._Health())


def _backend(url: str) -> resilient_cache.ResilientRedisCache:
    return resilient_cache.ResilientRedisCache(
        url, {"KEY_PREFIX": "t", "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.5}},
    )


def test_every_cache_call_on_an_unreachable_redis_answers_as_a_miss(fresh_health, caplog):
    cache = _backend(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    secret_key = "key:digest-that-must-not-be-logged"
    with caplog.at_level(logging.WARNING, logger="ackly.resilient_cache"):
        assert cache.get(secret_key, "fallback") == "fallback"
        assert cache.add(secret_key, 1, 5) is False
        with pytest.raises(ValueError):
            cache.incr(secret_key)
        assert cache.incr_windows([secret_key, "other"], 2) == [1, 1]
        cache.set(secret_key, "value", 5)
        assert cache.set_many({secret_key: 1}, 5) == [secret_key]
        assert cache.delete(secret_key) is False
        cache.delete_many([secret_key])
        assert cache.get_many([secret_key]) == {}
        assert cache.has_key(secret_key) is False
        assert cache.touch(secret_key, 5) is False
        assert cache.clear() is False
    warnings = [r for r in caplog.records if r.name == "ackly.resilient_cache"]
    # Twelve failed calls, one warning: an outage does not flood the log.
    assert len(warnings) == 1
    assert "Cache unreachable (ConnectionError" in warnings[0].getMessage()
    assert "digest-that-must-not-be-logged" not in caplog.text


def test_the_cache_says_once_when_redis_answers_again_and_still_raises_real_errors(
    fresh_health, caplog, tmp_path
):
    server = PrivateRedis(tmp_path)
    cache = _backend(server.url(0))
    with caplog.at_level(logging.WARNING, logger="ackly.resilient_cache"):
        assert cache.get("k") is None  # not started yet: a miss
        server.start()
        try:
            assert cache.add("k", "text", 30) is True
            assert cache.get("k") == "text"
            assert cache.incr_windows(["w"], 2) == [1]
            # A wrong reply is a bug, not an outage: it is not absorbed.
            import redis

            with pytest.raises(redis.ResponseError):
                cache.incr("k")
        finally:
            server.kill()
    messages = [r.getMessage() for r in caplog.records if r.name == "ackly.resilient_cache"]
    assert len(messages) == 2
    assert messages[0].startswith("Cache unreachable")
    assert messages[1] == "Cache reachable again (0 failed call(s) since the last warning)"


# --- Redis killed mid-run -----------------------------------------------------------------------

def _socket_url(stack: Stack, space: str) -> tuple[str, dict[str, str]]:
    return dashboard_socket_target(stack.base, stack.spaces[space]["org"], stack.cookie, stack.session)


async def _next_events(ws, timeout: float) -> list[dict] | None:
    """The items of the next `events`/`timeline` message: None when the socket closes first,
    [] when nothing comes within `timeout` seconds."""
    import aiohttp

    deadline = time.monotonic() + timeout
    while True:
        try:
            message = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return []
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
            return None
        payload = json.loads(message.data)
        if payload["type"] in ("events", "timeline"):
            return payload["items"]


async def _connect_when_accepted(session, url: str, headers: dict[str, str]):
    """Open a dashboard socket, retrying every 0.2 s as the page does (15 s at most)."""
    import aiohttp

    deadline = time.monotonic() + 15
    while True:
        try:
            return await session.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError:
            assert time.monotonic() < deadline, "no dashboard socket accepted within 15 s"
            await asyncio.sleep(0.2)


def test_with_redis_killed_both_apis_store_exactly_and_the_feed_returns_what_sockets_missed(stack):
    import aiohttp

    url, headers = _socket_url(stack, "main")
    run = secrets.token_hex(4)
    outage_events = [f"redis-down-{run}-{i}" for i in range(3)]
    outage_batch = f"redis-down-{run}-batch"

    async def newest_row_of_a_live_page() -> str:
        async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as socket:
            response = await asyncio.to_thread(_post, stack, "/api/ingest", _event(f"before-{run}"))
            assert response.status_code == 201, response.text
            [seen] = await _next_events(socket, timeout=10)
            assert seen["id"] == response.json()["id"]
            return seen["receivedAt"]

    last_seen = asyncio.run(newest_row_of_a_live_page())
    latencies_up, latencies_down = [], []
    for n in range(3):
        started = time.monotonic()
        assert _post(stack, "/api/ingest", _event(f"up-{run}-{n}")).status_code == 201
        latencies_up.append(time.monotonic() - started)

    stack.redis.kill()
    try:
        for marker in outage_events:
            started = time.monotonic()
            response = _post(stack, "/api/ingest", _event(marker))
            latencies_down.append(time.monotonic() - started)
            assert response.status_code == 201, response.text
        started = time.monotonic()
        response = _post(stack, "/api/v1/ingest/events", _batch(outage_batch))
        latencies_down.append(time.monotonic() - started)
        assert response.status_code == 202, response.text
        batch_request_id = response.json()["requestId"]
    finally:
        stack.redis.start()
    assert _post(stack, "/api/ingest", _event(f"after-{run}")).status_code == 201

    # Stored exactly as answered.
    for marker in outage_events:
        assert _events_with(stack, marker) == 1
    assert _timeline_with(stack, outage_batch) == BATCH

    # What the page fetches when its socket reopens: everything since the newest row it had.
    feed = httpx.get(
        f"{stack.base}/w/{stack.spaces['main']['org']}/events/feed.json", params={"after": last_seen},
        headers={"Cookie": f"{stack.cookie}={stack.session}"}, timeout=30,
    )
    assert feed.status_code == 200, feed.text[:300]
    items = feed.json()["items"]
    assert {i["message"] for i in items if i["kind"] == "event"} >= {*outage_events, f"after-{run}"}
    batch_items = [i for i in items if i["kind"] == "timeline" and i["requestId"] == batch_request_id]
    assert sorted(i["metadata"]["n"] for i in batch_items) == list(range(BATCH))

    log = stack.log_text()
    assert "Broadcast to workspace" in log and "live sessions will catch up over HTTP" in log
    assert "Cache unreachable (ConnectionError" in log
    assert "Internal Server Error" not in log
    up = ", ".join(f"{s * 1000:.0f}" for s in latencies_up)
    down = ", ".join(f"{s * 1000:.0f}" for s in latencies_down)
    print(f"\n[faults] request latency with Redis up {up} ms, with Redis down {down} ms")


def test_once_redis_is_back_a_dashboard_socket_is_live_again(stack):
    """The page retries its socket as Redis returns; the one accepted must then be live."""
    import aiohttp

    url, headers = _socket_url(stack, "revive")
    run = secrets.token_hex(4)

    async def scenario() -> tuple[float, float]:
        async with aiohttp.ClientSession() as session:
            async with await _connect_when_accepted(session, url, headers) as socket:
                response = await asyncio.to_thread(_post, stack, "/api/ingest", _event(f"a-{run}"), "revive")
                assert response.status_code == 201, response.text
                assert await _next_events(socket, timeout=10)
            stack.redis.kill()
            response = await asyncio.to_thread(_post, stack, "/api/ingest", _event(f"b-{run}"), "revive")
            assert response.status_code == 201, response.text
            stack.redis.start()
            back = time.monotonic()
            async with await _connect_when_accepted(session, url, headers) as socket:
                accepted = time.monotonic() - back
                response = await asyncio.to_thread(_post, stack, "/api/ingest", _event(f"c-{run}"), "revive")
                assert response.status_code == 201, response.text
                items = await _next_events(socket, timeout=10)
                assert items, "a socket accepted after Redis returned received nothing"
                assert [i["id"] for i in items] == [response.json()["id"]]
                return accepted, time.monotonic() - back

    try:
        accepted, live = asyncio.run(scenario())
    finally:
        if not stack.redis.running():
            stack.redis.start()
    print(f"\n[faults] after Redis's restart a socket was accepted in {accepted:.2f} s, "
          f"live in {live:.2f} s")


def test_a_dashboard_socket_that_missed_messages_while_redis_was_down_is_closed(stack):
    """The page fetches what it missed only when its socket reopens, so the server must close it."""
    import aiohttp

    url, headers = _socket_url(stack, "silent")
    run = secrets.token_hex(4)

    async def scenario() -> float:
        async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as socket:
            stack.redis.kill()
            killed = time.monotonic()
            response = await asyncio.to_thread(_post, stack, "/api/ingest", _event(f"missed-{run}"), "silent")
            assert response.status_code == 201, response.text
            items = await _next_events(socket, timeout=15)
            assert items is None, f"the socket stayed open 15 s after Redis died (then got {items})"
            return time.monotonic() - killed

    try:
        closed_after = asyncio.run(scenario())
    finally:
        if not stack.redis.running():
            stack.redis.start()
    print(f"\n[faults] the socket was closed {closed_after:.1f} s after Redis was killed")


# --- PostgreSQL stopped mid-run -------------------------------------------------------------------

@dataclass
class Sent:
    path: str
    marker: str
    status: int


def test_with_postgresql_stopped_the_apis_answer_json_errors_store_nothing_half_and_resume(stack):
    run = secrets.token_hex(4)
    sent: list[Sent] = []
    sent_lock = threading.Lock()
    stop = threading.Event()
    database_back = threading.Event()
    recovered_at: list[float] = []

    def client(worker: int) -> None:
        with httpx.Client(timeout=60) as http:
            n = 0
            while not stop.is_set():
                n += 1
                marker = f"pg-{run}-{worker}-{n}"
                # One client per API, one alternating: each API meets the outage.
                single = worker == 0 or (worker == 2 and n % 2 == 1)
                path, body = (("/api/ingest", _event(marker)) if single else
                              ("/api/v1/ingest/events", _batch(marker)))
                response = http.post(
                    f"{stack.base}{path}", content=json.dumps(body).encode(),
                    headers={"Authorization": f"Bearer {stack.spaces['main']['key']}",
                             "Content-Type": "application/json",
                             "Idempotency-Key": marker},
                )
                if response.status_code == 500:
                    _assert_internal_error(response)
                else:
                    assert response.status_code == (201 if path == "/api/ingest" else 202), response.text
                    if database_back.is_set() and not recovered_at:
                        recovered_at.append(time.monotonic())
                with sent_lock:
                    sent.append(Sent(path, marker, response.status_code))

    with ThreadPoolExecutor(3) as pool:
        clients = [pool.submit(client, worker) for worker in range(3)]
        try:
            time.sleep(1.0)
            stack.cluster.stop()  # immediate: in-flight transactions are cut
            stopped = time.monotonic()
            time.sleep(POOL_TIMEOUT_SECONDS + 1.5)
            starting = time.monotonic()
            stack.cluster.start()
            restarted = time.monotonic()
            database_back.set()
            deadline = restarted + 30
            while not recovered_at and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            stop.set()
            if not stack.cluster.running():
                stack.cluster.start()
        for future in clients:
            future.result()
    assert recovered_at, "no request succeeded within 30 s of PostgreSQL's restart"

    failed = [s for s in sent if s.status == 500]
    answered = [s for s in sent if s.status != 500]
    assert {s.path for s in failed} == {"/api/ingest", "/api/v1/ingest/events"}
    assert answered

    # A 500 may hide a commit whose acknowledgement was lost with the connection: the client
    # retries with the same Idempotency-Key, and gets either the stored answer or a fresh store.
    replays = 0
    for s in failed:
        body = _event(s.marker) if s.path == "/api/ingest" else _batch(s.marker)
        response = _post(stack, s.path, body, **{"Idempotency-Key": s.marker})
        assert response.status_code == (201 if s.path == "/api/ingest" else 202), response.text
        replays += response.headers.get("Idempotent-Replayed") == "true"

    # Nothing half-written: every request is stored exactly once and whole (a batch all or none).
    for s in sent:
        if s.path == "/api/ingest":
            assert _events_with(stack, s.marker) == 1, s
        else:
            assert _timeline_with(stack, s.marker) == BATCH, s
    # Nothing else from this run, and the quota counter moved with exactly the stored rows.
    events = _sql(stack, "SELECT count(*) FROM ingest_event WHERE message LIKE %s", f"pg-{run}-%")[0][0]
    timeline = _sql(stack, "SELECT count(*) FROM ingest_timelineevent WHERE metadata->>'batch' LIKE %s",
                    f"pg-{run}-%")[0][0]
    assert events == sum(s.path == "/api/ingest" for s in sent)
    assert timeline == BATCH * sum(s.path != "/api/ingest" for s in sent)
    assert _sql(stack, "SELECT sum(events) FROM billing_usage")[0][0] == (
        _sql(stack, "SELECT count(*) FROM ingest_event")[0][0]
        + _sql(stack, "SELECT count(*) FROM ingest_timelineevent")[0][0]
    )
    assert "<html" not in stack.log_text().lower()
    print(f"\n[faults] PostgreSQL down {restarted - stopped:.1f} s: {len(failed)} of {len(sent)} requests "
          f"answered 500 internal_error ({replays} of them had committed, replayed on retry); first "
          f"success {recovered_at[0] - restarted:.2f} s after the restart (which took "
          f"{restarted - starting:.2f} s, crash recovery included)")


def test_with_postgresql_stopped_a_fast_lane_request_is_answered_within_the_pool_timeout(stack):
    """A request waits for one pool at most, counted from its arrival: not for the fast lane's
    and then Django's, nor for a group that was already waiting."""
    run = secrets.token_hex(4)
    for path, body in (("/api/ingest", _event(f"warm-{run}")),
                       ("/api/v1/ingest/events", _batch(f"warm-{run}"))):
        assert _post(stack, path, body, space="outage").status_code in (201, 202)
    offset = len(stack.log_text())

    def timed(path: str, body: dict, delay: float) -> tuple[str, httpx.Response, float]:
        time.sleep(delay)
        started = time.monotonic()
        response = _post(stack, path, body, space="outage")
        return path, response, time.monotonic() - started

    # Two waves a second apart: the second queues behind a group already waiting.
    calls = [(path, body(f"down-{run}-{wave}-{i}"), wave)
             for wave in (0.0, 1.0)
             for path, body, n in (("/api/ingest", _event, 4), ("/api/v1/ingest/events", _batch, 2))
             for i in range(n)]
    stack.cluster.stop()
    try:
        with ThreadPoolExecutor(len(calls)) as pool:
            results = list(pool.map(lambda call: timed(*call), calls))
    finally:
        stack.cluster.start()
    for path, response, elapsed in results:
        _assert_internal_error(response)
        assert elapsed <= POOL_TIMEOUT_SECONDS + 2, (path, elapsed)
    time.sleep(0.2)  # the server's last lines reach its log file
    log = stack.log_text()[offset:]
    refusals = [line for line in log.splitlines() if "Database unavailable serving POST /api/" in line]
    assert len(refusals) == len(results), log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    deadline = time.monotonic() + 30
    while _post(stack, "/api/ingest", _event(f"back-{run}"), space="outage").status_code != 201:
        assert time.monotonic() < deadline, "no 201 within 30 s of PostgreSQL's restart"
        time.sleep(0.2)
    print(f"\n[faults] PostgreSQL stopped, {len(results)} fast-lane requests in two waves: slowest "
          f"answer {max(e for _, _, e in results):.2f} s (DB_POOL_TIMEOUT {POOL_TIMEOUT_SECONDS} s)")


# --- a page while the database cannot hand out a connection (Django's test client) ------------


def _fail_every_query(monkeypatch, error: Exception) -> None:
    def fail(self):
        raise error

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", fail)


def _unavailable() -> OperationalError:
    """What Django raises when its pool has no connection for DB_POOL_TIMEOUT."""
    error = OperationalError("couldn't get a connection after 3.00 sec")
    error.__cause__ = PoolTimeout("couldn't get a connection after 3.00 sec")
    return error


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def _page_with_a_session(settings) -> httpx.Response:
    client = Client(raise_request_exception=False)
    # A session cookie: its session is read from the database, in the middleware.
    client.cookies[settings.SESSION_COOKIE_NAME] = "s" * 32
    return client.get("/login/")


def test_a_dashboard_page_during_an_outage_logs_one_line_and_shows_the_500_page(
    settings, caplog, monkeypatch
):
    settings.DEBUG = False
    _fail_every_query(monkeypatch, _unavailable())
    response = _page_with_a_session(settings)
    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content  # the branded 500 page
    [record] = _warnings(caplog)
    assert record.name == "ackly.errors"
    assert record.exc_info is None
    assert record.getMessage() == (
        "Database unavailable serving GET /login/: couldn't get a connection after 3.00 sec"
    )


def test_an_api_request_during_an_outage_logs_one_line_and_answers_the_envelope(
    settings, caplog, monkeypatch
):
    settings.DEBUG = False
    _fail_every_query(monkeypatch, _unavailable())
    response = Client(raise_request_exception=False).post(
        "/api/ingest", {"status": "success"}, content_type="application/json",
        HTTP_AUTHORIZATION="Bearer ak_live_" + "k" * 40,
    )
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    [record] = _warnings(caplog)
    assert record.getMessage().startswith("Database unavailable serving POST /api/ingest: ")
    assert record.exc_info is None


def test_any_other_database_error_on_a_page_keeps_djangos_traceback(settings, caplog, monkeypatch):
    settings.DEBUG = False
    _fail_every_query(monkeypatch, ProgrammingError("relation does not exist"))
    response = _page_with_a_session(settings)
    assert response.status_code == 500
    [record] = _warnings(caplog)
    assert record.name == "django.request"
    assert record.getMessage() == "Internal Server Error: /login/"
    assert record.exc_info is not None
