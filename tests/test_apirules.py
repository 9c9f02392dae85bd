"""Django's rules as the fast lane asks them (ackly/apirules.py) are what the API stack applies.

Each test sends one request through a freshly built API handler (settings.API_MIDDLEWARE, as
the servers run it; the fast lane is off on SQLite, so the pipeline answers) and asks the fast
lane's code about the very same ASGI scope: the headers of its 201 must be the handler's, name
for name and value for value, and what the handler would not serve it must hand over.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

from ackly.apirules import ApiRules, request_headers, request_of
from ackly.handlers import ApiASGIHandler
from billing.services import QuotaState
from ingest.fastlane import FastLane, _Pending, _Stored
from ingest.ratelimits import BurstState

pytestmark = pytest.mark.django_db(transaction=True)

# Their values are the request's own (ids, counts, lengths): compared by name only.
PER_ANSWER = {
    "x-request-id", "content-length", "x-quota-remaining", "x-quota-reset", "x-quota-limit",
    "ratelimit-remaining", "ratelimit-reset", "ratelimit-limit",
}


def _scope(secret: str, *, host: bytes = b"127.0.0.1", extra=()) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/ingest", "raw_path": b"/api/ingest", "query_string": b"",
        "root_path": "", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 40000),
        "headers": [
            (b"host", host), (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {secret}".encode()), *extra,
        ],
    }


def _run(app, scope: dict, body: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # no disconnect: Django stops listening once it answered

    async def send(message):
        sent.append(message)

    async_to_sync(app)({**scope, "headers": [*scope["headers"],
                                            (b"content-length", str(len(body)).encode())]},
                       receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], [(bytes(n).lower(), bytes(v)) for n, v in start["headers"]]


def _fast_answer(scope: dict) -> list[tuple[bytes, bytes]]:
    """The headers of the fast lane's 201 for `scope` (`FastLane._send_stored`)."""
    lane = FastLane(app=None)
    lane.rules = ApiRules()
    security = lane.rules.for_scope(scope)
    assert security is not None
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def answer():
        item = _Pending(
            digest="", idem_key=None, request_hash=None, received_at=datetime.now(UTC),
            future=asyncio.get_running_loop().create_future(), security=security,
        )
        end = datetime.now(UTC) + timedelta(days=3)
        burst = BurstState(limit=500, remaining=499, reset_seconds=1, exceeded=False)
        await lane._send_stored(send, item, _Stored(201, '{"id":"x"}', QuotaState(10, 1, 1, end), burst))

    async_to_sync(answer)()
    return [(bytes(n).lower(), bytes(v)) for n, v in sent[0]["headers"]]


def _assert_same(fast: list[tuple[bytes, bytes]], full: list[tuple[bytes, bytes]]) -> None:
    fast_map, full_map = dict(fast), dict(full)
    assert len(fast_map) == len(fast) and len(full_map) == len(full)  # no name twice
    assert set(fast_map) == set(full_map)
    for name, value in full_map.items():
        if name.decode() not in PER_ANSWER:
            assert fast_map[name] == value, name


def test_a_fast_201_carries_exactly_the_headers_of_the_api_stacks_201(secret):
    scope = _scope(secret)
    status, full = _run(ApiASGIHandler(), scope, b'{"status":"success"}')
    assert status == 201
    _assert_same(_fast_answer(scope), full)


@override_settings(
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), SECURE_HSTS_SECONDS=3600,
    SECURE_HSTS_INCLUDE_SUBDOMAINS=True, SECURE_HSTS_PRELOAD=True,
    SECURE_REFERRER_POLICY=["same-origin", "strict-origin"],
    SECURE_CROSS_ORIGIN_OPENER_POLICY="same-origin-allow-popups", X_FRAME_OPTIONS="SAMEORIGIN",
)
def test_behind_a_tls_proxy_the_fast_201_has_the_stacks_hsts_and_security_headers(secret):
    scope = _scope(secret, extra=[(b"x-forwarded-proto", b"https")])
    status, full = _run(ApiASGIHandler(), scope, b'{"status":"success"}')
    assert status == 201
    assert dict(full)[b"strict-transport-security"] == b"max-age=3600; includeSubDomains; preload"
    _assert_same(_fast_answer(scope), full)


@pytest.mark.parametrize("case", ["host", "https", "agent"])
def test_a_request_the_stack_would_not_serve_as_it_is_is_handed_over(secret, case):
    overrides: dict = {}
    scope = _scope(secret)
    if case == "host":
        scope = _scope(secret, host=b"evil.example")
    elif case == "https":
        overrides = {"SECURE_SSL_REDIRECT": True}
    else:
        overrides = {"DISALLOWED_USER_AGENTS": [re.compile("badbot")]}
        scope = _scope(secret, extra=[(b"user-agent", b"badbot/1.0")])
    with override_settings(**overrides):
        status, _ = _run(ApiASGIHandler(), scope, b'{"status":"success"}')
        assert status != 201
        assert ApiRules().for_scope(scope) is None


def test_a_verdict_is_remembered_per_set_of_headers_not_per_key_or_idempotency_key(secret):
    rules = ApiRules()
    first = rules.for_scope(_scope(secret, extra=[(b"idempotency-key", b"a")]))
    again = rules.for_scope(_scope("ak_live_" + "x" * 40, extra=[(b"idempotency-key", b"b")]))
    assert first is not None and again is first
    assert len(rules.remembered) == 1
    assert rules.for_scope(_scope(secret, host=b"localhost")) is not first
    assert len(rules.remembered) == 2


def test_repeated_headers_are_joined_as_djangos_request_joins_them():
    """The fast lane reads the scope's headers as the pipeline reads Django's META."""
    scope = _scope("ak_live_" + "a" * 40, extra=[
        (b"idempotency-key", b"first"), (b"x-forwarded-for", b"10.0.0.1"),
        (b"idempotency-key", b"second"), (b"authorization", b"Bearer ak_live_" + b"b" * 40),
    ])
    meta = request_of(scope).META
    headers = request_headers(scope)
    assert headers[b"idempotency-key"] == b"first,second"
    assert headers[b"authorization"].count(b",") == 1

    def meta_name(name: bytes) -> str:
        return "CONTENT_TYPE" if name == b"content-type" else (
            "HTTP_" + name.decode().upper().replace("-", "_")
        )

    assert {meta_name(name): value.decode("latin-1") for name, value in headers.items()} == {
        name: value for name, value in meta.items()
        if name.startswith("HTTP_") or name == "CONTENT_TYPE"
    }
