"""The fast lane (ingest/fastlane.py) against the Django pipeline, on real servers.

Two kinds of process share one throwaway PostgreSQL database and Redis db 11: "fast"
(INGEST_FAST_LANE=1: Daphne, and uvicorn when it is installed) and "pipeline" (Daphne with
INGEST_FAST_LANE=0: every request through ingest/pipeline.py). What a client sees and what
ends up stored must be the same whichever answered.

How a test knows the fast lane (not a handover) served a request: the pipeline writes every
event in a transaction of its own, the fast lane writes every request that arrived while the
previous group was being written in ONE transaction. Rows of one transaction share their
`xmin`, so concurrent requests to the fast server leave fewer distinct `xmin` than rows
(test_the_fast_lane_writes_concurrent_requests_together_in_one_transaction), and a row
that shares its `xmin` with another was certainly written by the fast lane.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bench.run import die_with_parent
from tests.servers import ROOT, daphne, flush_redis, free_port, manage, postgres, redis_db_url, server_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.server]

REDIS_DB = 11  # this file's own Redis database (flushed before and after)
QUOTA = 30
PRO_EVENT_LIMIT = 5_000_000
PRO_BURST_PER_KEY = 500  # RateLimit-Limit with RATELIMIT_WINDOW_SECONDS = 1
KINDS = ("daphne", "uvicorn")  # the fast servers

try:
    import uvicorn  # noqa: F401  (in the bench extras, not in the test extras)

    NO_UVICORN = None
except ImportError as error:
    NO_UVICORN = f"uvicorn is not installed ({error}); the bench extras have it"

ID_BODY = re.compile(rb'\{"id":"[0-9a-f]{24}"\}')
REQUEST_ID = re.compile(r"req_[0-9A-Za-z]+")
STATIC_HEADERS = (
    "content-type", "allow", "x-frame-options", "x-content-type-options", "referrer-policy",
    "cross-origin-opener-policy",
)
SERVER_HEADERS = frozenset({"date", "server"})

# Workspaces and their sources (one key each): a test uses keys of its own, so burst windows,
# per-process key caches and quotas of one test never touch another's. `used` events of the
# period are reserved before the servers start; every workspace gets this period's counter row
# (so its first request is not handed over for the missing row).
SPEC = {
    "lanes": {"limit": None, "used": 0, "sources": [
        *(f"{name}-{kind}" for kind in KINDS
          for name in ("headers", "idem", "idem-race", "revoke", "bad", "group")),
        "group-pipeline", "dup-fast", "dup-pipeline", "dup-idem-fast", "dup-idem-pipeline",
    ]},
    "burst": {"limit": None, "used": 0, "sources": [f"burst-{kind}" for kind in KINDS]},
    **{f"capped-{kind}": {"limit": QUOTA, "used": 0, "sources": ["q"]} for kind in KINDS},
    **{f"split-{kind}": {"limit": QUOTA, "used": 0, "sources": ["q"]} for kind in KINDS},
    "full": {"limit": 1, "used": 1, "sources": ["touch-pipeline", "touch-daphne"]},
    "live": {"limit": None, "used": 0, "sources": ["live"]},
}

# Run in the servers' environment (manage.py shell -c): a user with a logged-in session who
# owns every workspace of SPEC; printed as one JSON line.
SETUP = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from bench.setup_data import logged_in_session
from billing.services import limits_of, reserve_quota
from sources.services import create_source
from workspaces.services import create_workspace

spec = json.loads(__SPEC__)
user = get_user_model().objects.create_user("fay-fast", "fay@example.com", "a-long-passphrase")
out = {"session": logged_in_session(user), "cookie": settings.SESSION_COOKIE_NAME,
       "orgs": {}, "ws_ids": {}, "keys": {}, "key_ids": {}, "sources": {}}
for name, ws_spec in spec.items():
    ws = create_workspace(name.title(), "pro", owner=user, event_limit=ws_spec["limit"])
    with transaction.atomic():
        reserve_quota(limits_of(ws), ws_spec["used"])
    out["orgs"][name] = ws.public_id
    out["ws_ids"][name] = ws.pk
    for slug in ws_spec["sources"]:
        source, issued = create_source(ws, slug.replace("-", " ").title(), slug=slug)
        out["keys"][f"{name}/{slug}"] = issued.secret
        out["key_ids"][f"{name}/{slug}"] = issued.key.public_id
        out["sources"][f"{name}/{slug}"] = {"id": source.public_id, "slug": source.slug,
                                            "name": source.name, "pk": source.pk}
print(json.dumps(out))
"""


