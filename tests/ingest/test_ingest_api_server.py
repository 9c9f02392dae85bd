"""POST /api/ingest over real HTTP: the seed's curl example, and chunked bodies through Daphne."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ingest.models import Event
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SEED = (
    '{"status": "success", "message": "Nightly backup completed", "eventType": "backup", '
    '"durationMs": 4820, "metadata": { "sizeBytes": 104857600 }}'
)
HEX24 = re.compile(r"[0-9a-f]{24}")
LIMIT = 1024 * 1024


@pytest.mark.django_db(transaction=True)
def test_the_seed_example_works_against_a_live_server(live_server, secret):
    request = urllib.request.Request(
        f"{live_server.url}/api/ingest",
        data=SEED.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
        body = json.loads(response.read())
    assert HEX24.fullmatch(body["id"])
    assert Event.objects.filter(public_id=body["id"]).exists()


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def daphne_server(tmp_path_factory):
    """A real Daphne process on a free port, on its own migrated SQLite file; (url, key)."""
    daphne = shutil.which("daphne", path=str(Path(sys.executable).parent)) or shutil.which("daphne")
    if daphne is None:
        pytest.skip("daphne is not installed")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(SQLITE_PATH=str(tmp_path_factory.mktemp("daphne") / "db.sqlite3"), DEBUG="1")
    _manage(env, "migrate", "--noinput")
    org_id = _manage(env, "createworkspace", "Daphne test", "--plan", "pro")
    key = _manage(env, "createsource", org_id, "Backups")
    port = free_port()
    process = subprocess.Popen(
        [daphne, "-b", "127.0.0.1", "-p", str(port), "ackly.asgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(process.stderr.read().decode()) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", key, port
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.server
def test_the_seed_curl_command_works_byte_for_byte_against_daphne(daphne_server):
    url, key, _ = daphne_server
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    done = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", "-X", "POST", f"{url}/api/ingest",
         "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
         "-d", SEED],
        capture_output=True, text=True, timeout=30, check=True,
    )
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "201"
    assert HEX24.fullmatch(json.loads(body)["id"])


def _post_chunked(port: int, key: str, chunks) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST", "/api/ingest", body=chunks, encode_chunked=True,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                 "Transfer-Encoding": "chunked"},
    )
    return conn.getresponse()


@pytest.mark.server
def test_a_chunked_body_under_the_limit_is_stored(daphne_server):
    _, key, port = daphne_server
    response = _post_chunked(port, key, iter([b'{"status": "succ', b'ess", "message": "chunked"}']))
    assert response.status == 201
    assert HEX24.fullmatch(json.loads(response.read())["id"])


@pytest.mark.server
def test_a_chunked_body_over_1_mb_is_413_without_content_length(daphne_server):
    _, key, port = daphne_server
    chunk = b"x" * 65536
    chunks = iter([b'{"status": "success", "metadata": "'] + [chunk] * 32 + [b'"}'])
    response = _post_chunked(port, key, chunks)
    assert response.status == 413
    body = json.loads(response.read())
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["requestId"] == response.getheader("X-Request-Id")
    assert response.getheader("X-Quota-Limit") == "5000000"


@pytest.mark.server
def test_a_405_and_a_404_are_envelopes_over_http(daphne_server):
    url, _, _ = daphne_server
    for path, status, code in (("/api/ingest", 405, "method_not_allowed"),
                               ("/api/missing", 404, "not_found")):
        try:
            urllib.request.urlopen(f"{url}{path}")
        except urllib.error.HTTPError as exc:
            assert exc.code == status
            assert exc.headers["Content-Type"] == "application/json"
            assert json.loads(exc.read())["error"]["code"] == code
        else:
            pytest.fail(f"{path} answered 2xx")


async def test_the_asgi_guard_hands_django_at_most_limit_plus_one_bytes():
    from ackly.asgi import BodyLimitGuard

    messages = [
        {"type": "http.request", "body": b"a" * 6, "more_body": True},
        {"type": "http.request", "body": b"b" * 6, "more_body": True},
        {"type": "http.request", "body": b"c" * 6, "more_body": False},
        {"type": "http.disconnect"},
    ]
    seen: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        seen.append(await receive())  # Django then listens for the disconnect

    scope = {"type": "http", "path": "/api/ingest", "headers": []}
    await BodyLimitGuard(app, limit=10)(scope, receive, None)
    assert b"".join(m.get("body", b"") for m in seen) == b"a" * 6 + b"b" * 5
    assert seen[1]["more_body"] is False
    assert seen[-1] == {"type": "http.disconnect"}


async def test_the_asgi_guard_leaves_other_paths_alone():
    from ackly.asgi import BodyLimitGuard

    messages = [{"type": "http.request", "body": b"x" * 50, "more_body": False}]

    async def receive():
        return messages.pop(0)

    got: list[dict] = []

    async def app(scope, receive, send):
        got.append(await receive())

    await BodyLimitGuard(app, limit=10)({"type": "http", "path": "/admin/"}, receive, None)
    assert got[0]["body"] == b"x" * 50
