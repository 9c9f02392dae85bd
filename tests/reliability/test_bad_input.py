"""Bad input catalogue on both executors, and against a real Daphne process over real sockets.

Bytes that never parse, nesting deep enough to blow a recursive parser, numbers too big to
convert and wrong types in every field of both APIs go through the `api` fixture: Django's test
client and the fast lane's uvicorn (tests/executors.py). What only a server process shows runs
against a Daphne of its own: bodies far over the limit with and without Content-Length (and the
server's memory afterwards), a trickled body, control characters in Idempotency-Key sent as raw
bytes, and hostile strings stored verbatim and shown escaped on its dashboard pages. Every
answer is the JSON envelope with a documented code.
"""

from __future__ import annotations

import json
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator

import httpx
import pytest

from ackly.errors import ERROR_CODES
from ingest.models import Event
from tests.servers import daphne, manage, own_database, server_env

pytestmark = pytest.mark.server

MB = 1024 * 1024

# Run in the server's environment: a Pro workspace with limits the catalogue cannot trip, an owner
# with a logged-in session; printed as one JSON line.
SETUP = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from bench.setup_data import logged_in_session
from billing.models import Plan
from sources.services import create_source
from workspaces.services import create_workspace

Plan.objects.filter(code="pro").update(burst_per_key=100000, burst_per_workspace=100000)
user = get_user_model().objects.create_user("olga", "olga@example.com", "a-long-passphrase")
session_key = logged_in_session(user)
ws = create_workspace("Hostile", "pro", owner=user)
source, issued = create_source(ws, "Fuzz", slug="fuzz", allowed_event_types=["ticket.resolved"])
print(json.dumps({"key": issued.secret, "org": ws.public_id, "session": session_key,
                  "cookie": settings.SESSION_COOKIE_NAME}))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    """Daphne on its own database (a fresh PostgreSQL one when DATABASE_URL is set, else SQLite)."""
    env = server_env()
    env.pop("REDIS_URL", None)  # one process: the in-memory layer and local caches suffice
    with own_database(env, "ackly_bad", tmp_path_factory.mktemp("bad-input")) as env:
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        log = tmp_path_factory.mktemp("bad-input-log") / "daphne.log"
        with daphne(env, log) as base:
            yield {"base": base, "env": env, "log": log, **data}


def _rows(server: dict, query: str, *params) -> list[tuple]:
    """Rows straight from the server's database (`?` placeholders)."""
    env = server["env"]
    if env.get("DATABASE_URL"):
        import psycopg

        with psycopg.connect(env["DATABASE_URL"]) as conn:
            return conn.execute(query.replace("?", "%s"), params).fetchall()
    with sqlite3.connect(env["SQLITE_PATH"]) as conn:
        return conn.execute(query, params).fetchall()


def _post(server: dict, path: str, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server['base']}{path}", content=content, timeout=60,
        headers={"Authorization": f"Bearer {server['key']}", "Content-Type": "application/json",
                 **headers},
    )