@contextmanager
def _uvicorn(env: dict[str, str], log_path: Path, timeout: float = 30) -> Iterator[str]:
    """A uvicorn process serving ackly.asgi on a free port, as tests.servers.daphne does."""
    port = free_port()
    with open(log_path, "w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "ackly.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--lifespan", "off", "--no-access-log"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if httpx.get(f"{base}/login/", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"uvicorn did not start:\n{log.read()}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    """The fast and the pipeline Daphne on one fresh database and Redis db 11; URLs and data."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://…")
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs Redis: run with REDIS_URL=redis://…")
    database = f"ackly_test_fastlane_{secrets.token_hex(4)}"
    redis_url = redis_db_url(REDIS_DB)
    flush_redis(redis_url)
    env = server_env(REDIS_URL=redis_url, INGEST_FAST_LANE="1")
    env["DATABASE_URL"] = postgres(os.environ["DATABASE_URL"], f"CREATE DATABASE {database}", database)
    logs = tmp_path_factory.mktemp("fastlane")
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        script = SETUP.replace("__SPEC__", repr(json.dumps(SPEC)))
        data = json.loads(manage(env, "shell", "-c", script).strip().splitlines()[-1])
        with daphne(env, logs / "fast.log") as fast, daphne(
            {**env, "INGEST_FAST_LANE": "0"}, logs / "pipeline.log"
        ) as pipeline:
            yield {"fast": fast, "pipeline": pipeline, "env": env, "dsn": env["DATABASE_URL"],
                   "logs": logs, **data}
    finally:
        postgres(os.environ["DATABASE_URL"], f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        flush_redis(redis_url)


@pytest.fixture(scope="module", params=KINDS)
def fast(request, cluster) -> Iterator[tuple[str, str]]:
    """(kind, base URL) of a fast server: the Daphne one, then a uvicorn one."""
    if request.param == "daphne":
        yield "daphne", cluster["fast"]
        return
    if NO_UVICORN:
        pytest.skip(NO_UVICORN)
    with _uvicorn(cluster["env"], cluster["logs"] / "uvicorn.log") as base:
        yield "uvicorn", base


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One client shared by every thread (httpx.Client is thread-safe), enough connections."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    with httpx.Client(timeout=30, limits=limits) as c:
        yield c


# --- helpers --------------------------------------------------------------------------------


def _sql(cluster: dict, query: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(cluster["dsn"], autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _ingest(client: httpx.Client, base: str, key: str | None, body: dict | bytes,
            path: str = "/api/ingest", headers: dict | list | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = [("Content-Type", "application/json")]
    if key is not None:
        sent.append(("Authorization", f"Bearer {key}"))
    sent += list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    return client.post(f"{base}{path}", content=content, headers=sent)


def _all_at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls in threads released together by a barrier; their responses in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _body(tag: str, i: int) -> dict:
    """An event with every field set (non-ASCII text, a whole and a fractional duration)."""
    return {
        "status": ("success", "failure", "partial")[i % 3],
        "message": f"{tag} #{i} — café ✓",
        "description": f"line one\nline two of {i}",
        "eventType": "backup.finished",
        "externalId": f"ext-{tag}-{i}",
        "durationMs": 4820 if i % 2 else 12.5,
        "metadata": {"sizeBytes": 104857600, "ok": True, "nothing": None,
                     "nested": {"list": [1, "two", 3.5], "ünï": "cödé"}},
    }


def _stored(cluster: dict, ids: list[str]) -> dict[str, dict]:
    """The rows of these events by id, with their transaction's id (xmin)."""
    rows = _sql(
        cluster,
        "SELECT e.public_id, e.status, e.message, e.description, e.event_type, e.external_id, "
        "e.duration_ms, e.metadata, s.public_id, w.public_id, e.received_at, e.xmin::text "
        "FROM ingest_event e JOIN sources_source s ON s.id = e.source_id "
        "JOIN workspaces_workspace w ON w.id = e.workspace_id WHERE e.public_id = ANY(%s)",
        ids,
    )
    names = ("status", "message", "description", "event_type", "external_id", "duration_ms",
             "metadata", "source", "workspace", "received_at", "xmin")
    return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}


