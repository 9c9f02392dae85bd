"""Private Redis and PostgreSQL servers that fault tests may kill and restart.

The machine's shared PostgreSQL (5432) and Redis (6379) serve other sessions and are never
stopped; a fault test starts its own on free ports instead, as child processes that die with
the test run (PR_SET_PDEATHSIG), and stops, kills and restarts those. Both keep nothing on disk
that matters: Redis without persistence, PostgreSQL in a temporary directory removed at the end.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` OS user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.run import die_with_parent
from tests.servers import free_port

REDIS_SERVER = shutil.which("redis-server")


def _postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian layout), or PATH's."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


POSTGRES_BIN = _postgres_bin()


def _wait_until(ready, what: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.05)


class PrivateRedis:
    """A throwaway redis-server on 127.0.0.1:<port>; `kill()` and `start()` keep the port."""

    def __init__(self, workdir: Path) -> None:
        if REDIS_SERVER is None:
            pytest.skip("needs redis-server on PATH to start a private Redis: apt-get install redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        log = self.workdir / "redis.log"
        with open(log, "a") as out:
            self.process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)],
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )
        _wait_until(self.answers, "Redis", self.process, log, timeout=10)

    def answers(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: Redis vanishes mid-run, connections reset, nothing saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class PrivateCluster:
    """A throwaway PostgreSQL cluster (initdb in a temporary directory) on 127.0.0.1:<port>.

    `stop()` is an immediate shutdown (SIGQUIT, what `pg_ctl stop -m immediate` sends): every
    connection is cut, open transactions are lost, and the next `start()` runs crash recovery
    on the same data directory and port.
    """

    def __init__(self) -> None:
        if POSTGRES_BIN is None:
            pytest.skip("needs PostgreSQL's server binaries (initdb, postgres): apt-get install postgresql")
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("runs as root but has no `postgres` OS user to own a private cluster")
        # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="ackly-flt-pg-"))
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._as_owner(
            [str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync", "--no-instructions"],
        )

    def _as_owner(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, **self._owner())
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}")

    def _owner(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(
                [str(POSTGRES_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
                 # Durability against an OS crash is not under test; a killed server still recovers.
                 "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=60"],
                stdout=out, stderr=subprocess.STDOUT,
                # Runs after the uid change (Popen's order), so the kernel keeps the death signal.
                preexec_fn=die_with_parent, **self._owner(),
            )
        _wait_until(self.answers, "PostgreSQL", self.process, self.log, timeout=30)

    def answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=1, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def execute(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(statement)

    def stop(self) -> None:
        """Immediate shutdown: SIGQUIT to the postmaster, which ends every backend at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_services(workdir: Path) -> Iterator[tuple[PrivateCluster, PrivateRedis]]:
    """A started private PostgreSQL cluster and Redis, both gone afterwards whatever happened."""
    redis_server = PrivateRedis(workdir)
    cluster = PrivateCluster()
    try:
        cluster.start()
        redis_server.start()
        yield cluster, redis_server
    finally:
        redis_server.kill()
        cluster.remove()
