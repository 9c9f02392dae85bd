"""Real server processes for tests: free ports, manage.py in a server's env, throwaway databases.

Shared by every test that starts Daphne as a subprocess (browser end-to-end, reliability,
scale-out), so each starts, waits for and stops its servers the same way.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from bench.run import clear_redis, die_with_parent, free_port

__all__ = [
    "ROOT", "all_at_once", "collected_static", "daphne", "dashboard_socket",
    "dashboard_socket_target", "clear_redis", "free_port", "manage", "own_database", "own_redis",
    "postgres", "redis_db_url", "require_postgres_and_redis", "server_env",
    "uvicorn",
]

ROOT = Path(__file__).resolve().parents[1]


def dashboard_socket_target(
    base: str, org: str, cookie: str, session: str
) -> tuple[str, dict[str, str]]:
    """The live page's websocket URL for workspace `org` on the server at `base`, and the
    headers a logged-in browser sends with it (session cookie `cookie`=`session`, same Origin)."""
    host = urlsplit(base).netloc
    headers = {"Cookie": f"{cookie}={session}", "Origin": f"http://{host}"}
    return f"ws://{host}/ws/workspaces/{org}/", headers


@asynccontextmanager
async def dashboard_socket(base: str, org: str, cookie: str, session: str):
    """An open dashboard websocket, as `dashboard_socket_target` describes it."""
    import aiohttp

    url, headers = dashboard_socket_target(base, org, cookie, session)
    async with aiohttp.ClientSession() as client, client.ws_connect(
        url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=10)
    ) as ws:
        yield ws


def manage(env: dict[str, str], *args: str) -> str:
    """Run manage.py in the server's environment; its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def postgres(url: str, statement: str, database: str | None = None) -> str:
    """Run one statement on the server's maintenance database; the URL of `database`."""
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(statement)
    return urlunsplit(parts._replace(path=f"/{database}")) if database else url


def require_postgres_and_redis() -> None:
    """Skip (with the reason) a fixture whose servers need PostgreSQL and Redis."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://…")
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs Redis: run with REDIS_URL=redis://…")


@contextmanager
def own_database(
    env: dict[str, str], prefix: str, sqlite_dir: Path | None = None
) -> Iterator[dict[str, str]]:
    """`env` pointed at a migrated database of its own, for the servers a test starts.

    When `env`'s DATABASE_URL names PostgreSQL: a fresh database `<prefix>_<random>`, dropped
    afterwards even when the test failed. Otherwise a SQLite file in `sqlite_dir` (a test that
    needs PostgreSQL checks for it before and passes none).
    """
    env = dict(env)
    url = env.get("DATABASE_URL", "")
    database = None
    if url.startswith("postgres"):
        database = f"{prefix}_{secrets.token_hex(4)}"
        env["DATABASE_URL"] = postgres(url, f"CREATE DATABASE {database}", database)
    elif sqlite_dir is not None:
        env.pop("DATABASE_URL", None)
        env["SQLITE_PATH"] = str(sqlite_dir / f"{prefix}.sqlite3")
    else:
        raise ValueError("own_database: no PostgreSQL in DATABASE_URL and no sqlite_dir given")
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        yield env
    finally:
        if database:
            postgres(url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def redis_db_url(db: int) -> str:
    """The configured Redis (REDIS_URL, else the local one) with the test's own DB number."""
    parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return urlunsplit(parts._replace(path=f"/{db}"))


@contextmanager
def own_redis(db: int) -> Iterator[str]:
    """The URL of the test's own Redis DB, its Ackly keys cleared before and after."""
    url = redis_db_url(db)
    clear_redis(url)  # an earlier run's cached ids must not leak in
    try:
        yield url
    finally:
        clear_redis(url)


def server_env(**overrides: str) -> dict[str, str]:
    """This process's environment minus pytest's and Django's test settings, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(DEBUG="1", ALLOWED_HOSTS="127.0.0.1,localhost", LOG_LEVEL="WARNING")
    # Small pools: a module may run several servers at once, beside the suite's own pool and
    # other clients of the same PostgreSQL (max_connections 100 by default).
    env.update(DB_POOL_MIN="1", DB_POOL_MAX="4")
    env.update(overrides)
    return env


@functools.cache
def collected_static() -> str:
    """A STATIC_ROOT holding collectstatic's output, made once per test process.

    Every server a test starts with DEBUG=0 needs one (ackly/startup.py refuses to start
    without the manifest); collected into a temporary directory, never into the checkout, and
    removed when the process exits. About 3 s: WhiteNoise compresses every file.
    """
    root = tempfile.mkdtemp(prefix="ackly-static-")
    atexit.register(shutil.rmtree, root, True)
    env = server_env(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(48), STATIC_ROOT=root)
    for name in ("DATABASE_URL", "REDIS_URL"):  # collectstatic needs neither
        env.pop(name, None)
    manage(env, "collectstatic", "--noinput", "-v", "0")
    return root


class Server(str):
    """A running server's base URL (use it as the string it is), with its port and process id."""

    port: int
    pid: int


@contextmanager
def daphne(
    env: dict[str, str], log_path: Path, timeout: float = 30, probe: str = "/login/"
) -> Iterator[Server]:
    """A Daphne process serving ackly.asgi on 127.0.0.1:<free port>; yields its base URL.

    Waits until `probe` answers 200 (over "https" as a TLS proxy says it: X-Forwarded-Proto,
    which only DEBUG=0 trusts; a DEBUG=0 server needs STATIC_ROOT=collected_static()). On exit
    stops it (SIGTERM, then SIGKILL after 10 s) even when the test failed. A server that does
    not come up fails with its log.
    """
    port = free_port()
    argv = ["daphne", "-b", "127.0.0.1", "-p", str(port), "ackly.asgi:application"]
    with _serving("Daphne", argv, port, env, log_path, timeout, probe) as base:
        yield base


@contextmanager
def uvicorn(
    env: dict[str, str], log_path: Path, timeout: float = 30, workers: int = 1
) -> Iterator[Server]:
    """A uvicorn process serving ackly.asgi as the production recipe runs it; as `daphne`.
    With `workers` > 1 it is the recipe's supervisor, serving through that many worker processes."""
    port = free_port()
    argv = ["uvicorn", "ackly.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--lifespan", "off", "--no-access-log", "--no-proxy-headers"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    with _serving("uvicorn", argv, port, env, log_path, timeout, "/login/") as base:
        yield base


@contextmanager
def _serving(
    name: str, argv: list[str], port: int, env: dict[str, str], log_path: Path, timeout: float,
    probe: str,
) -> Iterator[Server]:
    with open(log_path, "w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *argv],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # a killed test run leaves no server behind
        )
        try:
            base = Server(f"http://127.0.0.1:{port}")
            base.port, base.pid = port, process.pid
            deadline = time.monotonic() + timeout
            while True:
                try:
                    answer = httpx.get(f"{base}{probe}", timeout=1,
                                       headers={"X-Forwarded-Proto": "https"})
                    if answer.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{name} did not start:\n{log.read()}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))