def _expected_row(body: dict) -> dict:
    duration = body.get("durationMs")
    return {
        "status": body["status"], "message": body.get("message", ""),
        "description": body.get("description", ""), "event_type": body.get("eventType", ""),
        "external_id": body.get("externalId", ""),
        "duration_ms": None if duration is None else float(duration),
        "metadata": body.get("metadata"),
    }


def _grouped(rows: dict[str, dict]) -> set[str]:
    """Ids of rows that share their transaction with another row: the fast lane wrote them."""
    per_xmin = Counter(row["xmin"] for row in rows.values())
    return {event_id for event_id, row in rows.items() if per_xmin[row["xmin"]] > 1}


def _usage(cluster: dict, workspace: str) -> int:
    [(events,)] = _sql(
        cluster, "SELECT events FROM billing_usage WHERE workspace_id = %s",
        cluster["ws_ids"][workspace],
    )
    return events


def _events_of(cluster: dict, workspace: str) -> int:
    [(n,)] = _sql(cluster, "SELECT count(*) FROM ingest_event WHERE workspace_id = %s",
                  cluster["ws_ids"][workspace])
    return n


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The error envelope of SPEC §5, its requestId the response's X-Request-Id."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "requestId", "docsUrl"}, error
    assert error["code"] == code, error
    assert error["message"]
    assert error["requestId"] == response.headers["x-request-id"]
    assert error["docsUrl"].endswith(f"/docs/errors/{code}/")


def _names(response: httpx.Response) -> set[str]:
    return {name.lower() for name in response.headers} - SERVER_HEADERS


def _one_second(run: Callable[[], list[httpx.Response]], attempts: int = 5) -> list[httpx.Response]:
    """The responses of `run`, redone until all of it fell within one rate-limit window
    (RATELIMIT_WINDOW_SECONDS = 1: whole seconds of the shared clock)."""
    for _ in range(attempts):
        time.sleep(1.01 - time.time() % 1)  # just after a window begins
        started = time.time()
        responses = run()
        if int(time.time()) == int(started):
            return responses
    pytest.fail(f"the sequence never fit in one second in {attempts} attempts")


# --- the fast lane serves, and serves as the pipeline does -----------------------------------


def test_the_fast_lane_writes_concurrent_requests_together_in_one_transaction(fast, cluster, client):
    kind, base = fast
    key = cluster["keys"][f"lanes/group-{kind}"]
    for attempt in range(3):
        tag = f"group-{kind}-{attempt}-{secrets.token_hex(3)}"
        responses = _all_at_once(
            [lambda i=i, tag=tag: _ingest(client, base, key, _body(tag, i)) for i in range(40)]
        )
        assert [r.status_code for r in responses] == [201] * 40, [r.text for r in responses]
        rows = _stored(cluster, [r.json()["id"] for r in responses])
        assert len(rows) == 40
        if _grouped(rows):
            break
    # 40 requests in fewer transactions than requests: grouped, so the fast lane served them.
    assert len({row["xmin"] for row in rows.values()}) < 40


def test_the_pipeline_server_writes_each_request_in_a_transaction_of_its_own(cluster, client):
    # The contrast that makes the test above mean something: no grouping without the fast lane.
    key = cluster["keys"]["lanes/group-pipeline"]
    tag = f"group-pipeline-{secrets.token_hex(3)}"
    responses = _all_at_once(
        [lambda i=i: _ingest(client, cluster["pipeline"], key, _body(tag, i)) for i in range(30)]
    )
    assert [r.status_code for r in responses] == [201] * 30, [r.text for r in responses]
    rows = _stored(cluster, [r.json()["id"] for r in responses])
    assert len(rows) == 30
    assert _grouped(rows) == set()


