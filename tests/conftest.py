"""Personas and shared fixtures: an owner, a member and an outsider, each with a workspace."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.db.backends.signals import connection_created

from bench.run import ForeignRedisData, clear_redis
from sources.services import _last_touched, create_source
from tests.executors import (
    EXECUTORS,
    FASTLANE_METRICS_TOKEN,
    FASTLANE_UNAVAILABLE,
    DjangoApi,
    HttpApi,
    fastlane_server,
    flush_by_delete,
    http_client,
)
from workspaces import search_plan
from workspaces.models import Membership, Role
from workspaces.services import create_workspace

CHROMIUM = "/usr/bin/chromium"


def pytest_collection_modifyitems(config, items):
    """Tests that need a real PostgreSQL, Redis or browser say clearly why they were skipped."""
    needs = {
        "postgres": (
            lambda: connection.vendor == "postgresql",
            "needs PostgreSQL: run with DATABASE_URL=postgres://… (.ci/run's second pass does)",
        ),
        "redis": (
            lambda: bool(settings.REDIS_URL),
            "needs Redis: run with REDIS_URL=redis://… (.ci/run's second pass does)",
        ),
        "browser": (
            lambda: os.path.exists(CHROMIUM) or shutil.which("chromium") is not None,
            f"needs Chromium at {CHROMIUM}: apt-get install chromium (.ci/run installs it)",
        ),
    }
    fastlane_available = connection.vendor == "postgresql" and bool(settings.REDIS_URL)
    for item in items:
        for marker, (available, reason) in needs.items():
            if item.get_closest_marker(marker) and not available():
                item.add_marker(pytest.mark.skip(reason=reason))
        if _executor(item) == "fastlane":
            if not fastlane_available:
                item.add_marker(pytest.mark.skip(reason=FASTLANE_UNAVAILABLE))
            # Committed rows, so the server process sees what the test set up: the closest
            # django_db marker, made transactional.
            marker = item.get_closest_marker("django_db")
            options = {**(marker.kwargs if marker else {}), "transaction": True}
            item.add_marker(pytest.mark.django_db(**options), append=False)
            item.add_marker(pytest.mark.server)


def _executor(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("api")


def _transactional(item) -> bool:
    marker = item.get_closest_marker("django_db")
    return bool(marker and marker.kwargs.get("transaction")) or any(
        name in item.fixturenames for name in ("transactional_db", "live_server")
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """A transactional test's rows are committed (every `fastlane` one's too): on PostgreSQL
    they are emptied by DELETE, much faster than TRUNCATE."""
    if connection.vendor != "postgresql" or not (
        _executor(item) == "fastlane" or _transactional(item)
    ):
        return (yield)
    with flush_by_delete(connection):
        return (yield)


@pytest.fixture(scope="session", autouse=True)
def _no_commit_flush():
    """The suite's own PostgreSQL sessions (Django's connections to the test database) commit
    without waiting for the WAL flush.

    A transactional test (every `fastlane` one) commits each row its fixtures make and waits
    for the disk each time. What a commit makes visible, and when, is unchanged: only
    durability after a crash of PostgreSQL is given up, and test data needs none. The servers
    the suite starts keep PostgreSQL's default.
    """
    def quick_commits(sender, connection, **kwargs):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO off")

    connection_created.connect(quick_commits)
    yield
    connection_created.disconnect(quick_commits)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Personas need passwords; PBKDF2 would cost most of the suite's time and test nothing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _own_redis_database():
    """REDIS_URL must name a database of the suite's own: never DB 0, never one with others' keys.

    Checked before the first test touches it; every clear afterwards deletes only Ackly's keys.
    """
    if settings.REDIS_URL:
        try:
            clear_redis(settings.REDIS_URL)
        except ForeignRedisData as refused:
            pytest.exit(f"{refused} (REDIS_URL)", returncode=4)


def _clear_caches() -> None:
    redis_urls = set()
    for alias in ("default", "auth"):
        if isinstance(caches[alias], RedisCache):
            redis_urls.add(settings.CACHES[alias]["LOCATION"])
        else:
            caches[alias].clear()
    for url in redis_urls:
        clear_redis(url)  # Ackly's keys only; the database is never emptied
    _last_touched.clear()
    search_plan.forget()  # the trigram indexes' samples read for search


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Rate-limit windows and cached look-ups never leak from one test into the next."""
    _clear_caches()
    yield
    _clear_caches()


@pytest.fixture
def frozen_rate_clock(monkeypatch):
    """One fixed instant for the burst and login limits, so no burst straddles a window."""
    instant = float(int(time.time())) + 0.5
    monkeypatch.setattr("ingest.ratelimits.time.time", lambda: instant)
    monkeypatch.setattr("django_ratelimit.core.time.time", lambda: instant)
    return instant


@pytest.fixture(scope="session")
def fastlane_api_server(django_db_setup, tmp_path_factory):
    """The `fastlane` executor's uvicorn (tests/executors.py): one per session; (base, client)."""
    log = tmp_path_factory.mktemp("fastlane-api") / "uvicorn.log"
    with fastlane_server(log, FASTLANE_METRICS_TOKEN) as base, http_client(base) as client:
        yield base, client


@pytest.fixture(params=EXECUTORS)
def api(request):
    """The API client of one executor: `django` (in process), then `fastlane` (uvicorn, HTTP).

    Every API test takes it, so each runs against both; tests/executors.py tells how.
    """
    if request.param == "django":
        return DjangoApi()
    return HttpApi(request.getfixturevalue("fastlane_api_server")[1])


@pytest.fixture
def make_user(db):
    def make(username: str, password: str = "correct-horse-battery"):
        return get_user_model().objects.create_user(
            username=username, email=f"{username}@example.com", password=password
        )

    return make


@pytest.fixture
def owner(make_user):
    return make_user("olivia-owner")


@pytest.fixture
def member(make_user):
    return make_user("mario-member")


@pytest.fixture
def outsider(make_user):
    return make_user("oscar-outsider")


@pytest.fixture
def workspace(owner, member):
    """A Pro workspace (developer API included) where the owner owns and the member reads."""
    ws = create_workspace("Acme", "pro", owner=owner)
    Membership.objects.create(workspace=ws, user=member, role=Role.MEMBER)
    return ws


@pytest.fixture
def free_workspace(owner):
    return create_workspace("Acme Free", "free", owner=owner)


@pytest.fixture
def other_workspace(outsider):
    """The outsider's own workspace: nothing in it may ever show up in `workspace`."""
    return create_workspace("Globex", "pro", owner=outsider)


@pytest.fixture
def source_and_key(workspace):
    return create_source(
        workspace, "CRM Hub", slug="crm-hub", allowed_event_types=["ticket.resolved", "call.logged"]
    )


@pytest.fixture
def source(source_and_key):
    return source_and_key[0]


@pytest.fixture
def secret(source_and_key) -> str:
    return source_and_key[1].secret


@pytest.fixture
def auth_header(secret) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


@pytest.fixture
def shared_auth_cache(settings):
    """A real cache behind the 'auth' alias (as with REDIS_URL), to test caching itself."""
    if settings.REDIS_URL:
        yield caches["auth"]
        return
    settings.CACHES = {
        **settings.CACHES,
        "auth": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "auth"},
    }
    caches["auth"].clear()
    yield caches["auth"]
    caches["auth"].clear()
