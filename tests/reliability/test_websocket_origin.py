"""A dashboard websocket opens only from the site's own origin: scheme, host and port.

Any page may open a websocket to any host and the browser sends the member's cookie along, so
the handshake's Origin is the only sign of which page asked (ackly/origins.py).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from ackly.asgi import application
from tests.servers import (
    daphne,
    dashboard_socket,
    dashboard_socket_target,
    manage,
    own_database,
    own_redis,
    server_env,
)


@pytest.fixture
def cookie(member, workspace) -> bytes:
    client = Client()
    client.force_login(member)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


@pytest.fixture(autouse=True)
def _hand_back_thread_connections():
    """Channels' sync thread queried too: hand its connection back (PostgreSQL drops the DB)."""
    yield
    asyncio.run(database_sync_to_async(connections.close_all)())


def opens(
    workspace, cookie: bytes, host: str, origin: str | None, scheme: str = "ws",
    extra: list[tuple[bytes, bytes]] = (),
) -> bool:
    """Whether the member's socket to `host` is accepted with this Origin."""
    headers = [(b"host", host.encode()), (b"cookie", cookie), *extra]
    if origin is not None:
        headers.append((b"origin", origin.encode()))

    async def attempt() -> bool:
        communicator = WebsocketCommunicator(
            application, f"/ws/workspaces/{workspace.public_id}/", headers=headers
        )
        communicator.scope["scheme"] = scheme
        connected, _ = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return connected

    return asyncio.run(attempt())


pytestmark = pytest.mark.django_db(transaction=True)


def test_the_sites_own_origin_is_let_in(workspace, cookie):
    assert opens(workspace, cookie, "127.0.0.1:8000", "http://127.0.0.1:8000")
    assert opens(workspace, cookie, "localhost", "http://localhost")
    # The default port written or not is the same origin (as a browser may send either).
    assert opens(workspace, cookie, "localhost:80", "http://localhost")


@pytest.mark.parametrize(
    "origin",
    ["http://127.0.0.1:9999", "http://127.0.0.1", "http://localhost:1", "http://localhost:8000"],
)
def test_a_page_on_another_port_or_host_of_the_same_machine_is_refused(workspace, cookie, origin):
    assert not opens(workspace, cookie, "127.0.0.1:8000", origin)


def test_another_site_is_refused(workspace, cookie):
    assert not opens(workspace, cookie, "127.0.0.1:8000", "http://evil.example")
    assert not opens(workspace, cookie, "127.0.0.1:8000", "null")


def test_a_handshake_without_an_origin_is_refused(workspace, cookie):
    assert not opens(workspace, cookie, "127.0.0.1:8000", None)


def test_a_plain_http_page_cannot_open_the_socket_of_an_https_site(workspace, cookie):
    assert opens(workspace, cookie, "localhost", "https://localhost", scheme="wss")
    assert not opens(workspace, cookie, "localhost", "http://localhost", scheme="wss")
    assert not opens(workspace, cookie, "localhost", "https://localhost", scheme="ws")


def test_behind_a_trusted_tls_proxy_the_scheme_is_its_forwarded_proto(workspace, cookie, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    https = [(b"x-forwarded-proto", b"https")]
    assert opens(workspace, cookie, "localhost", "https://localhost", extra=https)
    assert not opens(workspace, cookie, "localhost", "http://localhost", extra=https)
    plain = [(b"x-forwarded-proto", b"http")]
    assert not opens(workspace, cookie, "localhost", "https://localhost", scheme="wss", extra=plain)


def test_the_header_is_not_believed_when_no_proxy_is_trusted(workspace, cookie, settings):
    settings.SECURE_PROXY_SSL_HEADER = None
    https = [(b"x-forwarded-proto", b"https")]
    assert not opens(workspace, cookie, "localhost", "https://localhost", extra=https)


def test_a_host_outside_allowed_hosts_is_refused_even_as_its_own_origin(workspace, cookie):
    # A DNS name rebound to this server: the page's origin and the Host agree, the name is not ours.
    assert "evil.example" not in django_settings.ALLOWED_HOSTS
    assert not opens(workspace, cookie, "evil.example", "http://evil.example")


def test_an_origin_in_csrf_trusted_origins_is_let_in(workspace, cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com", "https://*.acme.example"]
    assert opens(workspace, cookie, "127.0.0.1:8000", "https://app.example.com")
    assert opens(workspace, cookie, "127.0.0.1:8000", "https://eu.acme.example")
    assert not opens(workspace, cookie, "127.0.0.1:8000", "http://app.example.com")
    assert not opens(workspace, cookie, "127.0.0.1:8000", "https://app.example.com:8443")
    assert not opens(workspace, cookie, "127.0.0.1:8000", "https://other.example.com")


def test_an_anonymous_visitor_from_the_right_origin_is_still_refused(workspace):
    assert not opens(workspace, b"", "127.0.0.1:8000", "http://127.0.0.1:8000")


# --- a real Daphne on PostgreSQL and Redis --------------------------------------------------------

REDIS_DB = 13  # this file's own Redis database (its keys cleared before and after)

SETUP = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from bench.setup_data import logged_in_session
from workspaces.services import create_workspace

user = get_user_model().objects.create_user("wanda-ws", "wanda@example.com", "a-long-passphrase")
ws = create_workspace("Origins", "pro", owner=user)
print(json.dumps({"session": logged_in_session(user), "cookie": settings.SESSION_COOKIE_NAME,
                  "org": ws.public_id}))
"""


@pytest.fixture(scope="module")
def live_server_data(tmp_path_factory) -> Iterator[dict]:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://…")
    with own_redis(REDIS_DB) as redis_url, own_database(
        server_env(REDIS_URL=redis_url), "ackly_origin"
    ) as env:
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        with daphne(env, tmp_path_factory.mktemp("origin") / "daphne.log") as base:
            yield {"base": base, **data}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.server
def test_daphne_refuses_a_members_socket_from_another_port_and_accepts_its_own_page(
    live_server_data,
):
    import aiohttp

    d = live_server_data
    url, headers = dashboard_socket_target(d["base"], d["org"], d["cookie"], d["session"])
    port = d["base"].port

    async def handshake_status(origin: str) -> int:
        async with aiohttp.ClientSession() as client:
            try:
                async with client.ws_connect(url, headers={**headers, "Origin": origin}):
                    return 101
            except aiohttp.WSServerHandshakeError as refused:
                return refused.status

    async def scenario() -> tuple[list[int], bool]:
        refused = [
            await handshake_status(origin)
            for origin in (f"http://127.0.0.1:{port + 1}", f"https://127.0.0.1:{port}",
                           f"http://localhost:{port}", "http://evil.example")
        ]
        async with dashboard_socket(d["base"], d["org"], d["cookie"], d["session"]) as ws:
            accepted = not ws.closed
        return refused, accepted

    refused, accepted = asyncio.run(scenario())
    assert refused == [403, 403, 403, 403]
    assert accepted