def test_a_fast_201_carries_the_pipelines_headers_and_stores_every_field_the_same(
    fast, cluster, client
):
    kind, base = fast
    key = cluster["keys"][f"lanes/headers-{kind}"]
    n_fast, n_pipeline = 16, 8
    for attempt in range(3):
        tag = f"headers-{kind}-{attempt}-{secrets.token_hex(3)}"
        used_before = _usage(cluster, "lanes")
        bodies = [_body(tag, i) for i in range(n_fast + n_pipeline)]
        bases = [base] * n_fast + [cluster["pipeline"]] * n_pipeline
        responses = _all_at_once(
            [lambda b=b, body=body: _ingest(client, b, key, body)
             for b, body in zip(bases, bodies, strict=True)]
        )
        assert [r.status_code for r in responses] == [201] * len(bodies), [r.text for r in responses]
        ids = [r.json()["id"] for r in responses]
        rows = _stored(cluster, ids)
        grouped = _grouped({i: rows[i] for i in ids[:n_fast]})
        if grouped:
            break
    assert grouped, "no request to the fast server was written by the fast lane"
    fast_responses, pipeline_responses = responses[:n_fast], responses[n_fast:]
    proven = [r for r in fast_responses if r.json()["id"] in grouped]

    # The same header names (bar the servers' own date/server), the same static values.
    reference = pipeline_responses[0]
    assert all(_names(r) == _names(reference) for r in pipeline_responses)
    # Every fast response (`proven` ones were certainly the fast lane's own 201s).
    for response in fast_responses:
        assert _names(response) == _names(reference), (proven[0].headers, reference.headers)
        for name in STATIC_HEADERS:
            assert response.headers[name] == reference.headers[name], name

    # Bodies: {"id":"<24 hex>"} exactly; request ids well formed and all different.
    assert all(ID_BODY.fullmatch(r.content) for r in responses), [r.content for r in responses]
    request_ids = [r.headers["x-request-id"] for r in responses]
    assert all(REQUEST_ID.fullmatch(rid) for rid in request_ids)
    assert len(set(request_ids)) == len(responses)

    # Quota headers agree across lanes: one limit, one reset (this period's end), and the
    # remaining counts are exactly the 24 consecutive values the 24 reservations left.
    [(period_end,)] = _sql(cluster, "SELECT period_end FROM billing_usage WHERE workspace_id = %s",
                           cluster["ws_ids"]["lanes"])
    assert {r.headers["x-quota-limit"] for r in responses} == {str(PRO_EVENT_LIMIT)}
    assert {r.headers["x-quota-reset"] for r in responses} == {str(int(period_end.timestamp()))}
    remaining = sorted(int(r.headers["x-quota-remaining"]) for r in responses)
    top = PRO_EVENT_LIMIT - used_before
    assert remaining == list(range(top - len(responses), top))
    assert {r.headers["ratelimit-limit"] for r in responses} == {str(PRO_BURST_PER_KEY)}
    assert {r.headers["ratelimit-reset"] for r in responses} == {"1"}
    assert all(0 <= int(r.headers["ratelimit-remaining"]) < PRO_BURST_PER_KEY for r in responses)

    # Every field stored as sent, whichever lane stored it.
    source = cluster["sources"][f"lanes/headers-{kind}"]["id"]
    now = datetime.now(UTC)
    for event_id, body in zip(ids, bodies, strict=True):
        row = rows[event_id]
        assert {k: row[k] for k in _expected_row(body)} == _expected_row(body), event_id
        assert (row["source"], row["workspace"]) == (source, cluster["orgs"]["lanes"])
        assert abs((now - row["received_at"]).total_seconds()) < 60


def test_an_idempotent_retry_through_the_fast_server_replays_the_first_answer_and_stores_once(
    fast, cluster, client
):
    kind, base = fast
    key = cluster["keys"][f"lanes/idem-{kind}"]
    marker = f"idem-{kind}-{secrets.token_hex(4)}"
    body = json.dumps({"status": "success", "message": marker}).encode()
    headers = {"Idempotency-Key": marker}
    used_before = _usage(cluster, "lanes")

    first = _ingest(client, base, key, body, headers=headers)
    again = _ingest(client, base, key, body, headers=headers)
    elsewhere = _ingest(client, cluster["pipeline"], key, body, headers=headers)
    slash = _ingest(client, base, key, body, path="/api/ingest/", headers=headers)

    assert first.status_code == 201, first.text
    assert ID_BODY.fullmatch(first.content)
    assert "idempotent-replayed" not in first.headers
    for replay in (again, elsewhere, slash):
        assert replay.status_code == 201, replay.text
        assert replay.content == first.content
        assert replay.headers["idempotent-replayed"] == "true"
    assert _sql(cluster, "SELECT public_id FROM ingest_event WHERE message = %s", marker) == [
        (first.json()["id"],)
    ]
    assert _sql(cluster, "SELECT count(*) FROM ingest_idempotencyrecord WHERE key = %s", marker) == [(1,)]
    assert _usage(cluster, "lanes") == used_before + 1

    other = json.dumps({"status": "failure", "message": marker}).encode()
    _assert_error(_ingest(client, base, key, other, headers=headers), 409, "idempotency_key_reused")
    assert _sql(cluster, "SELECT count(*) FROM ingest_event WHERE message = %s", marker) == [(1,)]
    assert _usage(cluster, "lanes") == used_before + 1


