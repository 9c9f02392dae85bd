"""Dashboard sessions end after SESSION_IDLE_TIMEOUT_SECONDS idle and SESSION_MAX_AGE_SECONDS in
all (ackly/sessions.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.db import connections
from django.test.utils import CaptureQueriesContext

from ackly.asgi import application
from bench.setup_data import logged_in_session


def idle() -> int:
    return django_settings.SESSION_IDLE_TIMEOUT_SECONDS


def max_age() -> int:
    return django_settings.SESSION_MAX_AGE_SECONDS


class Clock:
    """The one instant both Django's session expiry and ackly.sessions read."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("ackly.sessions.time.time", lambda: c.now)
    monkeypatch.setattr("django.utils.timezone.now", lambda: datetime.fromtimestamp(c.now, UTC))
    return c


@pytest.fixture
def page(workspace) -> str:
    return f"/w/{workspace.public_id}/events/"


def signed_in(response) -> bool:
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    return False


def session_writes(client, path: str) -> tuple[bool, int]:
    """Whether the page was served signed in, and how many statements wrote the session row."""
    with CaptureQueriesContext(connections["default"]) as queries:
        served = signed_in(client.get(path))
    writes = [
        q["sql"] for q in queries.captured_queries
        if "django_session" in q["sql"] and not q["sql"].lstrip().upper().startswith("SELECT")
    ]
    return served, len(writes)


pytestmark = pytest.mark.django_db


def test_the_idle_timeout_is_the_session_cookie_age_and_shorter_than_the_maximum():
    assert django_settings.SESSION_COOKIE_AGE == idle() < max_age()
    assert not django_settings.SESSION_SAVE_EVERY_REQUEST  # renewed once a minute instead


def test_a_session_idle_past_the_timeout_is_signed_out(client, member, page, clock):
    client.force_login(member)
    assert signed_in(client.get(page))
    clock.advance(idle() - 1)
    assert signed_in(client.get(page))
    clock.advance(idle() + 1)
    assert not signed_in(client.get(page))


def test_an_active_session_outlives_the_idle_timeout(client, member, page, clock):
    client.force_login(member)
    for _ in range(4):  # never idle for long, and 3 idle timeouts in all
        clock.advance(idle() * 3 // 4)
        assert signed_in(client.get(page))


def test_the_expiry_is_renewed_at_most_once_a_minute(client, member, page, clock):
    client.force_login(member)
    client.get(page)  # the first visit remembers the workspace (the switcher's one write)
    assert session_writes(client, page) == (True, 0)  # sign-in saved the expiry just now
    clock.advance(30)
    assert session_writes(client, page) == (True, 0)
    clock.advance(31)
    assert session_writes(client, page) == (True, 1)
    assert Session.objects.get().expire_date.timestamp() == clock.now + idle()
    assert session_writes(client, page) == (True, 0)


def stay_active_until_the_maximum(client, page, clock) -> None:
    """A request every half idle period: signed in throughout, signed out at the maximum."""
    step = idle() // 2
    for _ in range(max_age() // step - 1):
        clock.advance(step)
        assert signed_in(client.get(page))
    clock.advance(max_age() - (max_age() // step - 1) * step)
    assert not signed_in(client.get(page))


def test_a_session_past_the_absolute_maximum_is_signed_out_however_active(
    client, member, page, clock
):
    client.force_login(member)
    stay_active_until_the_maximum(client, page, clock)
    # A fresh sign-in starts a fresh clock.
    client.force_login(member)
    assert signed_in(client.get(page))


def test_a_session_made_without_the_sign_in_stamp_starts_its_clock_at_first_use(
    client, member, page, clock
):
    # As bench/setup_data.py seeds one: written straight to the store, no login() signal.
    client.cookies[django_settings.SESSION_COOKIE_NAME] = logged_in_session(member)
    clock.advance(idle() // 2)
    assert signed_in(client.get(page))  # its clock starts here, not at the seeding
    stay_active_until_the_maximum(client, page, clock)


def open_socket(workspace, cookie: str) -> tuple[bool, int | None]:
    """A dashboard socket's handshake with this session cookie: (accepted, close code)."""

    async def connect() -> tuple[bool, int | None]:
        communicator = WebsocketCommunicator(
            application, f"/ws/workspaces/{workspace.public_id}/",
            headers=[(b"host", b"testserver"), (b"origin", b"http://testserver"),
                     (b"cookie", cookie.encode())],
        )
        try:
            answer = await communicator.connect()
            if answer[0]:
                await communicator.disconnect()
            return answer
        finally:
            await database_sync_to_async(connections.close_all)()

    return asyncio.run(connect())


@pytest.mark.django_db(transaction=True)
def test_a_websocket_with_an_idle_expired_session_is_refused(client, member, workspace, clock):
    client.force_login(member)
    name = django_settings.SESSION_COOKIE_NAME
    cookie = f"{name}={client.cookies[name].value}"
    clock.advance(idle() + 1)

    assert open_socket(workspace, cookie) == (False, 4401)


@pytest.mark.django_db(transaction=True)
def test_a_websocket_with_a_session_past_its_maximum_age_is_refused(
    client, member, workspace, page, clock
):
    """Kept active, the session is inside its idle window but past its absolute maximum: the
    pages sign it out, and so does the handshake (one rule, ackly.sessions.past_max_age)."""
    client.force_login(member)
    name = django_settings.SESSION_COOKIE_NAME
    cookie = f"{name}={client.cookies[name].value}"
    step = idle() // 2
    for _ in range(max_age() // step - 1):
        clock.advance(step)
        assert signed_in(client.get(page))
    clock.advance(max_age() - (max_age() // step - 1) * step + 60)

    assert open_socket(workspace, cookie) == (False, 4401)
    assert not signed_in(client.get(page))
