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
import re
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import (
    all_at_once,
    collected_static,
    daphne,
    dashboard_socket,
    manage,
    own_database,
    own_redis,
    require_postgres_and_redis,
    server_env,
    uvicorn,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.server]

REDIS_DB = 11  # this file's own Redis database (its keys cleared before and after)
QUOTA = 30
PRO_EVENT_LIMIT = 5_000_000
PRO_BURST_PER_KEY = 500  # RateLimit-Limit with RATELIMIT_WINDOW_SECONDS = 1
KINDS = ("daphne", "uvicorn")  # the fast servers

ID_BODY = re.compile(rb'\{"id":"[0-9a-f]{24}"\}')
REQUEST_ID = re.compile(r"req_[0-9A-Za-z]+")
STATIC_HEADERS = (
    "content-type", "allow", "x-frame-options", "x-content-type-options", "referrer-policy",
    "cross-origin-opener-policy",
)
SERVER_HEADERS = frozenset({"date", "server"})

# v1 (`POST /api/v1/ingest/events`): the whitelist of every v1 source (one type not ASCII:
# both lanes must escape it alike in their 202s) and the workers seeded in every v1 workspace,
# so a batch naming them can be served by the fast lane (it never creates a worker).
V1_TYPES = ["ticket.resolved", "call.logged", "d\u00e9ploiement.fini"]
V1_WORKERS = [
    {"externalId": "alex", "email": "alex.chen@example.com", "name": "Alex Chen"},
    {"externalId": None, "email": "sam.lee@example.com", "name": "sam.lee"},
    {"externalId": "kim", "email": None, "name": "Kim"},
]
V1_QUOTA = 25
V1_WORKSPACE = {"limit": None, "used": 0, "types": V1_TYPES, "workers": V1_WORKERS}