@pytest.mark.parametrize("split", [False, True], ids=["all-fast", "fast-and-pipeline"])
def test_ten_identical_requests_at_once_store_one_event_and_all_get_its_answer(
    fast, cluster, client, split
):
    kind, base = fast
    key = cluster["keys"][f"lanes/idem-race-{kind}"]
    for round_ in range(3):
        marker = f"race-{kind}-{split}-{round_}-{secrets.token_hex(4)}"
        body = json.dumps({"status": "success", "message": marker}).encode()
        used_before = _usage(cluster, "lanes")
        bases = [base, cluster["pipeline"]] * 5 if split else [base] * 10
        responses = _all_at_once(
            [lambda b=b, body=body, marker=marker: _ingest(
                client, b, key, body, headers={"Idempotency-Key": marker}) for b in bases]
        )
        assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
        assert len({r.content for r in responses}) == 1
        replayed = sorted(r.headers.get("idempotent-replayed", "") for r in responses)
        assert replayed == [""] + ["true"] * 9
        rows = _sql(cluster, "SELECT public_id FROM ingest_event WHERE message = %s", marker)
        assert rows == [(responses[0].json()["id"],)]
        assert _usage(cluster, "lanes") == used_before + 1


@pytest.mark.parametrize("split", [False, True], ids=["all-fast", "fast-and-pipeline"])
def test_the_quota_is_exact_when_80_requests_race_for_its_last_30_events(fast, cluster, client, split):
    kind, base = fast
    workspace = f"{'split' if split else 'capped'}-{kind}"
    key = cluster["keys"][f"{workspace}/q"]
    bases = [base, cluster["pipeline"]] * 40 if split else [base] * 80
    responses = _all_at_once(
        [lambda i=i, b=b: _ingest(client, b, key, {"status": "success", "message": f"q{i}"})
         for i, b in enumerate(bases)]
    )
    accepted = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(accepted) == QUOTA, Counter(r.status_code for r in responses)
    for response in refused:
        _assert_error(response, 429, "quota_exceeded")
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["x-quota-remaining"] == "0"
    assert sorted(int(r.headers["x-quota-remaining"]) for r in accepted) == list(range(QUOTA))
    assert _events_of(cluster, workspace) == QUOTA
    assert _usage(cluster, workspace) == QUOTA


def test_a_key_revoked_by_the_command_is_refused_by_the_fast_server_on_its_next_request(
    fast, cluster, client
):
    kind, base = fast
    name = f"lanes/revoke-{kind}"
    key = cluster["keys"][name]
    # Used before, so the fast server holds the key's look-up in its own memory too.
    for _ in range(2):
        assert _ingest(client, base, key, {"status": "success"}).status_code == 201

    manage(cluster["env"], "revokekey", cluster["key_ids"][name])

    marker = f"after-revocation-{kind}"
    for target in (base, base, cluster["pipeline"]):
        _assert_error(
            _ingest(client, target, key, {"status": "success", "message": marker}), 401, "key_revoked"
        )
    assert _sql(cluster, "SELECT count(*) FROM ingest_event WHERE message = %s", marker) == [(0,)]


