"""The two executors of the API, behind one small client: the `api` fixture (tests/conftest.py).

`django`: Django's in-process test client; every request goes through ingest/pipeline.py and
the DRF views. `fastlane`: one uvicorn process per test session, started as the production
recipe runs it (DEBUG=0, collected static files, `--no-proxy-headers`, a TLS proxy's
X-Forwarded-Proto) with the fast lane on, on the suite's own PostgreSQL test database and Redis
database, reached over HTTP. Requests the fast lane does not take fall through to Django inside
that process, so the v1 paths test the ASGI stack end to end.

A test on `fastlane` runs as a transactional test (its rows are committed, so the server sees
them) and the suite's per-test cache clearing covers the server too (same Redis database). Only
available with PostgreSQL and Redis: on SQLite the param is skipped with the reason.

Both return an `ApiResponse`: status, headers (case-insensitive), raw body and parsed JSON.
Requests take Django's test-client form (`post(path, data, content_type=…, HTTP_X_Y=…)` or
`headers={"X-Y": …}`), so a test reads the same for both executors.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.test import Client
from django.utils.datastructures import CaseInsensitiveMapping

from tests.servers import Server, collected_static, server_env, uvicorn

EXECUTORS = ("django", "fastlane")
FASTLANE_UNAVAILABLE = (
    "fastlane executor: needs PostgreSQL and Redis (no fast lane on SQLite or without Redis); "
    "CI's second pass runs it"
)
FASTLANE_METRICS_TOKEN = "fastlane-api-metrics-token"  # its GET /metrics
# What a TLS proxy in front of the production recipe adds (docs/deployment.md).
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


class ApiResponse:
    """What a client sees: status, headers, raw body; indexing reads a header, like Django's."""

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = CaseInsensitiveMapping(dict(headers))
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def __contains__(self, name: str) -> bool:
        return name in self.headers

    def has_header(self, name: str) -> bool:
        return name in self.headers

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def __repr__(self) -> str:
        return f"<ApiResponse {self.status_code} {self.content[:200]!r}>"


def header_name(meta_key: str) -> str:
    """`HTTP_IDEMPOTENCY_KEY` → `Idempotency-Key`; `CONTENT_TYPE` → `Content-Type`."""
    if meta_key.startswith("HTTP_"):
        meta_key = meta_key[5:]
    elif meta_key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        raise TypeError(f"{meta_key} cannot be sent over HTTP; keep such a test on one executor")
    return "-".join(part.capitalize() for part in meta_key.split("_"))


def _body(data: Any) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    return (data if isinstance(data, str) else json.dumps(data)).encode()


class Api:
    """post/get/generic as Django's test client spells them, on one executor."""

    executor: str

    def for_thread(self) -> Api:
        """A client another thread may use at the same time as this one."""
        return self

    def post(self, path: str, data: Any = None, content_type: str = "application/json",
             headers: Mapping[str, str] | None = None, **extra: str) -> ApiResponse:
        return self.generic("POST", path, data, content_type, headers, **extra)

    def get(self, path: str, headers: Mapping[str, str] | None = None,
            **extra: str) -> ApiResponse:
        return self.generic("GET", path, None, None, headers, **extra)

    def generic(self, method: str, path: str, data: Any = None,
                content_type: str | None = "application/octet-stream",
                headers: Mapping[str, str] | None = None, **extra: str) -> ApiResponse:
        raise NotImplementedError


class DjangoApi(Api):
    executor = "django"

    def __init__(self) -> None:
        # As strict as a real HTTP client gets: no CSRF token, no session.
        self.client = Client(enforce_csrf_checks=True)

    def for_thread(self) -> Api:
        return DjangoApi()  # Django's test client keeps per-request state

    def generic(self, method: str, path: str, data: Any = None,
                content_type: str | None = "application/octet-stream",
                headers: Mapping[str, str] | None = None, **extra: str) -> ApiResponse:
        kwargs: dict[str, Any] = {"headers": headers, **extra}
        if content_type is not None:
            kwargs["content_type"] = content_type
        response = self.client.generic(method, path, _body(data), **kwargs)
        headers = dict(response.headers)
        if response.cookies:  # Django keeps them apart from the headers; a client sees both
            headers["Set-Cookie"] = response.cookies.output(header="").strip()
        return ApiResponse(response.status_code, headers, response.content)


class HttpApi(Api):
    executor = "fastlane"

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def generic(self, method: str, path: str, data: Any = None,
                content_type: str | None = "application/octet-stream",
                headers: Mapping[str, str] | None = None, **extra: str) -> ApiResponse:
        sent = dict(PROXY_HEADERS)
        body = _body(data)
        if content_type is not None and (body or method != "GET"):
            sent["Content-Type"] = content_type
        sent.update({header_name(key): value for key, value in extra.items()})
        sent.update(headers or {})
        # Whitespace around a field value is not part of it on the wire (RFC 9110 §5.5).
        sent = {name: value.strip() for name, value in sent.items()}
        response = self.client.request(method, path, content=body, headers=sent)
        return ApiResponse(response.status_code, response.headers, response.content)


# Rows migrations made and no test changes; every other table is emptied after a test.
KEPT_BY_FLUSH = frozenset({"django_content_type", "auth_permission", "django_migrations"})


@contextmanager
def flush_by_delete(connection: Any) -> Iterator[None]:
    """A transactional test's flush as DELETEs in one transaction instead of one TRUNCATE.

    TRUNCATE makes new files for every table and index: 1-2 s on PostgreSQL per test, where
    DELETE of a test's few rows takes milliseconds. The deferred foreign keys and reference
    checks see empty tables at COMMIT; flush's post_migrate signal then makes the default
    plans again (billing.plans.ensure_default_plans), as after a TRUNCATE.
    """
    ops = connection.ops
    truncate = ops.sql_flush

    def sql_flush(style: Any, tables: Any, *, reset_sequences: bool = False,
                  allow_cascade: bool = False) -> list[str]:
        if reset_sequences:  # only TRUNCATE … RESTART IDENTITY does both
            return truncate(style, tables, reset_sequences=True, allow_cascade=allow_cascade)
        return [f"DELETE FROM {ops.quote_name(table)};"
                for table in sorted(tables) if table not in KEPT_BY_FLUSH]

    ops.sql_flush = sql_flush
    try:
        yield
    finally:
        del ops.sql_flush  # the class's own method again


def _test_database_url() -> str:
    """DATABASE_URL pointed at the test database pytest-django made from it."""
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))


@contextmanager
def fastlane_server(log_path: Path, metrics_token: str) -> Iterator[Server]:
    """One uvicorn process in the production recipe on the suite's test database and Redis."""
    env = server_env(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(48),
        STATIC_ROOT=collected_static(),
        DATABASE_URL=_test_database_url(),
        REDIS_URL=os.environ["REDIS_URL"],
        INGEST_FAST_LANE="1",
        METRICS_TOKEN=metrics_token,
    )
    with uvicorn(env, log_path) as base:
        yield base


def http_client(base: str) -> httpx.Client:
    # No Accept-Encoding: the raw body is what the server sent.
    return httpx.Client(base_url=base, timeout=30, headers={"Accept-Encoding": "identity"})
