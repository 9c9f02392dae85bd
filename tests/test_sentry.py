"""SENTRY_DSN: errors reach a real HTTP receiver, with keys and credentials scrubbed."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.servers import manage, server_env

KEY = "ak_live_" + "Zq9" * 13 + "x"  # well-formed, never issued
SCRIPT = f"""
import sentry_sdk
from django.test import Client
from django.test.utils import override_settings

def sync_job(presented):
    # The key sits in a local variable and in the exception's text, as careless code would.
    header = "Bearer {KEY}"
    raise ValueError(f"could not use {{presented}} from {{header}}")

try:
    sync_job("{KEY}")
except ValueError:
    sentry_sdk.capture_exception()

with override_settings(ROOT_URLCONF="tests.ingest.raising_urls"):
    answer = Client(HTTP_HOST="localhost").post("/api/boom", HTTP_AUTHORIZATION="Bearer {KEY}", data="{{}}",
                           content_type="application/json")
assert answer.status_code == 500, answer.status_code
sentry_sdk.flush(timeout=10)
print("sent")
"""


class Receiver(BaseHTTPRequestHandler):
    """Sentry's envelope endpoint, keeping every body it is sent."""

    bodies: list[bytes] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        self.bodies.append(raw)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_errors_reach_sentry_without_a_key_or_an_authorization_header(receiver):
    dsn = f"http://publickey@127.0.0.1:{receiver.server_port}/42"
    out = manage(server_env(SENTRY_DSN=dsn), "shell", "-c", SCRIPT)

    assert out.strip().endswith("sent")
    events = [
        json.loads(line)
        for body in Receiver.bodies
        for line in body.splitlines()
        if line.startswith(b"{") and b'"exception"' in line
    ]
    types = {value["type"] for event in events for value in event["exception"]["values"]}
    assert {"ValueError", "RuntimeError"} <= types  # the captured one and the API's 500
    everything = b"\n".join(Receiver.bodies)
    assert KEY.encode() not in everything
    assert KEY[:20].encode() not in everything
    assert b"Bearer" not in everything and b"bearer" not in everything
    assert b"[Filtered]" in everything
    assert b'"Authorization"' not in everything