def test_every_request_counts_once_against_the_burst_window_served_or_handed_over(
    fast, cluster, client
):
    kind, base = fast
    key = cluster["keys"][f"burst/burst-{kind}"]
    pipeline = cluster["pipeline"]

    def sequence() -> list[httpx.Response]:
        idem = {"Idempotency-Key": f"burst-{secrets.token_hex(6)}"}
        first = json.dumps({"status": "success", "message": "burst"}).encode()
        other = json.dumps({"status": "failure", "message": "burst"}).encode()
        return [
            _ingest(client, base, key, {"status": "success"}),         # fast lane
            _ingest(client, base, key, first, headers=idem),          # fast lane, claims the key
            _ingest(client, base, key, first, headers=idem),          # handed over after counting: replay
            _ingest(client, pipeline, key, {"status": "success"}),    # pipeline server
            _ingest(client, base, key, b"{not json"),                 # handed over before counting: 400
            _ingest(client, base, key, {"status": "success"}, path="/api/ingest?dryRun=true"),
            _ingest(client, base, key, other, headers=idem),          # handed over after counting: 409
            _ingest(client, base, key, {"status": "success"}),        # fast lane again
        ]

    responses = _one_second(sequence)
    assert [r.status_code for r in responses] == [201, 201, 201, 201, 400, 201, 409, 201], [
        r.text for r in responses
    ]
    assert responses[2].headers["idempotent-replayed"] == "true"
    remaining = [int(r.headers["ratelimit-remaining"]) for r in responses]
    # One window, one key: each request took exactly one from it (a handed-over request
    # counted by the fast lane and again by the pipeline would take two).
    assert remaining == list(range(remaining[0], remaining[0] - len(responses), -1)), remaining
    assert {r.headers["ratelimit-limit"] for r in responses} == {str(PRO_BURST_PER_KEY)}


def test_bad_requests_through_the_fast_server_get_the_documented_errors_and_store_nothing(
    fast, cluster, client
):
    kind, base = fast
    key = cluster["keys"][f"lanes/bad-{kind}"]
    unknown_key = "ak_live_" + "A" * 40
    rows_before, used_before = _events_of(cluster, "lanes"), _usage(cluster, "lanes")
    too_large = b'{"status":"success","metadata":{"pad":"' + b"x" * (1024 * 1024) + b'"}}'

    _assert_error(_ingest(client, base, key, b'{"status": "success",'), 400, "invalid_body")
    _assert_error(_ingest(client, base, key, b"[1, 2]"), 400, "invalid_body")
    _assert_error(_ingest(client, base, key, {"message": "no status"}), 400, "invalid_body")
    _assert_error(_ingest(client, base, key, {"status": "success", "durationMs": -1}), 400,
                  "invalid_body")
    _assert_error(_ingest(client, base, key, {"status": "success"},
                          headers={"Idempotency-Key": "k" * 201}), 400, "invalid_body")
    _assert_error(_ingest(client, base, None, {"status": "success"}), 401, "missing_authorization")
    _assert_error(_ingest(client, base, "not-a-key", {"status": "success"}), 401, "invalid_key")
    _assert_error(_ingest(client, base, unknown_key, {"status": "success"}), 401, "invalid_key")
    _assert_error(_ingest(client, base, key, too_large), 413, "payload_too_large")

    dry = _ingest(client, base, key, {"status": "success", "message": "dry"},
                  path="/api/ingest?dryRun=true")
    assert dry.status_code == 201, dry.text
    assert ID_BODY.fullmatch(dry.content)
    assert _sql(cluster, "SELECT count(*) FROM ingest_event WHERE public_id = %s",
                dry.json()["id"]) == [(0,)]

    assert _events_of(cluster, "lanes") == rows_before
    assert _usage(cluster, "lanes") == used_before