# Workspaces and their sources (one key each): a test uses keys of its own, so burst windows,
# per-process key caches and quotas of one test never touch another's. `used` events of the
# period are reserved before the servers start; every workspace gets this period's counter row
# (so its first request is not handed over for the missing row).
SPEC = {
    "lanes": {"limit": None, "used": 0, "sources": [
        *(f"{name}-{kind}" for kind in KINDS
          for name in ("headers", "idem", "idem-race", "revoke", "bad", "group")),
        "group-pipeline", "dup-fast", "dup-pipeline", "dup-idem-fast", "dup-idem-pipeline",
        "metrics", "guess",
    ]},
    "burst": {"limit": None, "used": 0, "sources": [f"burst-{kind}" for kind in KINDS]},
    **{f"capped-{kind}": {"limit": QUOTA, "used": 0, "sources": ["q"]} for kind in KINDS},
    **{f"split-{kind}": {"limit": QUOTA, "used": 0, "sources": ["q"]} for kind in KINDS},
    "full": {"limit": 1, "used": 1, "sources": ["touch-pipeline", "touch-daphne"]},
    "live": {"limit": None, "used": 0, "sources": ["live"]},
    "secure": {"limit": None, "used": 0, "sources": ["fast", "pipeline"]},
    # v1 workspaces: whitelisted sources, seeded workers ("v1-other" has a worker of its own
    # only, "v1-free" is on the Free plan: no developer API).
    "v1": {**V1_WORKSPACE, "sources": [
        *(f"{test}-{kind}" for kind in KINDS
          for test in ("served", "shape", "idem", "race", "invalid", "new", "tenant")),
        "served-pipeline", "shape-pipeline", "metrics",
    ]},
    "v1-live": {**V1_WORKSPACE, "sources": ["live"]},
    **{f"v1-{c}-{kind}": {**V1_WORKSPACE, "limit": V1_QUOTA, "sources": ["q"]}
       for c in ("capped", "split") for kind in KINDS},
    "v1-other": {**V1_WORKSPACE, "sources": ["other"],
                 "workers": [{"externalId": "stranger", "email": None, "name": "Stranger"}]},
    "v1-free": {**V1_WORKSPACE, "plan": "free", "sources": ["free"]},
    # A worker deleted while a batch naming it is being written (one workspace per fast server).
    **{f"v1-gone-{kind}": {**V1_WORKSPACE, "sources": ["gone"], "workers": [
        *V1_WORKERS, {"externalId": None, "email": None, "name": "Doomed"}]} for kind in KINDS},
    **{f"v1-free-{lane}": {**V1_WORKSPACE, "plan": "free", "workers": [], "sources": ["burst"]}
       for lane in ("pipeline", *KINDS)},
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
from workspaces.models import Worker
from workspaces.services import create_workspace

spec = json.loads(__SPEC__)
user = get_user_model().objects.create_user("fay-fast", "fay@example.com", "a-long-passphrase")
out = {"session": logged_in_session(user), "cookie": settings.SESSION_COOKIE_NAME,
       "orgs": {}, "ws_ids": {}, "keys": {}, "key_ids": {}, "sources": {}, "workers": {}}
for name, ws_spec in spec.items():
    ws = create_workspace(name.title(), ws_spec.get("plan", "pro"), owner=user,
                          event_limit=ws_spec["limit"])
    with transaction.atomic():
        reserve_quota(limits_of(ws), ws_spec["used"])
    out["orgs"][name] = ws.public_id
    out["ws_ids"][name] = ws.pk
    for slug in ws_spec["sources"]:
        source, issued = create_source(ws, slug.replace("-", " ").title(), slug=slug,
                                       allowed_event_types=ws_spec.get("types", ()))
        out["keys"][f"{name}/{slug}"] = issued.secret
        out["key_ids"][f"{name}/{slug}"] = issued.key.public_id
        out["sources"][f"{name}/{slug}"] = {"id": source.public_id, "slug": source.slug,
                                            "name": source.name, "pk": source.pk}
    for seed in ws_spec.get("workers", []):
        worker = Worker.objects.create(workspace=ws, external_id=seed["externalId"],
                                       email=seed["email"], display_name=seed["name"])
        out["workers"][f"{name}/{seed['name']}"] = {
            "id": worker.public_id, "pk": worker.pk, "displayName": worker.display_name}
print(json.dumps(out))
"""




@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    """The fast and the pipeline Daphne on one fresh database and Redis db 11; URLs and data."""
    require_postgres_and_redis()
    logs = tmp_path_factory.mktemp("fastlane")
    with own_redis(REDIS_DB) as redis_url, own_database(
        server_env(REDIS_URL=redis_url, INGEST_FAST_LANE="1"), "ackly_test_fastlane"
    ) as env:
        script = SETUP.replace("__SPEC__", repr(json.dumps(SPEC)))
        data = json.loads(manage(env, "shell", "-c", script).strip().splitlines()[-1])
        with daphne(env, logs / "fast.log") as fast, daphne(
            {**env, "INGEST_FAST_LANE": "0"}, logs / "pipeline.log"
        ) as pipeline:
            yield {"fast": fast, "pipeline": pipeline, "env": env, "dsn": env["DATABASE_URL"],
                   "logs": logs, **data}


@pytest.fixture(scope="module", params=KINDS)
def fast(request, cluster) -> Iterator[tuple[str, str]]:
    """(kind, base URL) of a fast server: the Daphne one, then a uvicorn one."""
    if request.param == "daphne":
        yield "daphne", cluster["fast"]
        return
    with uvicorn(cluster["env"], cluster["logs"] / "uvicorn.log") as base:
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
    """The error envelope, its requestId the response's X-Request-Id."""
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
        responses = all_at_once(
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
    responses = all_at_once(
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
        responses = all_at_once(
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
        responses = all_at_once(
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
    responses = all_at_once(
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
    # Chunked, without a Content-Length: the fast lane reads only what BodyLimitGuard lets
    # through (limit + 1 bytes) and hands it over; the pipeline answers the same 413.
    chunks = iter([too_large[i:i + 65536] for i in range(0, len(too_large), 65536)])
    chunked = client.post(f"{base}/api/ingest", content=chunks, headers=[
        ("Content-Type", "application/json"), ("Authorization", f"Bearer {key}"),
    ])
    _assert_error(chunked, 413, "payload_too_large")

    dry = _ingest(client, base, key, {"status": "success", "message": "dry"},
                  path="/api/ingest?dryRun=true")
    assert dry.status_code == 201, dry.text
    assert ID_BODY.fullmatch(dry.content)
    assert _sql(cluster, "SELECT count(*) FROM ingest_event WHERE public_id = %s",
                dry.json()["id"]) == [(0,)]

    assert _events_of(cluster, "lanes") == rows_before
    assert _usage(cluster, "lanes") == used_before


def _dashboard_socket(cluster: dict, org: str):
    """A logged-in dashboard's websocket on the fast server, for workspace `org` of the cluster."""
    return dashboard_socket(cluster["fast"], cluster["orgs"][org], cluster["cookie"], cluster["session"])


def test_events_ingested_through_the_fast_server_reach_a_dashboard_socket_as_the_pipelines_do(
    cluster, client
):
    import aiohttp

    key = cluster["keys"]["live/live"]
    source = cluster["sources"]["live/live"]
    bases = [cluster["fast"]] * 5 + [cluster["pipeline"]]

    async def scenario() -> tuple:
        items: dict[str, dict] = {}
        frames: list[set[str]] = []
        async with _dashboard_socket(cluster, "live") as ws:
            # Subscribed once accepted: five at once through the fast lane, one through the
            # pipeline; again (up to 3 rounds) until two of the five shared a transaction.
            for round_ in range(3):
                bodies = [_body(f"live-{round_}-{secrets.token_hex(3)}", i) for i in range(6)]
                responses = await asyncio.to_thread(all_at_once, [
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


def test_an_integer_beyond_64_bits_reaches_the_socket_from_both_lanes(cluster, client):
    """msgpack (the Redis layer's format) holds 64 bits; JSON, and so metadata, has no bound.
    Both lanes publish through ingest.broadcast.serialized (found by the contract fuzzing)."""
    import aiohttp

    key = cluster["keys"]["live/live"]
    logs = {base: cluster["logs"] / name for base, name in (
        (cluster["fast"], "fast.log"), (cluster["pipeline"], "pipeline.log"))}
    for log in logs.values():
        assert log.exists(), log
    sizes = {base: log.stat().st_size for base, log in logs.items()}

    async def scenario() -> dict[str, dict]:
        items: dict[str, dict] = {}
        async with _dashboard_socket(cluster, "live") as ws:
            ids = {}
            for base in logs:
                body = {**_body("big", 1), "metadata": {"big": 2**70, "fits": 2**63}}
                response = await asyncio.to_thread(_ingest, client, base, key, body)
                assert response.status_code == 201, response.text
                ids[base] = response.json()["id"]
            while not set(ids.values()) <= set(items):
                message = await ws.receive(timeout=15)
                assert message.type == aiohttp.WSMsgType.TEXT, message
                payload = json.loads(message.data)
                if payload["type"] == "events":
                    items.update({item["id"]: item for item in payload["items"]})
        return {base: items[event_id] for base, event_id in ids.items()}

    for base, item in asyncio.run(scenario()).items():
        assert item["metadata"] == {"big": float(2**70), "fits": 2**63}, base
        with open(logs[base], "rb") as f:
            f.seek(sizes[base])
            assert b"Traceback" not in f.read(), base
    rows = _sql(cluster, "SELECT metadata->>'big' FROM ingest_event WHERE metadata ? 'big'")
    assert rows and {big for (big,) in rows} == {str(2**70)}  # stored with every digit


# --- where the two lanes once answered differently (bugs these tests found, now fixed) ------


@pytest.fixture(scope="module")
def production(cluster) -> Iterator[dict[str, str]]:
    """A fast and a pipeline Daphne with production settings (DEBUG=0: the SSL redirect, HSTS,
    X-Forwarded-Proto trusted), on the cluster's database and Redis."""
    env = {
        **cluster["env"], "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "1",
        "STATIC_ROOT": collected_static(),
    }
    probe = "/openapi/v1.yaml"
    with daphne({**env, "INGEST_FAST_LANE": "1"}, cluster["logs"] / "secure-fast.log",
                probe=probe) as fast, daphne(
        {**env, "INGEST_FAST_LANE": "0"}, cluster["logs"] / "secure-pipeline.log", probe=probe
    ) as pipeline:
        yield {"fast": fast, "pipeline": pipeline}


def test_behind_a_tls_proxy_a_fast_201_carries_the_pipelines_security_headers_and_hsts(
    cluster, client, production
):
    https = {"X-Forwarded-Proto": "https"}
    for attempt in range(3):
        tag = f"secure-{attempt}-{secrets.token_hex(3)}"
        lanes = ["fast"] * 12 + ["pipeline"] * 4
        bodies = [_body(tag, i) for i in range(len(lanes))]
        calls = [
            lambda lane=lane, body=body: _ingest(
                client, production[lane], cluster["keys"][f"secure/{lane}"], body, headers=https)
            for lane, body in zip(lanes, bodies, strict=True)
        ]
        responses = all_at_once(calls)
        assert [r.status_code for r in responses] == [201] * 16, [r.text for r in responses]
        ids = [r.json()["id"] for r in responses]
        grouped = _grouped(_stored(cluster, ids[:12]))
        if grouped:
            break
    assert grouped, "no request to the fast server was written by the fast lane"
    reference = responses[-1]
    assert reference.headers["strict-transport-security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )
    for response in responses[:12]:
        assert _names(response) == _names(reference)
        for name in (*STATIC_HEADERS, "strict-transport-security"):
            assert response.headers[name] == reference.headers[name], name


def test_over_plain_http_with_ssl_redirect_on_both_lanes_redirect_and_store_nothing(
    cluster, client, production
):
    tag = f"plain-{secrets.token_hex(3)}"
    for lane in ("fast", "pipeline"):
        response = _ingest(client, production[lane], cluster["keys"][f"secure/{lane}"],
                           _body(tag, 0))
        assert response.status_code == 301, response.text
        assert response.headers["location"].startswith("https://")
    assert _sql(cluster, "SELECT count(*) FROM ingest_event WHERE message LIKE %s", f"{tag} %") == [(0,)]


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


# --- v1 batches (`POST /api/v1/ingest/events`) through the fast lane -------------------------
#
# How a test knows the fast lane (not a handover) stored a batch: both lanes write a batch in
# one transaction, but the pipeline writes its rows and quota in a savepoint
# (ingest.api_v1.EventsView._store_all_if_they_fit) and its idempotency record after it, in
# the outer transaction, so its rows' xmin (the savepoint's subtransaction id) is not the
# record's. The fast lane writes rows, quota and record in one plain transaction: the rows
# share their xmin with the record (test_..._keeps_its_rows_apart_from_its_record is the
# contrast). Hence every batch to prove is sent with an Idempotency-Key.

V1 = "/api/v1/ingest/events"
CATEGORIES = ("communication", "development", "project_management", "documentation", "support",
              "sales", "operations")
TIMELINE_FIELDS = ("id", "event_type", "category", "worker", "timestamp", "duration", "metadata",
                   "request_id", "received_at", "xmin", "workspace_id", "source_id")
ALEX, SAM, KIM = (f"v1/{w['name']}" for w in V1_WORKERS)


FREE_BURST_PER_KEY = 20  # the Free plan's RateLimit-Limit (RATELIMIT_WINDOW_SECONDS = 1)


def _batch(client: httpx.Client, base: str, key: str, events: list | bytes,
           headers: dict | None = None, path: str = V1) -> httpx.Response:
    body = events if isinstance(events, bytes) else json.dumps({"events": events}).encode()
    return _ingest(client, base, key, body, path=path, headers=headers)


def _timeline(cluster: dict, where: str, *params) -> list[dict]:
    """Timeline rows (in insertion order) with their worker's public id and their xmin."""
    rows = _sql(
        cluster,
        "SELECT t.public_id, t.event_type, t.category, w.public_id, t.timestamp, t.duration, "
        "t.metadata, t.request_id, t.received_at, t.xmin::text, t.workspace_id, t.source_id "
        "FROM ingest_timelineevent t JOIN workspaces_worker w ON w.id = t.worker_id "
        f"WHERE {where} ORDER BY t.id",
        *params,
    )
    return [dict(zip(TIMELINE_FIELDS, row, strict=True)) for row in rows]


def _rows_of(cluster: dict, response: httpx.Response) -> list[dict]:
    return _timeline(cluster, "t.request_id = %s", response.json()["requestId"])


def _fast_lane_wrote(cluster: dict, source: str, idem_key: str, rows: list[dict]) -> bool:
    """Whether `rows` were written in the transaction of (source, idem_key)'s record itself."""
    [(record_xmin,)] = _sql(
        cluster, "SELECT xmin::text FROM ingest_idempotencyrecord WHERE source_id = %s AND key = %s",
        cluster["sources"][source]["pk"], idem_key,
    )
    return bool(rows) and {row["xmin"] for row in rows} == {record_xmin}


def _wid(cluster: dict, worker: str) -> str:
    return cluster["workers"][worker]["id"]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _offset_ts(minutes_ago: int, hours: int, minutes: int = 0) -> str:
    """A moment `minutes_ago` in the past, written with a UTC offset of hours:minutes."""
    zone = timezone(timedelta(hours=hours, minutes=minutes))
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).astimezone(zone).isoformat()


def _events(n: int, tag: str, timestamps: bool = True) -> list[dict]:
    """n valid events naming the seeded workers by each kind of actor, in turn."""
    actors = ({"externalId": "alex"}, {"email": "Sam.Lee@Example.COM"}, {"workerId": None})
    events = []
    for i in range(n):
        event = {"eventType": V1_TYPES[i % 3], "category": CATEGORIES[i % 7],
                 "actor": dict(actors[i % 3]), "duration": i * 7,
                 "metadata": {"tag": tag, "i": i, "ünï": "cödé ✓"}}
        if timestamps:
            event["timestamp"] = _offset_ts(i + 1, hours=(i % 5) - 2)
        events.append(event)
    return events


def _named(cluster: dict, events: list[dict], workspace: str = "v1") -> list[dict]:
    """The events with the kim worker's id of `workspace` where they name it by workerId."""
    kim = _wid(cluster, f"{workspace}/Kim")
    return [{**e, "actor": {"workerId": kim}} if e["actor"] == {"workerId": None} else e
            for e in events]


def _expected_202(request_id: str, events: list[dict], received_at: datetime) -> bytes:
    """ingest.api_v1.EventsView's 202 body for `events` all accepted, byte for byte."""
    accepted = [
        {"index": i, "eventType": e["eventType"],
         "timestamp": _iso(datetime.fromisoformat(e["timestamp"]) if "timestamp" in e else received_at)}
        for i, e in enumerate(events)
    ]
    return json.dumps({
        "requestId": request_id, "accepted": len(events), "rejected": 0, "batchLimit": 500,
        "results": {"accepted": accepted, "rejected": []},
    }, separators=(",", ":")).encode()


def _assert_all_rejected(response: httpx.Response, status: int, code: str, n: int) -> dict:
    """A batch whose every event was rejected: the envelope plus the batch's fields."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "accepted", "rejected", "batchLimit", "results"}, body
    _assert_error(httpx.Response(status, json={"error": body["error"]},
                                 headers={"x-request-id": response.headers["x-request-id"]}),
                  status, code)
    assert (body["accepted"], body["rejected"], body["batchLimit"]) == (0, n, 500)
    assert body["results"]["accepted"] == []
    assert [r["code"] for r in body["results"]["rejected"]] == [code] * n
    return body


def test_a_batch_naming_existing_workers_is_stored_by_the_fast_lane_with_every_field(
    fast, cluster, client
):
    kind, base = fast
    source = f"v1/served-{kind}"
    key = cluster["keys"][source]
    idem = f"served-{kind}-{secrets.token_hex(4)}"
    alex, sam, kim = (_wid(cluster, w) for w in (ALEX, SAM, KIM))
    with_offset = _offset_ts(90, hours=5, minutes=30)
    events = [
        {"eventType": "ticket.resolved", "category": "support", "actor": {"externalId": "alex"},
         "timestamp": with_offset, "duration": 240,
         "metadata": {"ticket": "SUP-431", "ünï": "cödé ✓", "nested": {"l": [1, "two", 3.5, None]}}},
        # No timestamp (the time received), no duration, no metadata; email in mixed case.
        {"eventType": "call.logged", "category": "sales", "actor": {"email": "SAM.lee@Example.Com"}},
        # workerId first, whatever else the actor says; an empty metadata object, duration 0.
        {"eventType": "déploiement.fini", "category": "development",
         "actor": {"workerId": kim, "externalId": "alex"}, "timestamp": _offset_ts(5, hours=-7),
         "duration": 0, "metadata": {}},
        # externalId before email: Alex, though the email names no one.
        {"eventType": "ticket.resolved", "category": "operations",
         "actor": {"externalId": "alex", "email": "nobody@example.com"},
         "timestamp": _offset_ts(1, hours=0), "duration": 86400},
    ]
    used_before = _usage(cluster, "v1")

    response = _batch(client, base, key, events, headers={"Idempotency-Key": idem})

    assert response.status_code == 202, response.text
    request_id = response.json()["requestId"]
    assert REQUEST_ID.fullmatch(request_id) and response.headers["x-request-id"] == request_id
    rows = _rows_of(cluster, response)
    assert len(rows) == len(events)
    assert _fast_lane_wrote(cluster, source, idem, rows), rows
    received_at = rows[0]["received_at"]
    assert abs((datetime.now(UTC) - received_at).total_seconds()) < 60
    expected_workers = [alex, sam, kim, alex]
    for event, row, worker in zip(events, rows, expected_workers, strict=True):
        stamp = datetime.fromisoformat(event["timestamp"]) if "timestamp" in event else received_at
        assert row == {
            **row, "event_type": event["eventType"], "category": event["category"],
            "worker": worker, "timestamp": stamp, "duration": event.get("duration"),
            "metadata": event.get("metadata"), "request_id": request_id,
            "received_at": received_at, "workspace_id": cluster["ws_ids"]["v1"],
            "source_id": cluster["sources"][source]["pk"],
        }, event
    # Stored in UTC (the offset applied, not dropped).
    assert _iso(rows[0]["timestamp"]) == _iso(datetime.fromisoformat(with_offset))
    assert response.content == _expected_202(request_id, events, received_at)
    assert _usage(cluster, "v1") == used_before + len(events)


def test_a_batch_of_500_events_the_limit_is_stored_by_the_fast_lane_in_one_transaction(
    fast, cluster, client
):
    kind, base = fast
    source = f"v1/served-{kind}"
    idem = f"500-{kind}-{secrets.token_hex(4)}"
    events = _named(cluster, _events(500, idem))
    response = _batch(client, base, cluster["keys"][source], events,
                      headers={"Idempotency-Key": idem})
    assert response.status_code == 202, response.text
    rows = _rows_of(cluster, response)
    assert _fast_lane_wrote(cluster, source, idem, rows)
    assert [(r["event_type"], r["category"], r["duration"], r["metadata"]) for r in rows] == [
        (e["eventType"], e["category"], e["duration"], e["metadata"]) for e in events
    ]
    assert response.content == _expected_202(response.json()["requestId"], events,
                                             rows[0]["received_at"])


def test_the_pipeline_server_keeps_a_batchs_rows_apart_from_its_idempotency_record(cluster, client):
    # The contrast that makes `_fast_lane_wrote` mean something: the pipeline's rows are written
    # in a savepoint, so they never share their xmin with the record.
    source = "v1/served-pipeline"
    idem = f"served-pipeline-{secrets.token_hex(4)}"
    events = _named(cluster, _events(4, idem))
    response = _batch(client, cluster["pipeline"], cluster["keys"][source], events,
                      headers={"Idempotency-Key": idem})
    assert response.status_code == 202, response.text
    rows = _rows_of(cluster, response)
    assert len(rows) == 4
    assert len({row["xmin"] for row in rows}) == 1  # one transaction all the same
    assert not _fast_lane_wrote(cluster, source, idem, rows)


def test_a_fast_202_for_a_batch_is_the_pipelines_202_in_headers_and_bytes(fast, cluster, client):
    kind, base = fast
    [(period_end,)] = _sql(cluster, "SELECT period_end FROM billing_usage WHERE workspace_id = %s",
                           cluster["ws_ids"]["v1"])
    events = _named(cluster, _events(5, f"shape-{kind}"))
    del events[1]["timestamp"]  # one event at the time received
    answers = {}
    for lane, server in (("fast", base), ("pipeline", cluster["pipeline"])):
        source = f"v1/shape-{kind if lane == 'fast' else 'pipeline'}"
        idem = f"shape-{kind}-{lane}-{secrets.token_hex(4)}"
        response = _batch(client, server, cluster["keys"][source], events,
                          headers={"Idempotency-Key": idem})
        assert response.status_code == 202, response.text
        rows = _rows_of(cluster, response)
        assert _fast_lane_wrote(cluster, source, idem, rows) == (lane == "fast"), rows
        # The body, byte for byte: keys in order, compact, the non-ASCII eventType escaped.
        request_id = response.json()["requestId"]
        assert response.headers["x-request-id"] == request_id
        assert response.content == _expected_202(request_id, events, rows[0]["received_at"])
        assert b"d\\u00e9ploiement.fini" in response.content
        # X-Quota-Remaining: what billing_usage says right after this batch.
        assert response.headers["x-quota-remaining"] == str(PRO_EVENT_LIMIT - _usage(cluster, "v1"))
        answers[lane] = response
    fast_answer, pipeline_answer = answers["fast"], answers["pipeline"]
    assert _names(fast_answer) == _names(pipeline_answer), (fast_answer.headers, pipeline_answer.headers)
    for name in (*STATIC_HEADERS, "x-quota-limit", "x-quota-reset", "ratelimit-limit",
                 "ratelimit-reset"):
        assert fast_answer.headers[name] == pipeline_answer.headers[name], name
    assert fast_answer.headers["x-quota-limit"] == str(PRO_EVENT_LIMIT)
    assert fast_answer.headers["x-quota-reset"] == str(int(period_end.timestamp()))
    assert fast_answer.headers["content-length"] == str(len(fast_answer.content))
    assert "idempotent-replayed" not in fast_answer.headers
    assert 0 <= int(fast_answer.headers["ratelimit-remaining"]) < PRO_BURST_PER_KEY


def test_a_batch_retried_with_its_idempotency_key_replays_the_first_202_and_stores_once(
    fast, cluster, client
):
    kind, base = fast
    source = f"v1/idem-{kind}"
    key = cluster["keys"][source]
    idem = f"idem-{kind}-{secrets.token_hex(4)}"
    events = _named(cluster, _events(6, idem))
    body = json.dumps({"events": events}).encode()
    used_before = _usage(cluster, "v1")

    first = _batch(client, base, key, body, headers={"Idempotency-Key": idem})
    assert first.status_code == 202, first.text
    rows = _rows_of(cluster, first)
    assert len(rows) == 6 and _fast_lane_wrote(cluster, source, idem, rows)
    assert "idempotent-replayed" not in first.headers

    for server, path in ((base, V1), (cluster["pipeline"], V1), (base, V1 + "/")):
        again = _batch(client, server, key, body, headers={"Idempotency-Key": idem}, path=path)
        assert again.status_code == 202, again.text
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["x-request-id"] == first.json()["requestId"]

    other = json.dumps({"events": events[:5]}).encode()
    _assert_error(_batch(client, base, key, other, headers={"Idempotency-Key": idem}), 409,
                  "idempotency_key_reused")
    assert _timeline(cluster, "t.source_id = %s", cluster["sources"][source]["pk"]) == rows
    assert _usage(cluster, "v1") == used_before + 6
    assert _sql(cluster, "SELECT count(*) FROM ingest_idempotencyrecord WHERE key = %s", idem) == [(1,)]


@pytest.mark.parametrize("split", [False, True], ids=["all-fast", "fast-and-pipeline"])
def test_five_identical_batches_at_once_store_their_events_once(fast, cluster, client, split):
    kind, base = fast
    source = f"v1/race-{kind}"
    key = cluster["keys"][source]
    idem = f"race-{kind}-{split}-{secrets.token_hex(4)}"
    body = json.dumps({"events": _named(cluster, _events(8, idem))}).encode()
    rows_before = len(_timeline(cluster, "t.source_id = %s", cluster["sources"][source]["pk"]))
    used_before = _usage(cluster, "v1")
    bases = [base, cluster["pipeline"]] * 2 + [base] if split else [base] * 5

    responses = all_at_once(
        [lambda b=b: _batch(client, b, key, body, headers={"Idempotency-Key": idem}) for b in bases]
    )

    assert [r.status_code for r in responses] == [202] * 5, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    assert sorted(r.headers.get("idempotent-replayed", "") for r in responses) == [""] + ["true"] * 4
    request_id = responses[0].json()["requestId"]
    assert {r.headers["x-request-id"] for r in responses} == {request_id}
    rows = _rows_of(cluster, responses[0])
    assert len(rows) == 8
    if not split:  # no pipeline but for the handed-over duplicates: the fast lane stored it
        assert _fast_lane_wrote(cluster, source, idem, rows)
    assert len(_timeline(cluster, "t.source_id = %s", cluster["sources"][source]["pk"])) == rows_before + 8
    assert _usage(cluster, "v1") == used_before + 8


@pytest.mark.parametrize("split", [False, True], ids=["all-fast", "fast-and-pipeline"])
def test_the_quota_is_exact_when_six_batches_of_ten_race_for_its_last_25_events(
    fast, cluster, client, split
):
    kind, base = fast
    workspace = f"v1-{'split' if split else 'capped'}-{kind}"
    source = f"{workspace}/q"
    key = cluster["keys"][source]
    bases = [base, cluster["pipeline"]] * 3 if split else [base] * 6
    idems = [f"quota-{kind}-{split}-{i}-{secrets.token_hex(3)}" for i in range(6)]
    batches = [_named(cluster, _events(10, idem), workspace) for idem in idems]

    responses = all_at_once([
        lambda b=b, events=events, idem=idem: _batch(
            client, b, key, events, headers={"Idempotency-Key": idem})
        for b, events, idem in zip(bases, batches, idems, strict=True)
    ])

    # The counter row orders them: 25 → 15 → 5 → k = 5 of 10 → nothing left, three times.
    assert sorted(r.status_code for r in responses) == [202, 202, 207, 402, 402, 402], [
        r.text for r in responses
    ]
    assert sum(r.json()["accepted"] for r in responses) == V1_QUOTA
    for response, idem in zip(responses, idems, strict=True):
        body = response.json()
        rows = _rows_of(cluster, response) if "requestId" in body else []
        if response.status_code == 202:
            assert len(rows) == 10
            if not split:
                assert _fast_lane_wrote(cluster, source, idem, rows), idem
        elif response.status_code == 207:
            assert (body["accepted"], body["rejected"]) == (5, 5)
            assert [a["index"] for a in body["results"]["accepted"]] == list(range(5))
            assert [(r["index"], r["code"]) for r in body["results"]["rejected"]] == [
                (i, "quota_exceeded") for i in range(5, 10)
            ]
            assert len(rows) == 5
            assert response.headers["x-quota-remaining"] == "0"
        else:
            _assert_all_rejected(response, 402, "quota_exceeded", 10)
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers["x-quota-remaining"] == "0"
            assert _timeline(cluster, "t.request_id = %s", body["error"]["requestId"]) == []
    ids = _sql(cluster, "SELECT count(*) FROM ingest_timelineevent WHERE workspace_id = %s",
               cluster["ws_ids"][workspace])
    assert ids == [(V1_QUOTA,)]
    assert _usage(cluster, workspace) == V1_QUOTA


def test_a_batch_with_rejected_events_gets_from_the_fast_server_the_pipelines_207(
    fast, cluster, client
):
    kind, base = fast
    key = cluster["keys"][f"v1/invalid-{kind}"]
    tag = f"invalid-{kind}-{secrets.token_hex(3)}"
    events = _named(cluster, _events(5, tag))
    events[1]["category"] = "gardening"
    events[3]["eventType"] = "deploy.shipped"  # not whitelisted
    used_before = _usage(cluster, "v1")

    fast_answer = _batch(client, base, key, events)
    pipeline_answer = _batch(client, cluster["pipeline"], key, events)

    assert (fast_answer.status_code, pipeline_answer.status_code) == (207, 207), fast_answer.text
    body = fast_answer.json()
    assert body["requestId"] == fast_answer.headers["x-request-id"]
    assert (body["accepted"], body["rejected"]) == (3, 2)
    assert [a["index"] for a in body["results"]["accepted"]] == [0, 2, 4]
    rejected = body["results"]["rejected"]
    assert [(r["index"], r["code"]) for r in rejected] == [
        (1, "invalid_body"), (3, "forbidden_event_type")
    ]
    assert "events[1].category" in rejected[0]["message"]
    # Exactly the pipeline's answer, but for the request id.
    assert body == {**pipeline_answer.json(), "requestId": body["requestId"]}
    assert _names(fast_answer) == _names(pipeline_answer)
    rows = _rows_of(cluster, fast_answer)
    assert [(r["event_type"], r["category"]) for r in rows] == [
        (events[i]["eventType"], events[i]["category"]) for i in (0, 2, 4)
    ]
    assert _usage(cluster, "v1") == used_before + 6


def test_a_batch_naming_new_workers_creates_them_and_then_the_fast_lane_finds_them(
    fast, cluster, client
):
    kind, base = fast
    source = f"v1/new-{kind}"
    key = cluster["keys"][source]
    tag = secrets.token_hex(4)
    external_id, email = f"new-{kind}-{tag}", f"Fresh.{tag}@Example.com"
    events = [
        {"eventType": "ticket.resolved", "category": "support",
         "actor": {"externalId": external_id, "email": f"Rider.{tag}@Example.com"}},
        {"eventType": "call.logged", "category": "sales", "actor": {"email": email}},
    ]

    created = _batch(client, base, key, events)

    assert created.status_code == 202, created.text
    workers = _sql(
        cluster,
        "SELECT public_id, external_id, email, display_name FROM workspaces_worker "
        "WHERE workspace_id = %s AND (external_id = %s OR email = %s) ORDER BY external_id",
        cluster["ws_ids"]["v1"], external_id, email.lower(),
    )
    assert [w[1:] for w in workers] == [
        (external_id, f"rider.{tag}@example.com", f"rider.{tag}"),
        (None, email.lower(), f"fresh.{tag}"),
    ]
    by_external, by_email = workers[0][0], workers[1][0]
    assert [r["worker"] for r in _rows_of(cluster, created)] == [by_external, by_email]

    # Named again (the email in other letters): the fast lane finds them, creates nothing.
    idem = f"new-{kind}-{tag}"
    again = [{**events[0], "actor": {"externalId": external_id}},
             {**events[1], "actor": {"email": email.upper()}}]
    found = _batch(client, base, key, again, headers={"Idempotency-Key": idem})
    assert found.status_code == 202, found.text
    rows = _rows_of(cluster, found)
    assert _fast_lane_wrote(cluster, source, idem, rows)
    assert [r["worker"] for r in rows] == [by_external, by_email]
    assert _sql(cluster, "SELECT count(*) FROM workspaces_worker WHERE workspace_id = %s AND "
                "(external_id = %s OR email = ANY(%s))", cluster["ws_ids"]["v1"], external_id,
                [email.lower(), f"rider.{tag}@example.com"]) == [(2,)]


def test_a_worker_id_of_another_workspace_is_not_found_through_the_fast_server(fast, cluster, client):
    kind, base = fast
    key = cluster["keys"][f"v1/tenant-{kind}"]
    stranger = _wid(cluster, "v1-other/Stranger")
    stranger_pk = cluster["workers"]["v1-other/Stranger"]["pk"]
    events = [
        {"eventType": "ticket.resolved", "category": "support", "actor": {"workerId": stranger}},
        {"eventType": "ticket.resolved", "category": "support", "actor": {"externalId": "alex"}},
        # workerId decides, even next to an externalId of this workspace.
        {"eventType": "call.logged", "category": "sales",
         "actor": {"workerId": stranger, "externalId": "alex"}},
    ]
    used_before = _usage(cluster, "v1")

    partly = _batch(client, base, key, events)
    alone = _batch(client, base, key, [events[0]], headers={"Idempotency-Key": secrets.token_hex(8)})

    assert partly.status_code == 207, partly.text
    body = partly.json()
    assert [a["index"] for a in body["results"]["accepted"]] == [1]
    assert [(r["index"], r["code"]) for r in body["results"]["rejected"]] == [
        (0, "worker_not_found"), (2, "worker_not_found")
    ]
    assert [r["worker"] for r in _rows_of(cluster, partly)] == [_wid(cluster, ALEX)]
    _assert_all_rejected(alone, 404, "worker_not_found", 1)
    assert _sql(cluster, "SELECT count(*) FROM ingest_timelineevent WHERE worker_id = %s",
                stranger_pk) == [(0,)]
    assert _usage(cluster, "v1") == used_before + 1


def _blocked_by(cluster: dict, pid: int, timeout: float = 10) -> list[str]:
    """The statements waiting on a lock that backend `pid` holds, once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = _sql(cluster, "SELECT query FROM pg_stat_activity "
                       "WHERE %s = ANY(pg_blocking_pids(pid))", pid)
        if waiting or time.monotonic() > deadline:
            return [query for (query,) in waiting]
        time.sleep(0.02)


def test_a_worker_deleted_while_the_fast_lane_copies_its_batch_gets_the_pipelines_404(
    fast, cluster, client
):
    import psycopg

    from ingest.fastlane import POOL_MAX_SIZE

    kind, base = fast
    workspace = f"v1-gone-{kind}"
    source = f"{workspace}/gone"
    key = cluster["keys"][source]
    doomed = cluster["workers"][f"{workspace}/Doomed"]
    events = [{"eventType": event_type, "category": "support", "actor": {"workerId": doomed["id"]}}
              for event_type in V1_TYPES]
    idem = f"gone-{kind}-{secrets.token_hex(4)}"
    log = cluster["logs"] / ("fast.log" if kind == "daphne" else "uvicorn.log")
    logged_before = log.stat().st_size
    used_before = _usage(cluster, workspace)

    with ThreadPoolExecutor(1) as sender, psycopg.connect(cluster["dsn"]) as deleter:
        # Not committed: the fast lane's look-up still finds the worker, then the COPY's check
        # (FOR KEY SHARE) waits on the deleted row's lock.
        deleted = deleter.execute("DELETE FROM workspaces_worker WHERE id = %s", [doomed["pk"]])
        assert deleted.rowcount == 1
        sent = sender.submit(_batch, client, base, key, events, {"Idempotency-Key": idem})
        waiting = _blocked_by(cluster, deleter.info.backend_pid)
        assert len(waiting) == 1 and waiting[0].startswith('COPY "ingest_timelineevent" '), waiting
        time.sleep(0.5)
        assert not sent.done(), sent.result().text
        deleter.commit()  # nothing references the fresh worker: the delete goes through
        response = sent.result(timeout=30)

    # The check raised, the batch was handed over, and the pipeline finds no such worker.
    body = _assert_all_rejected(response, 404, "worker_not_found", len(events))
    not_a_worker = f"actor.workerId: '{doomed['id']}' is not a worker of this workspace."
    assert body["results"]["rejected"] == [
        {"index": i, "code": "worker_not_found", "message": f"events[{i}].{not_a_worker}"}
        for i in range(len(events))
    ]
    assert body["error"]["message"] == (
        f"No event was accepted; the first rejection: events[0].{not_a_worker}"
    )
    # What the pipeline server answers the same batch now, but for the request id (and host).
    elsewhere = _batch(client, cluster["pipeline"], key, events)
    assert elsewhere.status_code == 404, elsewhere.text

    def same(answer: httpx.Response) -> dict:
        error = answer.json()["error"]
        return {**answer.json(), "error": {**error, "requestId": None,
                                           "docsUrl": urlsplit(error["docsUrl"]).path}}

    assert same(response) == same(elsewhere)
    assert _names(response) == _names(elsewhere)
    # The key's first request: counted once in its burst window, though served by both lanes.
    assert response.headers["ratelimit-remaining"] == str(PRO_BURST_PER_KEY - 1)
    with open(log, "rb") as f:
        f.seek(logged_before)
        logged = f.read().decode()
    assert "fast lane: a batch failed; handing it to the pipeline" in logged, logged
    assert "a worker that is not in the row's workspace" in logged, logged
    assert _sql(cluster, "SELECT count(*) FROM workspaces_worker WHERE id = %s", doomed["pk"]) == [(0,)]
    assert _sql(cluster, "SELECT count(*) FROM ingest_timelineevent WHERE workspace_id = %s "
                "OR worker_id = %s", cluster["ws_ids"][workspace], doomed["pk"]) == [(0,)]
    assert _sql(cluster, "SELECT count(*) FROM ingest_idempotencyrecord WHERE key = %s", idem) == [(0,)]
    assert _usage(cluster, workspace) == used_before

    # Every pooled connection (the pool hands them out in turn) was left clean: each of the
    # next batches is stored by the fast lane itself.
    for n in range(POOL_MAX_SIZE):
        idem = f"gone-after-{kind}-{n}-{secrets.token_hex(4)}"
        after = _batch(client, base, key, _named(cluster, _events(3, idem), workspace),
                       headers={"Idempotency-Key": idem})
        assert after.status_code == 202, after.text
        rows = _rows_of(cluster, after)
        assert len(rows) == 3 and _fast_lane_wrote(cluster, source, idem, rows), rows
    assert _usage(cluster, workspace) == used_before + 3 * POOL_MAX_SIZE


def test_a_free_plan_key_gets_402_plan_disabled_from_the_fast_server_and_stores_nothing(
    fast, cluster, client
):
    kind, base = fast
    key = cluster["keys"]["v1-free/free"]
    idem = f"free-{kind}-{secrets.token_hex(4)}"
    # Workers that exist (else the fast lane would hand the batch over for them anyway), and one
    # that does not (the pipeline must not create it either).
    events = [*_named(cluster, _events(3, idem), "v1-free"),
              {"eventType": "ticket.resolved", "category": "support",
               "actor": {"externalId": f"free-{kind}"}}]
    for server in (base, base, cluster["pipeline"]):
        _assert_error(_batch(client, server, key, events, headers={"Idempotency-Key": idem}),
                      402, "plan_disabled")
        _assert_error(_batch(client, server, key, events[:3]), 402, "plan_disabled")
    workspace_id = cluster["ws_ids"]["v1-free"]
    assert _sql(cluster, "SELECT count(*) FROM ingest_timelineevent WHERE workspace_id = %s",
                workspace_id) == [(0,)]
    assert _sql(cluster, "SELECT count(*) FROM workspaces_worker WHERE workspace_id = %s",
                workspace_id) == [(len(V1_WORKERS),)]
    assert _sql(cluster, "SELECT count(*) FROM ingest_idempotencyrecord WHERE key = %s", idem) == [(0,)]
    assert _usage(cluster, "v1-free") == 0


def test_a_fast_lane_batch_reaches_a_dashboard_socket_as_one_timeline_message(cluster, client):
    import aiohttp

    source = "v1-live/live"
    key = cluster["keys"][source]
    ref = {k: cluster["sources"][source][k] for k in ("id", "slug", "name")}
    workers = {cluster["workers"][f"v1-live/{w['name']}"]["id"]: w for w in V1_WORKERS}
    events = _named(cluster, _events(4, "live"), "v1-live")
    del events[2]["timestamp"]

    async def scenario() -> dict[str, dict]:
        messages: dict[str, dict] = {}
        async with _dashboard_socket(cluster, "v1-live") as ws:
            for lane, server in (("fast", cluster["fast"]), ("pipeline", cluster["pipeline"])):
                idem = f"live-{lane}-{secrets.token_hex(4)}"
                response = await asyncio.to_thread(
                    _batch, client, server, key, events, {"Idempotency-Key": idem})
                assert response.status_code == 202, response.text
                request_id = response.json()["requestId"]
                while request_id not in messages:
                    message = await ws.receive(timeout=15)
                    assert message.type == aiohttp.WSMsgType.TEXT, message
                    payload = json.loads(message.data)
                    if payload["type"] == "timeline":
                        assert set(payload) == {"type", "items"}
                        (rid,) = {item["requestId"] for item in payload["items"]}
                        messages[rid] = {"lane": lane, "idem": idem, "items": payload["items"]}
        return messages

    messages = asyncio.run(scenario())
    assert len(messages) == 2
    shapes = []
    for request_id, message in messages.items():
        rows = _timeline(cluster, "t.request_id = %s", request_id)
        assert _fast_lane_wrote(cluster, source, message["idem"], rows) == (message["lane"] == "fast")
        assert [item["id"] for item in message["items"]] == [row["id"] for row in rows]
        for item, row in zip(message["items"], rows, strict=True):
            assert item == {
                "kind": "timeline", "id": row["id"], "eventType": row["event_type"],
                "category": row["category"],
                "worker": {"id": row["worker"], "displayName": workers[row["worker"]]["name"],
                           "externalId": workers[row["worker"]]["externalId"]},
                "timestamp": _iso(row["timestamp"]), "duration": row["duration"],
                "metadata": row["metadata"], "source": ref, "requestId": request_id,
                "receivedAt": _iso(row["received_at"]),
            }
        shapes.append([list(item) for item in message["items"]])
    assert shapes[0] == shapes[1]  # the same keys in the same order from both lanes


def _refused_for_the_plan_then_one_event(client: httpx.Client, base: str, key: str) -> list:
    """Three v1 batches (402 plan_disabled), then one single event (201), in one window."""
    batch = [{"eventType": "ticket.resolved", "category": "support", "actor": {"externalId": "x"}}]
    return [*(_batch(client, base, key, batch) for _ in range(3)),
            _ingest(client, base, key, {"status": "success", "message": "after 402s"})]


def test_through_the_pipeline_a_batch_refused_for_the_plan_takes_nothing_from_the_burst_window(
    cluster, client
):
    # The pipeline refuses the plan (step 2) before it counts the burst (step 3).
    key = cluster["keys"]["v1-free-pipeline/burst"]
    responses = _one_second(lambda: _refused_for_the_plan_then_one_event(
        client, cluster["pipeline"], key))
    assert [r.status_code for r in responses] == [402, 402, 402, 201], [r.text for r in responses]
    assert all("ratelimit-remaining" not in r.headers for r in responses[:3])
    assert responses[3].headers["ratelimit-remaining"] == str(FREE_BURST_PER_KEY - 1)


def test_through_the_fast_server_a_batch_refused_for_the_plan_takes_nothing_from_the_burst_window(
    fast, cluster, client
):
    kind, base = fast
    key = cluster["keys"][f"v1-free-{kind}/burst"]
    responses = _one_second(lambda: _refused_for_the_plan_then_one_event(client, base, key))
    assert [r.status_code for r in responses] == [402, 402, 402, 201], [r.text for r in responses]
    assert all("ratelimit-remaining" not in r.headers for r in responses[:3])
    assert responses[3].headers["ratelimit-remaining"] == str(FREE_BURST_PER_KEY - 1)


# --- metrics and key guessing, on a fast server of their own --------------------------------

METRICS_TOKEN = "fast-lane-metrics-token-0123456789"
GUESS_LIMIT = 3  # AUTH_FAILURE_LIMIT of the observed server, per hour
PROXY = "203.0.113.9"  # the guessing client, as the (one trusted) proxy names it


@pytest.fixture(scope="module")
def observed(cluster) -> Iterator[str]:
    """A fast uvicorn on the cluster's database and Redis with GET /metrics, one trusted proxy
    hop (X-Forwarded-For names the client) and AUTH_FAILURE_LIMIT of 3 an hour."""
    env = {**cluster["env"], "METRICS_TOKEN": METRICS_TOKEN, "TRUSTED_PROXY_HOPS": "1",
           "AUTH_FAILURE_LIMIT": f"{GUESS_LIMIT}/h"}
    with uvicorn(env, cluster["logs"] / "observed.log") as base:
        yield base


def _scrape(client: httpx.Client, base: str) -> dict[tuple[str, tuple], float]:
    response = client.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text) for sample in family.samples
    }


def test_the_fast_lanes_requests_events_and_commits_are_counted_with_executor_fastlane(
    cluster, client, observed
):
    n, batch_size = 24, 7
    before = _scrape(client, observed)
    key = cluster["keys"]["lanes/metrics"]
    tag = f"metrics-{secrets.token_hex(3)}"
    singles = all_at_once([lambda i=i: _ingest(client, observed, key, _body(tag, i)) for i in range(n)])
    assert [r.status_code for r in singles] == [201] * n, [r.text for r in singles]
    batch = _batch(client, observed, cluster["keys"]["v1/metrics"],
                   _named(cluster, _events(batch_size, tag)))
    assert batch.status_code == 202, batch.text
    after = _scrape(client, observed)

    def moved(name: str, **labels: str) -> float:
        sample = (name, tuple(sorted(labels.items())))
        return after.get(sample, 0.0) - before.get(sample, 0.0)

    requests, accepted = "ackly_http_requests_total", "ackly_events_accepted_total"
    assert moved(requests, endpoint="api-ingest", executor="fastlane", status="201") == n
    assert moved(requests, endpoint="api-v1-events", executor="fastlane", status="202") == 1
    assert moved(accepted, endpoint="api-ingest", executor="fastlane") == n
    assert moved(accepted, endpoint="api-v1-events", executor="fastlane") == batch_size
    # Served by the fast lane, so counted once: nothing went through the pipeline.
    for endpoint, status in (("api-ingest", "201"), ("api-v1-events", "202")):
        assert moved(requests, endpoint=endpoint, executor="pipeline", status=status) == 0
        assert moved(accepted, endpoint=endpoint, executor="pipeline") == 0
    groups = moved("ackly_fastlane_group_size_count")
    assert 1 <= groups <= n
    assert moved("ackly_fastlane_group_size_sum") == n
    assert moved("ackly_fastlane_commit_seconds_count", lane="group") == groups
    assert moved("ackly_fastlane_commit_seconds_count", lane="batch") == 1
    assert 0 < moved("ackly_fastlane_commit_seconds_sum", lane="batch") < 5


def _unknown_key() -> str:
    return "ak_live_" + "".join(secrets.choice(string.ascii_letters + string.digits)
                                for _ in range(40))


def test_a_blocked_address_guessing_keys_costs_the_fast_lane_no_query_and_gets_429(
    cluster, client, observed
):
    from_proxy = {"X-Forwarded-For": PROXY}
    valid = cluster["keys"]["lanes/guess"]
    assert _ingest(client, observed, valid, {"status": "success"}, headers=from_proxy).status_code == 201
    left = 3600 - time.time() % 3600  # the limit's window is the clock's hour
    if left < 60:
        time.sleep(left + 1)
    for _ in range(GUESS_LIMIT):
        _assert_error(_ingest(client, observed, _unknown_key(), {"status": "success"},
                              headers=from_proxy), 401, "invalid_key")

    # With the key table locked, a key look-up would wait for the lock: each answer in time is
    # one that asked no query. The pipeline answers the 429 from the counter alone.
    with psycopg.connect(cluster["dsn"]) as lock:
        lock.execute("SET lock_timeout = '5s'")
        lock.execute("LOCK TABLE sources_key IN ACCESS EXCLUSIVE MODE")
        for path, body in (("/api/ingest", {"status": "success"}), (V1, {"events": _events(1, "guess")})):
            for _ in range(3):
                started = time.monotonic()
                response = _ingest(client, observed, _unknown_key(), body, path=path,
                                   headers=from_proxy)
                assert time.monotonic() - started < 2, response.text
                _assert_error(response, 429, "rate_limited")
                assert 0 < int(response.headers["retry-after"]) <= 3600
        lock.rollback()

    # Another address is not blocked; the blocked address's cached key still works.
    _assert_error(_ingest(client, observed, _unknown_key(), {"status": "success"},
                          headers={"X-Forwarded-For": "198.51.100.4"}), 401, "invalid_key")
    response = _ingest(client, observed, valid, {"status": "success"}, headers=from_proxy)
    assert response.status_code == 201, response.text
