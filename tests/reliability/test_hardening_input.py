"""What an outside audit of the production recipe sent, and what it gets now (docs/reliability.md).

* numbers too large for a float (`1e400` parses as infinity) anywhere in a body of either API,
  dry run or not: 400 `invalid_body` from the one strict parser, never a 500 or a 202;
* a NUL byte or an instant out of range in any dashboard URL (path segment or parameter): 404
  for an id, a filter error (400) for a parameter, never a 500 — on SQLite and PostgreSQL, which
  refuses NUL in text where SQLite stores it;
* a `Host` that is not allowed on an API path: the JSON envelope, not Django's HTML page;
* a declared `Content-Length` over the limit: 413 at once, before any body arrives;
* a database that cannot hand out a connection on an API path: one warning line per request,
  no traceback, and the `internal_error` envelope.

The server tests run uvicorn (the production recipe's HTTP server) on a database of their own,
PostgreSQL when DATABASE_URL is set (with REDIS_URL too, the fast lane is in front), else SQLite.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ackly.errors import ERROR_CODES
from billing.models import Plan
from ingest.models import Event, Snapshot, TimelineEvent
from sources.models import Key
from tests.servers import manage, own_database, server_env, uvicorn
from workspaces.models import Worker

MB = 1024 * 1024

# --- 1. Numbers too large for a float --------------------------------------------------------

V1_EVENT = '{"eventType": "ticket.resolved", "category": "support", "actor": {"externalId": "u-1"}'
SNAPSHOT = '{"snapshotType": "tickets_open", "actor": {"externalId": "u-1"}'
HUGE = ["1e400", "-1e400", "1" + "0" * 400 + ".5", "2E+999"]
BODIES = {
    "ingest durationMs": ("/api/ingest", '{"status": "success", "durationMs": NUM}'),
    "ingest metadata": ("/api/ingest", '{"status": "success", "metadata": {"x": NUM}}'),
    "ingest metadata list": ("/api/ingest", '{"status": "success", "metadata": {"x": [1, NUM]}}'),
    "v1 event metadata": ("/api/v1/ingest/events", '{"events": [' + V1_EVENT + ', "metadata": {"x": NUM}}]}'),
    "v1 event duration": ("/api/v1/ingest/events", '{"events": [' + V1_EVENT + ', "duration": NUM}]}'),
    "snapshot metric": ("/api/v1/ingest/snapshots", SNAPSHOT + ', "metrics": {"open": NUM}}'),
    "snapshot metric value": (
        "/api/v1/ingest/snapshots", SNAPSHOT + ', "metrics": {"open": {"value": NUM, "unit": "x"}}}'),
    "snapshot metadata": (
        "/api/v1/ingest/snapshots", SNAPSHOT + ', "metrics": {"open": 1}, "metadata": {"x": NUM}}'),
}


@pytest.fixture
def post(api, auth_header):
    """POST on each executor (the `api` fixture)."""
    Plan.objects.filter(code="pro").update(burst_per_key=10**6, burst_per_workspace=10**6)

    def send(path: str, body: str, dry_run: bool):
        url = path + ("?dryRun=true" if dry_run else "")
        return api.generic("POST", url, body.encode(), content_type="application/json", **auth_header)

    return send


def stored() -> tuple[int, int, int, int]:
    return (Event.objects.count(), TimelineEvent.objects.count(), Snapshot.objects.count(),
            Worker.objects.count())


@pytest.mark.django_db
@pytest.mark.parametrize("dry_run", [False, True], ids=["stored", "dry run"])
@pytest.mark.parametrize("number", HUGE)
@pytest.mark.parametrize("where", BODIES)
def test_a_number_too_large_for_a_float_is_400_invalid_body_anywhere_dry_run_or_not(
    post, where, number, dry_run
):
    path, template = BODIES[where]
    before = stored()
    response = post(path, template.replace("NUM", number), dry_run)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "invalid_body"
    assert "too large for a float" in error["message"]
    assert error["requestId"] == response["X-Request-Id"]
    assert stored() == before


@pytest.mark.django_db
@pytest.mark.parametrize("dry_run", [False, True], ids=["stored", "dry run"])
def test_the_largest_finite_numbers_and_huge_integers_are_still_accepted(post, dry_run):
    """The rule is about infinity, not size: 1.7e308 is a float, and an integer is exact."""
    big = "1.7976931348623157e308"
    assert post("/api/ingest", f'{{"status": "success", "durationMs": {big}}}', dry_run).status_code == 201
    metrics = f', "metrics": {{"open": -{big}, "n": 1{"0" * 400}}}}}'
    response = post("/api/v1/ingest/snapshots", SNAPSHOT + metrics, dry_run)
    assert response.status_code == 202, response.content


# --- 2. NUL and out-of-range instants in dashboard URLs ----------------------------------------

NUL = "\x00"
# Instants whose UTC conversion falls outside years 1-9999 (a Python OverflowError).
OUT_OF_RANGE = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999-00:01"]
FEED_TEXT = ["q", "eventType", "source"]
FEED_INSTANTS = ["since", "until", "after", "before"]


@pytest.fixture
def dashboard(client, owner, workspace, source_and_key):
    """The owner logged in, and one object of each kind the dashboard URLs name."""
    source, issued = source_and_key
    client.force_login(owner)
    worker = Worker.objects.create(workspace=workspace, display_name="Alex", external_id="u-1")
    event = Event.objects.create(workspace=workspace, source=source, status="success")
    now = timezone.now()
    timeline = TimelineEvent.objects.create(
        workspace=workspace, source=source, worker=worker, event_type="ticket.resolved",
        category="support", timestamp=now, received_at=now, request_id="req_test",
    )
    return {"client": client, "org": workspace.public_id, "app": source.public_id,
            "key": issued.key.public_id, "wrk": worker.public_id, "event": event.public_id,
            "tle": timeline.public_id}


def _paths(d: dict, bad: str) -> dict[str, tuple[str, str]]:
    """Each dashboard URL with `bad` in place of one id: (method, path)."""
    org, app, key = d["org"], d["app"], d["key"]
    return {
        "org in live": ("get", f"/w/{bad}/events/"),
        "org in home": ("get", f"/w/{bad}/"),
        "org in feed": ("get", f"/w/{bad}/events/feed.json"),
        "org in workers": ("get", f"/w/{bad}/workers/"),
        "org in sources": ("get", f"/w/{bad}/sources/"),
        "org in usage": ("get", f"/w/{bad}/usage/"),
        "event id": ("get", f"/w/{org}/events/{bad}/"),
        "timeline id": ("get", f"/w/{org}/events/tle_{bad}/"),
        "worker id": ("get", f"/w/{org}/workers/{bad}/"),
        "worker id in feed": ("get", f"/w/{org}/workers/{bad}/feed.json"),
        "source id in edit": ("get", f"/w/{org}/sources/{bad}/edit/"),
        "source id in rotate": ("get", f"/w/{org}/sources/{bad}/rotate/"),
        "source id in new key": ("get", f"/w/{org}/sources/{bad}/keys/new/"),
        "source id in revoke": ("post", f"/w/{org}/sources/{bad}/keys/{key}/revoke/"),
        "key id in revoke": ("post", f"/w/{org}/sources/{app}/keys/{bad}/revoke/"),
        "worker id, wrk_ prefix": ("get", f"/w/{org}/workers/wrk_{bad}/"),
        "org id, org_ prefix": ("get", f"/w/org_{bad}/events/"),
    }


PATH_NAMES = list(_paths({k: "x" for k in ("org", "app", "key", "wrk")}, "x"))


@pytest.mark.django_db
@pytest.mark.parametrize("bad", [NUL, f"a{NUL}", f"01HP3K5V4J3M9NVT8XZKQ9YQ2{NUL}"],
                         ids=["NUL", "aNUL", "ulid+NUL"])
@pytest.mark.parametrize("name", PATH_NAMES)
def test_a_nul_in_any_id_of_a_dashboard_path_is_404(dashboard, name, bad):
    method, path = _paths(dashboard, quote(bad, safe=""))[name]
    response = getattr(dashboard["client"], method)(path)
    assert response.status_code == 404, (path, response.status_code)


def _feed(d: dict, **params: str):
    return d["client"].get(f"/w/{d['org']}/events/feed.json", params)


def _assert_filter_error(response, name: str) -> None:
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "invalid_filter"
    assert name in error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", FEED_TEXT)
def test_a_nul_in_a_feed_filter_is_400_invalid_filter(dashboard, name):
    _assert_filter_error(_feed(dashboard, **{name: f"ab{NUL}c"}), name)


@pytest.mark.django_db
@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize("name", FEED_INSTANTS)
def test_an_instant_out_of_range_in_utc_is_400_invalid_filter(dashboard, name, value):
    _assert_filter_error(_feed(dashboard, **{name: value}), name)


@pytest.mark.django_db
@pytest.mark.parametrize("params", [{"q": NUL}, {"eventType": NUL}, {"source": NUL},
                                    {"since": OUT_OF_RANGE[0]}, {"until": OUT_OF_RANGE[0]}])
def test_the_live_page_shows_a_bad_filter_with_400(dashboard, params):
    response = dashboard["client"].get(f"/w/{dashboard['org']}/events/", params)
    assert response.status_code == 400
    assert b"f-errors" in response.content
    assert [*params][0].encode() in response.content


@pytest.mark.django_db
def test_a_nul_in_the_workers_search_is_400_with_the_page(dashboard):
    response = dashboard["client"].get(f"/w/{dashboard['org']}/workers/", {"q": f"Al{NUL}"})
    assert response.status_code == 400
    assert b"NUL" in response.content
    assert b"Alex" in response.content  # the list itself, unfiltered


@pytest.mark.django_db
def test_valid_filters_and_ids_still_answer(dashboard):
    d, c = dashboard, dashboard["client"]
    assert _feed(d, q="xyz", eventType="e", source=d["app"], since="2024-01-01T00:00:00Z",
                 until="9999-12-31T23:59:59Z").status_code == 200
    assert _feed(d, since="0001-01-01T00:00:00Z").status_code == 200
    for path in (f"/w/{d['org']}/events/{d['event']}/", f"/w/{d['org']}/events/{d['tle']}/",
                 f"/w/{d['org']}/workers/{d['wrk']}/", f"/w/{d['org']}/sources/{d['app']}/edit/"):
        assert c.get(path).status_code == 200, path


# Any text at all in every dashboard parameter: never a 500. Hypothesis draws the values; NUL,
# other control characters and instants at the edges of the calendar are drawn often.
edgy_text = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.sampled_from(["\x00", "\x01", "\x7f", "a", "%", "'", "\\", "é", "💥"]), max_size=6),
    st.sampled_from(OUT_OF_RANGE + ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-02-30T00:00:00Z",
                                    "2024-01-01T00:00:00+24:00", "1" * 50, "-1", "0", "NaN"]),
    st.builds(lambda y, o: f"{y:04d}-01-01T00:00:00{o}", st.sampled_from([1, 2, 9998, 9999]),
              st.sampled_from(["Z", "+23:59", "-23:59", "+00:00"])),
)
PAGE_PARAMS = {
    "live": ("/w/{org}/events/", ["q", "eventType", "source", "status", "category", "range",
                                  "since", "until", "after", "before", "limit"]),
    "feed": ("/w/{org}/events/feed.json", ["q", "eventType", "source", "status", "category", "range",
                                           "since", "until", "after", "before", "limit"]),
    "workers": ("/w/{org}/workers/", ["q", "page"]),
    "worker": ("/w/{org}/workers/{wrk}/", ["page"]),
    "worker feed": ("/w/{org}/workers/{wrk}/feed.json", ["page"]),
    "sources": ("/w/{org}/sources/", ["q"]),
    "usage": ("/w/{org}/usage/", ["q"]),
    "event": ("/w/{org}/events/{event}/", ["q"]),
}
hypothesis_settings = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "0")) or 40, deadline=None,
    database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGE_PARAMS)
@hypothesis_settings
@given(data=st.data())
def test_any_value_in_any_dashboard_parameter_answers_without_a_500(dashboard, page, data):
    template, names = PAGE_PARAMS[page]
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    params = {name: data.draw(edgy_text, label=name) for name in chosen}
    response = dashboard["client"].get(template.format(**dashboard), params)
    assert response.status_code in (200, 400), (params, response.status_code)
    if page == "feed" and response.status_code == 400:
        assert response.json()["error"]["code"] == "invalid_filter"


@pytest.mark.django_db
@hypothesis_settings
@given(segment=st.text(min_size=1, max_size=30) | st.text(
    alphabet=st.sampled_from([NUL, "\x01", "a", "Z", "0", "_", "%", "/", "é"]), min_size=1, max_size=8))
def test_any_text_as_any_id_in_a_dashboard_path_is_404_never_500(dashboard, segment):
    for method, path in _paths(dashboard, quote(segment, safe="")).values():
        response = getattr(dashboard["client"], method)(path)
        assert response.status_code in (404, 405), (path, response.status_code)


@pytest.mark.django_db
def test_a_nul_in_the_plan_form_is_400(dashboard):
    response = dashboard["client"].post(f"/w/{dashboard['org']}/usage/plan/", {"plan": f"pro{NUL}"})
    assert response.status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "data"), [
    ("/w/{org}/sources/new/", {"name": f"A{NUL}", "slug": "a", "event_types": "x"}),
    ("/w/{org}/sources/new/", {"name": "A", "slug": f"a{NUL}", "event_types": f"x{NUL}"}),
    ("/w/{org}/sources/{app}/edit/", {"name": f"A{NUL}", "event_types": f"x{NUL}"}),
    ("/w/{org}/sources/{app}/rotate/", {"grace_hours": f"1{NUL}"}),
    ("/w/{org}/sources/{app}/keys/new/", {"expires_at": f"20{NUL}99-01-01T00:00"}),
    ("/w/{org}/sources/{app}/keys/new/", {"expires_at": OUT_OF_RANGE[0]}),
])
def test_a_nul_or_an_instant_out_of_range_in_a_dashboard_form_is_400(dashboard, url, data):
    response = dashboard["client"].post(url.format(**dashboard), data)
    assert response.status_code == 400, response.status_code


@pytest.mark.django_db
def test_a_key_expiry_with_an_offset_postgresql_refuses_is_stored_in_utc(dashboard):
    response = dashboard["client"].post(
        "/w/{org}/sources/{app}/keys/new/".format(**dashboard),
        {"expires_at": "2099-01-01T00:00:00+23:30"})
    assert response.status_code == 302, response.content[:300]
    key = Key.objects.exclude(public_id=dashboard["key"]).get()
    assert key.expires_at == datetime(2098, 12, 31, 0, 30, tzinfo=UTC)


# --- 3. A Host that is not allowed, on an API path ----------------------------------------------

API_REQUESTS = [("post", "/api/ingest"), ("post", "/api/v1/ingest/events"), ("get", "/api/v1/ingest/ping"),
                ("get", "/api/nowhere"), ("get", "/openapi/v1.yaml")]


def _assert_bad_host(response, request_id: str) -> None:
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "bad_request"
    assert "Host" in body["error"]["message"]
    assert body["error"]["requestId"] == request_id
    assert "evil" not in body["error"]["docsUrl"]  # never a link to the host we refused


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), API_REQUESTS)
def test_an_api_path_with_a_host_not_allowed_answers_the_envelope(api, auth_header, method, path):
    response = api.generic(method.upper(), path, headers={"Host": "evil.example"}, **auth_header)
    assert response["Content-Type"] == "application/json"
    _assert_bad_host(response, response["X-Request-Id"])
    assert response.json()["error"]["docsUrl"].endswith("/docs/errors/bad_request/")


def test_bad_request_is_in_the_catalogue_with_its_docs_page(client):
    assert ERROR_CODES["bad_request"].status == 400
    assert client.get("/docs/errors/bad_request/").status_code == 200


# --- Against uvicorn: the lean API chain, the body guard, the fast lane -------------------------

SETUP = """
import json
from billing.models import Plan
from sources.services import create_source
from workspaces.services import create_workspace