def _assert_envelope(response, status: int, code: str) -> dict:
    """The documented JSON error envelope, with the request id of the response's header."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert code in ERROR_CODES
    assert error["requestId"] == response.headers["X-Request-Id"]
    return error


def _assert_healthy(server: dict) -> None:
    """The next ordinary request is stored: nothing above left the server stuck."""
    marker = f"healthy-{secrets.token_hex(4)}"
    response = _post(server, "/api/ingest", json.dumps({"status": "success", "message": marker}).encode())
    assert response.status_code == 201, response.text
    assert _rows(server, "SELECT count(*) FROM ingest_event WHERE message = ?", marker) == [(1,)]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _raw(port: int, request: bytes, chunks: list[bytes] = (), pause: float = 0) -> tuple[int, bytes, bytes]:
    """Send raw bytes (then each chunk after `pause` s); (status, header block, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        for chunk in chunks:
            time.sleep(pause)
            sock.sendall(chunk)
        received = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def _request_head(server: dict, length: int | None, path: str = "/api/ingest", extra: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {server['key']}",
             "Content-Type: application/json", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n").encode() + extra + b"\r\n"


UNPARSEABLE = {
    "truncated": b'{"status": "success", "message": "cut he',
    "invalid utf-8": b'{"status": "success", "message": "\xff\xfe\xc3\x28"}',
    "utf-8 cut mid character": b'{"status": "success", "message": "caf\xc3"}',
    "empty": b"",
    "duplicate keys": b'{"status": "success", "status": "failure"}',
    "NaN": b'{"status": "success", "durationMs": NaN}',
    "nested 100k deep": b'{"status": "success", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "objects nested 100k deep": b'{"status": "success", "metadata": ' + b'{"a":' * 100_000
    + b"1" + b"}" * 100_000 + b"}",
    "1e400": b'{"status": "success", "durationMs": 1e400}',
    "5000-digit durationMs": b'{"status": "success", "durationMs": ' + b"9" * 5000 + b"}",
    "5000-digit number in metadata": b'{"status": "success", "metadata": {"n": 1' + b"0" * 5000 + b"}}",
    "-1e400 in metadata": b'{"status": "success", "metadata": {"n": -1e400}}',
}
# The same faults inside a v1 event rather than at the top of the body.
V1_EVENT = b'{"eventType": "ticket.resolved", "category": "support", "actor": {"externalId": "u-1"}'
V1_BODY = {
    "truncated": b'{"events": [' + V1_EVENT + b', "metadata": {"a": "cut he',
    "invalid utf-8": b'{"events": [' + V1_EVENT + b', "metadata": {"a": "\xff\xfe"}}]}',
    "utf-8 cut mid character": b'{"events": [' + V1_EVENT + b', "metadata": {"a": "caf\xc3"}}]}',
    "empty": b"",
    "duplicate keys": b'{"events": [' + V1_EVENT + b', "category": "sales"}]}',
    "NaN": b'{"events": [' + V1_EVENT + b', "duration": NaN}]}',
    "nested 100k deep": b'{"events": [' + V1_EVENT + b', "metadata": {"a": ' + b"[" * 100_000
    + b"]" * 100_000 + b"}}]}",
    "objects nested 100k deep": b'{"events": [' + V1_EVENT + b', "metadata": ' + b'{"a":' * 100_000
    + b"1" + b"}" * 100_000 + b"}]}",
    "1e400": b'{"events": [' + V1_EVENT + b', "duration": 1e400}]}',
    "5000-digit durationMs": b'{"events": [' + V1_EVENT + b', "duration": ' + b"9" * 5000 + b"}]}",
    "5000-digit number in metadata": b'{"events": [' + V1_EVENT + b', "metadata": {"n": 1'
    + b"0" * 5000 + b"}}]}",
    "-1e400 in metadata": b'{"events": [' + V1_EVENT + b', "metadata": {"n": -1e400}}]}',
}
assert V1_BODY.keys() == UNPARSEABLE.keys()


# The catalogue's answers, on both executors (the `api` fixture); what only a server process
# shows (sockets, memory, its log, the dashboard pages) runs against the Daphne above.
@pytest.fixture
def send(api, source_and_key):
    key = source_and_key[1].secret

    def post(path: str, content: bytes):
        return api.post(path, content, HTTP_AUTHORIZATION=f"Bearer {key}")

    return post


@pytest.mark.django_db
@pytest.mark.parametrize("name", UNPARSEABLE)
@pytest.mark.parametrize("path", ["/api/ingest", "/api/v1/ingest/events"])
def test_bodies_that_do_not_parse_are_400_invalid_body_and_store_nothing(send, path, name):
    body = (V1_BODY if path.startswith("/api/v1") else UNPARSEABLE)[name]
    _assert_envelope(send(path, body), 400, "invalid_body")
    assert not Event.objects.exists()


# A server process only: its memory, and the same server healthy afterwards.
def test_ten_megabytes_with_content_length_is_413_and_the_server_stays_healthy(server):
    pid = server["base"].pid
    before = _rss_kib(pid)
    for path, code in (("/api/ingest", "payload_too_large"), ("/api/v1/ingest/events", "batch_too_large")):
        body = b'{"status": "success", "metadata": "' + b"x" * (10 * MB) + b'"}'
        try:
            response = _post(server, path, body)
        except httpx.WriteError:
            pytest.fail("the server closed the connection without answering")
        _assert_envelope(response, 413, code)
    _assert_healthy(server)
    # Daphne buffers what it is sent, but nothing may keep it: growth stays far below 2 × 10 MB.
    assert _rss_kib(pid) - before < 40 * 1024


# A server process only: raw chunked framing and its memory.
def test_ten_megabytes_chunked_without_content_length_is_413_and_memory_stays_bounded(server):
    pid = server["base"].pid
    before = _rss_kib(pid)
    for path, code in (("/api/ingest", "payload_too_large"), ("/api/v1/ingest/events", "batch_too_large")):
        piece = b"x" * 65536
        chunks = [b'{"events": "'] + [piece] * 160 + [b'"}']  # 10 MB
        framed = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks] + [b"0\r\n\r\n"]
        head = _request_head(server, None, path, b"Transfer-Encoding: chunked\r\n")
        try:
            status, _, body = _raw(server["base"].port, head, framed)
        except (BrokenPipeError, ConnectionResetError):
            pytest.fail("the server dropped the connection instead of answering 413")
        assert status == 413
        assert json.loads(body)["error"]["code"] == code
    _assert_healthy(server)
    assert _rss_kib(pid) - before < 40 * 1024


# A server process only: a body arriving over raw socket writes.
def test_a_body_trickled_over_two_seconds_is_answered_correctly(server):
    marker = f"slow-{secrets.token_hex(4)}"
    body = json.dumps({"status": "partial", "message": marker}).encode()
    pieces = [body[i:i + 5] for i in range(0, len(body), 5)]
    pause = 2 / len(pieces)
    status, _, answer = _raw(server["base"].port, _request_head(server, len(body)), pieces, pause)
    assert status == 201, answer
    event_id = json.loads(answer)["id"]
    assert _rows(server, "SELECT status, message FROM ingest_event WHERE public_id = ?", event_id) == [
        ("partial", marker)
    ]


WRONG_INGEST = [
    ("status", 1), ("status", None), ("status", ["success"]), ("status", {"v": "success"}),
    ("status", "SUCCESS"), ("message", 1), ("message", ["m"]), ("message", {"m": 1}),
    ("message", True), ("description", 1), ("description", []), ("eventType", 1),
    ("eventType", {}), ("externalId", 1), ("externalId", []), ("durationMs", "5"),
    ("durationMs", True), ("durationMs", []), ("durationMs", -1), ("durationMs", {}),
]


@pytest.mark.parametrize(("field", "value"), WRONG_INGEST, ids=[f"{f}={v!r}" for f, v in WRONG_INGEST])
@pytest.mark.django_db
def test_a_wrong_type_in_any_ingest_field_is_400_naming_it(send, field, value):
    body = {"status": "success", field: value}
    error = _assert_envelope(send("/api/ingest", json.dumps(body).encode()), 400, "invalid_body")
    assert field in error["message"]


GOOD_V1 = {"eventType": "ticket.resolved", "category": "support", "actor": {"externalId": "u-1"}}
WRONG_V1 = [
    ("eventType", 1), ("eventType", ["ticket.resolved"]), ("category", 7), ("category", None),
    ("actor", "u-1"), ("actor", ["u-1"]), ("actor", {"workerId": 5}), ("actor", {"externalId": 5}),
    ("actor", {"email": ["a@b.c"]}), ("timestamp", 1700000000), ("timestamp", {}),
    ("duration", "60"), ("duration", True), ("duration", 1.5), ("metadata", []),
    ("metadata", "text"),
]


@pytest.mark.parametrize(("field", "value"), WRONG_V1, ids=[f"{f}={v!r}" for f, v in WRONG_V1])
@pytest.mark.django_db
def test_a_wrong_type_in_any_v1_event_field_is_400_naming_it(send, field, value):
    body = {"events": [{**GOOD_V1, field: value}]}
    response = send("/api/v1/ingest/events", json.dumps(body).encode())
    error = _assert_envelope(response, 400, "invalid_body")
    assert field in error["message"]
    assert response.json()["accepted"] == 0


GOOD_SNAPSHOT = {"snapshotType": "tickets_open", "actor": {"externalId": "u-1"}, "metrics": {"open": 3}}
WRONG_SNAPSHOT = [
    ("snapshotType", 1), ("snapshotType", None), ("actor", 1), ("timestamp", 5),
    ("metrics", []), ("metrics", "3"), ("metrics", {"open": [3]}), ("metrics", {"open": None}),
    ("metadata", [1]),
]


@pytest.mark.parametrize(("field", "value"), WRONG_SNAPSHOT, ids=[f"{f}={v!r}" for f, v in WRONG_SNAPSHOT])
@pytest.mark.django_db
def test_a_wrong_type_in_any_snapshot_field_is_400(send, field, value):
    body = {**GOOD_SNAPSHOT, field: value}
    response = send("/api/v1/ingest/snapshots", json.dumps(body).encode())
    _assert_envelope(response, 400, "invalid_body")


@pytest.mark.parametrize("body", [b'[]', b'"events"', b'{"events": {}}', b'{"events": "x"}', b'null'])
@pytest.mark.django_db
def test_a_v1_request_that_is_not_an_events_object_is_400(send, body):
    _assert_envelope(send("/api/v1/ingest/events", body), 400, "invalid_body")


# Line breaks and NUL cannot be part of a header value: Daphne's HTTP parser refuses the request
# (a bare 400 before the app runs, so no envelope), and nothing reaches the application.
BROKEN_HEADER_KEYS = {
    "bare CR": b"abc\rX-Injected: yes",
    "bare LF": b"abc\nX-Injected: yes",
    "NUL": b"abc\x00def",
}
# Other bytes are legal in a header value: the key is an opaque string that works as a key.
ODD_BUT_LEGAL_KEYS = {
    "DEL and escape": b"abc\x7f\x1b[31m",
    "latin-1 bytes": b"caf\xe9",
}


def _send_with_key(server: dict, key: bytes, marker: str) -> tuple[int, bytes, bytes]:
    body = json.dumps({"status": "success", "message": marker}).encode()
    head = _request_head(server, len(body), extra=b"Idempotency-Key: " + key + b"\r\n")
    status, headers, answer = _raw(server["base"].port, head + body)
    assert b"X-Injected" not in headers and b"\x00" not in headers
    for line in headers.split(b"\r\n")[1:]:
        assert b":" in line, line  # every response line is a whole header: nothing was split
    return status, headers, answer


# A server process only: bytes no HTTP client library would send.
@pytest.mark.parametrize("key", BROKEN_HEADER_KEYS.values(), ids=BROKEN_HEADER_KEYS.keys())
def test_line_breaks_and_nul_in_idempotency_key_are_refused_without_splitting_headers(server, key):
    marker = f"inject-{secrets.token_hex(4)}"
    status, _, _ = _send_with_key(server, key, marker)
    assert status == 400
    assert _rows(server, "SELECT count(*) FROM ingest_event WHERE message = ?", marker) == [(0,)]
    _assert_healthy(server)


# A server process only: raw header bytes.
@pytest.mark.parametrize("key", ODD_BUT_LEGAL_KEYS.values(), ids=ODD_BUT_LEGAL_KEYS.keys())
def test_other_odd_bytes_in_idempotency_key_work_as_an_opaque_key(server, key):
    marker = f"odd-key-{secrets.token_hex(4)}"
    first = _send_with_key(server, key, marker)
    again = _send_with_key(server, key, marker)
    assert (first[0], again[0]) == (201, 201), (first[2], again[2])
    assert first[2] == again[2]
    assert b"idempotent-replayed: true" in again[1].lower()
    assert _rows(server, "SELECT count(*) FROM ingest_event WHERE message = ?", marker) == [(1,)]


HOSTILE = {
    "message": "<script>alert('xss')</script>",
    "description": "'; DROP TABLE ingest_event; -- \" OR 1=1 --",
    "eventType": "<img src=x onerror=alert(1)>",
    "externalId": "Robert'); DELETE FROM sources_key;--",
    "metadata": {"html": "</script><script>alert(2)</script>", "sql": "1' OR '1'='1",
                 "unicode": "ünïcødé ✓ \u202e"},
}


# A server process only: the dashboard pages of a logged-in session on the same server.
def test_sql_and_html_in_strings_are_stored_verbatim_and_shown_escaped(server):
    response = _post(server, "/api/ingest", json.dumps({"status": "failure", **HOSTILE}).encode())
    assert response.status_code == 201, response.text
    event_id = response.json()["id"]
    [(message, description, event_type, external_id, metadata)] = _rows(
        server, "SELECT message, description, event_type, external_id, metadata FROM ingest_event "
        "WHERE public_id = ?", event_id,
    )
    assert (message, description, event_type, external_id) == (
        HOSTILE["message"], HOSTILE["description"], HOSTILE["eventType"], HOSTILE["externalId"])
    assert (json.loads(metadata) if isinstance(metadata, str) else metadata) == HOSTILE["metadata"]
    assert _rows(server, "SELECT count(*) FROM sources_key") == [(1,)]  # the "DELETE" did nothing

    cookies = {server["cookie"]: server["session"]}
    base, org = server["base"], server["org"]
    detail = httpx.get(f"{base}/w/{org}/events/{event_id}/", cookies=cookies, timeout=30)
    live = httpx.get(f"{base}/w/{org}/events/", cookies=cookies, timeout=30)
    assert (detail.status_code, live.status_code) == (200, 200)
    for page in (detail.text, live.text):
        assert "<script>alert" not in page
        assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt;" in detail.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail.text
    feed = httpx.get(f"{base}/w/{org}/events/feed.json", cookies=cookies, timeout=30)
    assert feed.headers["Content-Type"].startswith("application/json")
    assert feed.headers["X-Content-Type-Options"] == "nosniff"
    [item] = [i for i in feed.json()["items"] if i["id"] == event_id]
    assert item["message"] == HOSTILE["message"]


def test_the_server_logged_no_unhandled_exception_during_the_catalogue(server):
    """Runs last in this module: the server is alive and its log holds no 500 or traceback."""
    _assert_healthy(server)
    log = server["log"].read_text()
    assert "Internal Server Error" not in log
    assert "Traceback" not in log