def test_events_ingested_through_the_fast_server_reach_a_dashboard_socket_as_the_pipelines_do(
    cluster, client
):
    import aiohttp

    key = cluster["keys"]["live/live"]
    source = cluster["sources"]["live/live"]
    bases = [cluster["fast"]] * 5 + [cluster["pipeline"]]

    async def scenario() -> tuple:
        host = urlsplit(cluster["fast"]).netloc
        headers = {"Cookie": f"{cluster['cookie']}={cluster['session']}", "Origin": f"http://{host}"}
        items: dict[str, dict] = {}
        frames: list[set[str]] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(
            f"ws://{host}/ws/workspaces/{cluster['orgs']['live']}/", headers=headers,
            timeout=aiohttp.ClientWSTimeout(ws_close=10),
        ) as ws:
            # Subscribed once accepted: five at once through the fast lane, one through the
            # pipeline; again (up to 3 rounds) until two of the five shared a transaction.
            for round_ in range(3):
                bodies = [_body(f"live-{round_}-{secrets.token_hex(3)}", i) for i in range(6)]
                responses = await asyncio.to_thread(_all_at_once, [
                    lambda b=b, body=body: _ingest(client, b, key, body)
                    for b, body in zip(bases, bodies, strict=True)
                ])
                assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
                ids = [r.json()["id"] for r in responses]
                while not set(ids) <= set(items):
                    message = await ws.receive(timeout=15)
                    assert message.type == aiohttp.WSMsgType.TEXT, message
                    payload = json.loads(message.data)
                    if payload["type"] == "events":
                        assert set(payload) == {"type", "items"}
                        items.update({item["id"]: item for item in payload["items"]})
                        frames.append({item["id"] for item in payload["items"]})
                rows = await asyncio.to_thread(_stored, cluster, ids)
                grouped = _grouped({i: rows[i] for i in ids[:5]})
                if grouped:
                    break
            return bodies, ids, rows, frames, grouped, items

    bodies, ids, rows, frames, grouped, items = asyncio.run(scenario())
    # The fast lane wrote (and so published) some of them itself; one transaction's events
    # went out in one message, so they arrive in one frame.
    assert grouped, "no event sent to the fast server was written by the fast lane"
    for xmin in {rows[i]["xmin"] for i in grouped}:
        together = {i for i in grouped if rows[i]["xmin"] == xmin}
        assert any(together <= frame for frame in frames), (together, frames)
    # Each item as the pipeline's (the last one) looks, with the stored values.
    pipeline_item = items[ids[-1]]
    for event_id, body in zip(ids, bodies, strict=True):
        item = items[event_id]
        assert set(item) == set(pipeline_item)
        assert item == {
            "kind": "event", "id": event_id, "status": body["status"], "message": body["message"],
            "description": body["description"], "eventType": body["eventType"],
            "externalId": body["externalId"], "durationMs": body["durationMs"],
            "metadata": body["metadata"],
            "source": {k: source[k] for k in ("id", "slug", "name")},
            "receivedAt": rows[event_id]["received_at"].astimezone(UTC).isoformat().replace(
                "+00:00", "Z"),
        }


# --- where the two lanes once answered differently (bugs these tests found, now fixed) ------


def _lane(cluster: dict, lane: str) -> str:
    return cluster["pipeline"] if lane == "pipeline" else cluster["fast"]


@pytest.mark.parametrize("lane", ["pipeline", "fast"])
def test_a_request_with_two_authorization_headers_is_refused_as_the_pipeline_refuses_it(
    cluster, client, lane
):
    key = cluster["keys"][f"lanes/dup-{lane}"]
    marker = f"two-auth-{lane}-{secrets.token_hex(3)}"
    response = _ingest(client, _lane(cluster, lane), None, {"status": "success", "message": marker},
                       headers=[("Authorization", f"Bearer {key}")] * 2)
    stored = _sql(cluster, "SELECT count(*) FROM ingest_event WHERE message = %s", marker)
    assert (response.status_code, stored) == (401, [(0,)]), response.text
    _assert_error(response, 401, "invalid_key")


@pytest.mark.parametrize("lane", ["pipeline", "fast"])
def test_two_idempotency_key_headers_name_the_key_the_pipeline_stores(cluster, client, lane):
    # Django reads `Idempotency-Key: a` + `Idempotency-Key: b` as the key "a,b": a retry sent
    # with that one header replays. The fast lane stores the request under "b" instead.
    key = cluster["keys"][f"lanes/dup-idem-{lane}"]
    base = _lane(cluster, lane)
    a, b = f"dup-{lane}-{secrets.token_hex(3)}", f"dup-{lane}-{secrets.token_hex(3)}"
    body = json.dumps({"status": "success", "message": a}).encode()
    first = _ingest(client, base, key, body, headers=[("Idempotency-Key", a), ("Idempotency-Key", b)])
    assert first.status_code == 201, first.text
    retry = _ingest(client, base, key, body, headers={"Idempotency-Key": f"{a},{b}"})
    assert retry.status_code == 201, retry.text
    assert (retry.headers.get("idempotent-replayed"), retry.content) == ("true", first.content)
    assert _sql(cluster, "SELECT count(*) FROM ingest_event WHERE message = %s", a) == [(1,)]


@pytest.mark.parametrize("lane", ["pipeline", "fast"])
def test_a_key_whose_request_is_refused_over_quota_still_records_its_last_use(cluster, client, lane):
    kind = "pipeline" if lane == "pipeline" else "daphne"
    name = f"full/touch-{kind}"
    response = _ingest(client, _lane(cluster, lane), cluster["keys"][name], {"status": "success"})
    _assert_error(response, 429, "quota_exceeded")
    [(last_used,)] = _sql(cluster, "SELECT last_used_at FROM sources_key WHERE public_id = %s",
                          cluster["key_ids"][name])
    assert last_used is not None
