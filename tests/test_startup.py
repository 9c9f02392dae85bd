"""A DEBUG=0 server without collected static files refuses to start with one line; with them it
serves pages whose static URLs are the manifest's hashed names (ackly/startup.py)."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ackly.startup import STARTUP_FAILURE
from tests.servers import ROOT, collected_static, daphne, free_port, own_database, server_env, uvicorn

pytestmark = pytest.mark.server

# A correctness bound (the process must end by itself, not restart), not a speed figure.
EXIT_BOUND_SECONDS = 15
HASHED = re.compile(r"\.[0-9a-f]{12}\.\w+$")  # the manifest storage's name.<hash>.ext


def _production_env(static_root: Path | str, **extra: str) -> dict[str, str]:
    env = server_env(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(48), STATIC_ROOT=str(static_root),
                     **extra)
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    return env


def _refusal(static_root: Path) -> str:
    return ('ackly: DEBUG=0 needs collected static files: run "manage.py collectstatic --noinput" '
            f"(STATIC_ROOT={static_root})\n")


def _start(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=EXIT_BOUND_SECONDS)
    return done, time.monotonic() - started


SERVERS = {
    "uvicorn": lambda port: ["uvicorn", "ackly.asgi:application", "--host", "127.0.0.1",
                             "--port", str(port), "--lifespan", "off", "--no-proxy-headers"],
    "daphne": lambda port: ["daphne", "-b", "127.0.0.1", "-p", str(port),
                            "ackly.asgi:application"],
}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("static_dir", ["empty", "missing"])
def test_without_collected_static_files_the_server_exits_with_one_line(
    server, static_dir, tmp_path
):
    static_root = tmp_path / "static"
    if static_dir == "empty":
        static_root.mkdir()
    env = _production_env(static_root, SQLITE_PATH=str(tmp_path / "db.sqlite3"))

    done, elapsed = _start(SERVERS[server](free_port()), env)

    assert done.returncode == STARTUP_FAILURE, done.stdout + done.stderr
    assert (done.stdout, done.stderr) == ("", _refusal(static_root))
    assert elapsed < EXIT_BOUND_SECONDS


def test_without_collected_static_files_uvicorns_supervisor_stops_instead_of_restarting_workers(
    tmp_path,
):
    """The recipe's `--workers`: a worker's exit status says "cannot boot", so the parent stops
    instead of replacing it with another that fails the same way, forever."""
    static_root = tmp_path / "static"
    env = _production_env(static_root, SQLITE_PATH=str(tmp_path / "db.sqlite3"))

    done, _ = _start([*SERVERS["uvicorn"](free_port()), "--workers", "2"], env)

    assert "failed to start, stopping the parent process" in done.stderr, done.stderr
    assert done.stderr.count(_refusal(static_root)) == 2  # once per worker, never again
    assert "Traceback" not in done.stderr


def test_without_collected_static_files_gunicorn_halts_instead_of_restarting_workers(tmp_path):
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("gunicorn is not installed: .venv/bin/pip install -e '.[bench]'")
    static_root = tmp_path / "static"
    env = _production_env(static_root, SQLITE_PATH=str(tmp_path / "db.sqlite3"))

    done, _ = _start(["gunicorn", "ackly.wsgi:application", "-b", f"127.0.0.1:{free_port()}",
                      "-w", "1"], env)

    assert done.returncode == STARTUP_FAILURE, done.stderr
    assert "Reason: Worker failed to boot." in done.stderr, done.stderr
    assert done.stderr.count(_refusal(static_root)) == 1


def test_manage_py_commands_run_without_collected_static_files(tmp_path):
    """collectstatic and migrate are how a deploy gets there: the check is the servers' only."""
    static_root = tmp_path / "static"
    env = _production_env(static_root, SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    for command in (["migrate", "--noinput", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
        done = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert (static_root / "staticfiles.json").exists()


@pytest.fixture(scope="module")
def production_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    with own_database(_production_env(collected_static(), SECURE_SSL_REDIRECT="0"), "startup",
                      sqlite_dir=tmp_path_factory.mktemp("startup")) as env:
        yield env


@pytest.mark.parametrize("server", [uvicorn, daphne], ids=["uvicorn", "daphne"])
def test_with_collected_static_files_the_login_page_and_its_hashed_assets_load(
    server, production_env, tmp_path
):
    with server(production_env, tmp_path / "server.log") as base:
        page = httpx.get(f"{base}/login/", timeout=10)
        assert page.status_code == 200, page.text
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        assert assets, page.text
        for path in assets:
            assert HASHED.search(path), path
            asset = httpx.get(f"{base}{path}", timeout=10)
            assert asset.status_code == 200, path
            assert asset.content
            assert "immutable" in asset.headers["cache-control"]  # WhiteNoise knows the hash
    assert "Traceback" not in (tmp_path / "server.log").read_text()