Plan.objects.filter(code="pro").update(burst_per_key=100000, burst_per_workspace=100000)
ws = create_workspace("Audit", "pro")
source, issued = create_source(ws, "Audit", slug="audit", allowed_event_types=["ticket.resolved"])
print(json.dumps({"key": issued.secret}))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    """uvicorn on its own database (PostgreSQL when DATABASE_URL is set, else SQLite)."""
    env = server_env()
    if not env.get("DATABASE_URL", "").startswith("postgres"):
        env.pop("REDIS_URL", None)  # no fast lane without PostgreSQL anyway
    with own_database(env, "ackly_input", tmp_path_factory.mktemp("input")) as env:
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        log = tmp_path_factory.mktemp("input-log") / "uvicorn.log"
        with uvicorn(env, log) as base:
            yield {"base": base, "log": log, **data}


def _head(server: dict, path: str, extra: str = "", host: str = "127.0.0.1") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server['key']}\r\n"
            f"Content-Type: application/json\r\nConnection: close\r\n{extra}\r\n").encode()


def _exchange(port: int, request: bytes, timeout: float) -> tuple[int, dict[str, str], bytes, float]:
    """Send `request`, read the answer until the server closes: (status, headers, body, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        try:
            while b"\r\n\r\n" not in received or not _complete(received):
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        except TimeoutError:
            pytest.fail(f"no complete answer within {timeout} s: {received[:300]!r}")
    elapsed = time.monotonic() - started
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body, elapsed


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


TOO_LARGE = {"/api/ingest": "payload_too_large", "/api/v1/ingest/events": "batch_too_large",
             "/api/v1/ingest/snapshots": "batch_too_large"}


@pytest.mark.server
@pytest.mark.parametrize("length", [10_000_000_000, MB + 1])
@pytest.mark.parametrize("path", TOO_LARGE)
def test_a_declared_length_over_the_limit_is_413_before_any_body_arrives(server, path, length):
    head = _head(server, path, f"Content-Length: {length}\r\n")
    status, headers, body, elapsed = _exchange(server["base"].port, head, timeout=10)
    assert status == 413, body[:300]
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == TOO_LARGE[path]
    assert error["message"] == "The request body is larger than 1 MB."
    assert error["requestId"] == headers["x-request-id"]
    assert "x-quota-limit" in headers  # answered by the pipeline, after the key was checked
    assert elapsed < 5


@pytest.mark.server
def test_a_body_within_its_declared_length_is_still_stored(server):
    """The guard refuses declared lengths over the limit only; 1 MB exactly is read and parsed."""
    marker = secrets.token_hex(4)
    body = json.dumps({"status": "success", "message": marker}).encode()
    body += b" " * (MB - len(body))
    head = _head(server, "/api/ingest", f"Content-Length: {MB}\r\n")
    status, _, answer, _ = _exchange(server["base"].port, head + body, timeout=30)
    assert status == 201, answer[:300]


@pytest.mark.server
@pytest.mark.parametrize(("method", "path"), API_REQUESTS)
def test_a_host_not_allowed_on_the_lean_api_chain_answers_the_envelope(server, method, path):
    response = httpx.request(
        method.upper(), f"{server['base']}{path}", headers={"Host": "evil.example",
                                                           "Authorization": f"Bearer {server['key']}"},
        content=b'{"status": "success"}' if method == "post" else None, timeout=30,
    )
    assert response.headers["content-type"] == "application/json", response.text[:300]
    _assert_bad_host(response, response.headers["x-request-id"])


@pytest.mark.server
@pytest.mark.parametrize("where", ["ingest durationMs", "v1 event metadata", "snapshot metric"])
def test_a_number_too_large_for_a_float_is_400_through_the_server_and_the_fast_lane(server, where):
    path, template = BODIES[where]
    body = template.replace("NUM", "1e400").encode()
    for query in ("", "?dryRun=true"):
        response = httpx.post(f"{server['base']}{path}{query}", content=body,
                              headers={"Authorization": f"Bearer {server['key']}"}, timeout=30)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_body"


@pytest.mark.server
def test_the_server_logged_no_traceback(server):
    """Runs last in this module."""
    log = server["log"].read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log, log[-3000:]


# --- 5. The database cannot hand out a connection ------------------------------------------------


@contextmanager
def exhausted_pool():
    """Every connection of Django's PostgreSQL pool taken, and a short wait for one."""
    connection.close()  # this thread's connection goes back to the pool first
    pool = connection.pool
    saved = pool.timeout
    held = []
    try:
        while len(held) < pool.max_size:
            held.append(pool.getconn(timeout=30))
        pool.timeout = 0.3
        yield pool
    finally:
        pool.timeout = saved
        for conn in held:
            pool.putconn(conn)


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/api/ingest", "/api/v1/ingest/events"])
def test_a_request_while_the_pool_is_exhausted_logs_one_line_and_answers_the_envelope(
    client, auth_header, caplog, path
):
    body = {"status": "success"} if path == "/api/ingest" else {"events": []}
    with exhausted_pool():
        caplog.clear()
        started = time.monotonic()
        response = client.post(path, body, content_type="application/json", **auth_header)
        elapsed = time.monotonic() - started
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert error["message"] == ERROR_CODES["internal_error"].description  # no trace to clients
    [record] = _warnings(caplog)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert record.getMessage().startswith(f"Database unavailable serving POST {path}: ")
    assert "couldn't get a connection after 0.30 sec" in record.getMessage()
    assert elapsed < 0.3 * 2 + 1  # one wait for the pool, not one per query


@pytest.mark.django_db
def test_other_database_errors_keep_their_traceback(client, auth_header, caplog, monkeypatch):
    from django.db import ProgrammingError

    def broken(*args, **kwargs):
        raise ProgrammingError("relation does not exist")

    monkeypatch.setattr("ingest.api.record_event", broken)
    monkeypatch.setattr("ingest.api.record_event_at_once", broken)
    response = client.post("/api/ingest", {"status": "success"}, content_type="application/json",
                           **auth_header)
    assert response.status_code == 500
    [record] = _warnings(caplog)
    assert record.exc_info is not None
