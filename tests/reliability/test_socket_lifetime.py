"""A socket lives no longer than its session, on every server process (STYLE.md, Realtime).

Two Daphne processes share one PostgreSQL database and one Redis: a logout through process A
closes the session's sockets held by process B (and A) within a second, and a deactivation
made by a third process (manage.py) closes the user's sockets on both. The servers get a
throwaway database and Redis db 5 (its Ackly keys cleared before and after).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import (
    daphne,
    dashboard_socket,
    dashboard_socket_target,
    manage,
    own_database,
    own_redis,
    require_postgres_and_redis,
    server_env,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.server]

REDIS_DB = 5
CLOSE_WITHIN_SECONDS = 1.0

# Run in the servers' environment: two users, each with two logged-in sessions, in one workspace.
SETUP = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from bench.setup_data import logged_in_session
from workspaces.models import Membership
from workspaces.services import create_workspace

users = get_user_model().objects
lee = users.create_user("lee-lifetime", "lee@example.com", "a-long-passphrase")
kim = users.create_user("kim-lifetime", "kim@example.com", "a-long-passphrase")
ws = create_workspace("Lifetime", "pro", owner=lee)
Membership.objects.create(workspace=ws, user=kim)
print(json.dumps({
    "cookie": settings.SESSION_COOKIE_NAME, "org": ws.public_id,
    "lee": [logged_in_session(lee), logged_in_session(lee)],
    "kim": [logged_in_session(kim), logged_in_session(kim)],
}))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    """Processes A and B on one fresh PostgreSQL database and Redis db 5; their URLs and data."""
    require_postgres_and_redis()
    logs = tmp_path_factory.mktemp("socket-lifetime")
    with own_redis(REDIS_DB) as redis_url, own_database(
        server_env(REDIS_URL=redis_url), "ackly_sockets"
    ) as env:
        data = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        with daphne(env, logs / "a.log") as a, daphne(env, logs / "b.log") as b:
            yield {"a": a, "b": b, "env": env, **data}


def log_out(base: str, cookie: str, session: str) -> None:
    """What the Log out button does: a POST with the session and its CSRF token."""
    with httpx.Client(base_url=base, cookies={cookie: session}, timeout=10) as client:
        page = client.get("/workspaces/new/")
        assert page.status_code == 200, page.status_code
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = client.post("/logout/", data={"csrfmiddlewaretoken": token},
                               headers={"Origin": base})
        assert response.status_code == 302, response.text


async def closed_within(ws, seconds: float) -> int:
    """The close code the server sends within `seconds` (frames before it are skipped)."""
    import aiohttp

    deadline = time.monotonic() + seconds
    while True:
        message = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return message.data if message.type == aiohttp.WSMsgType.CLOSE else ws.close_code
        assert message.type == aiohttp.WSMsgType.TEXT, message


def test_logging_out_through_a_closes_the_sessions_socket_on_b_within_a_second(cluster):
    import aiohttp

    org, cookie = cluster["org"], cluster["cookie"]
    ending, other = cluster["lee"]

    async def scenario() -> tuple[int, int, float, bool]:
        async with dashboard_socket(cluster["b"], org, cookie, ending) as on_b, \
                dashboard_socket(cluster["a"], org, cookie, ending) as on_a, \
                dashboard_socket(cluster["b"], org, cookie, other) as other_session:
            await asyncio.to_thread(log_out, cluster["a"], cookie, ending)
            logged_out = time.monotonic()
            code_b = await closed_within(on_b, CLOSE_WITHIN_SECONDS)
            took = time.monotonic() - logged_out
            code_a = await closed_within(on_a, CLOSE_WITHIN_SECONDS)
            # The user's other session is not logged out: its socket stays.
            with pytest.raises(asyncio.TimeoutError):
                await other_session.receive(timeout=1.0)
            return code_b, code_a, took, other_session.closed

    code_b, code_a, took, other_closed = asyncio.run(scenario())
    assert (code_b, code_a) == (4401, 4401)
    assert took < CLOSE_WITHIN_SECONDS
    assert not other_closed

    async def reconnect() -> int:
        async with aiohttp.ClientSession() as client:
            url, headers = dashboard_socket_target(cluster["b"], org, cookie, ending)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(url, headers=headers)
            return refused.value.status

    assert asyncio.run(reconnect()) == 403  # and the handshake refuses it from now on


def test_a_deactivation_by_another_process_closes_the_users_sockets_on_a_and_b(cluster):
    org, cookie = cluster["org"], cluster["cookie"]
    first, second = cluster["kim"]
    deactivate = (
        "from django.contrib.auth import get_user_model\n"
        "user = get_user_model().objects.get(username='kim-lifetime')\n"
        "user.is_active = False\n"
        "user.save()\n"
    )

    async def scenario() -> tuple[int, int, float]:
        async with dashboard_socket(cluster["a"], org, cookie, first) as on_a, \
                dashboard_socket(cluster["b"], org, cookie, second) as on_b:
            await asyncio.to_thread(manage, cluster["env"], "shell", "-c", deactivate)
            done = time.monotonic()
            codes = (await closed_within(on_a, CLOSE_WITHIN_SECONDS),
                     await closed_within(on_b, CLOSE_WITHIN_SECONDS))
            return *codes, time.monotonic() - done

    code_a, code_b, took = asyncio.run(scenario())
    assert (code_a, code_b) == (4401, 4401)
    assert took < CLOSE_WITHIN_SECONDS
