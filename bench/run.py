"""`make bench`: start Ackly the production way, load it from a separate process, check, report.

Steps: a fresh PostgreSQL database and Redis DB → migrate → a Pro workspace, a source and its key
made by the management commands → N server processes on loopback ports → (a) single events,
(b) 500-event batches, (c) ingest→websocket latency, (d) peak RSS → the bare INSERT ceiling (e)
on the same kind and number of processes → every accepted event counted in the database →
(f) event → webhook latency with the alerts worker (bench/alerts.py) → (g), when asked for, the
dashboard at scale on its own prefilled database (bench/scale.py) → bench/results/latest.json.
Every process it starts is stopped on the way out, whatever happens.
See bench/README.md for the options and what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench import alerts as alerts_bench
from bench import wrk as wrk_client

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
LOCK_PATH = Path(tempfile.gettempdir()) / "ackly-bench.lock"
SKIPPED = "skipped: endpoint not available"
GOALS = {
    "a_req_per_s": 1500,
    "a_p99_ms": 50,
    "b_events_per_s": 50_000,
    "c_p99_ms": 100,
    "d_rss_mb": 250,
}


def checkpoint(db_url: str) -> bool:
    """Flush what earlier runs left dirty (a run writes ~1 GB of WAL) before this one starts:
    otherwise the checkpoint they trigger lands in this run's figures. Needs a superuser, as
    the local PostgreSQL's `postgres` is; without one the run goes on and says so."""
    try:
        sql_scalar(db_url, "CHECKPOINT")
    except psycopg.Error:
        return False
    return True


# What a part keeps of its warm-up run (reported apart; its accepted requests are stored too).
WARMUP_FIGURES = ("duration_s", "requests", "accepted", "statuses", "latency", "unknown_outcomes")


def warmed(part: dict[str, Any]) -> int:
    """Requests a part's warm-up run got accepted (they are in the database too)."""
    return part.get("warmup", {}).get("accepted", 0)


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _ephemeral_low(default: int = 32768) -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses now, below the kernel's ephemeral range.

    The port bind(0) hands out comes from the ephemeral range, which every outgoing connection
    draws from too: between picking it and a server binding it, or while a fault test has
    killed a server and restarts it on the same port, a client's connection can take it (CI
    saw a private Redis fail with "Address already in use"). The kernel gives a port below
    that range to nobody but whoever binds it. Free means bindable without SO_REUSEADDR: no
    listener and no connection in TIME_WAIT on it.
    """
    low = _ephemeral_low()
    candidates = range(max(1024, low - 12000), low)  # empty when the range starts at 1024
    for port in random.sample(candidates, min(len(candidates), 200)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # no room below the ephemeral range: let the OS pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- database and redis ---------------------------------------------------------------------


def admin_url(db_url: str) -> str:
    parts = urlsplit(db_url)
    return urlunsplit(parts._replace(path="/postgres"))


def db_name(db_url: str) -> str:
    return urlsplit(db_url).path.lstrip("/")


def recreate_database(db_url: str, prefix: str = "ackly_bench") -> None:
    """Drop and create the run's own database; only one whose name starts with `prefix`."""
    name = db_name(db_url)
    if not name.startswith(prefix):
        raise BenchError(f"refusing to drop {name!r}: the run's database name must start with {prefix}")
    with psycopg.connect(admin_url(db_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(db_url: str) -> None:
    with psycopg.connect(admin_url(db_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name(db_url)}" WITH (FORCE)')


# Every key Ackly writes starts with this: the cache's KEY_PREFIX ("ackly:") and the channel
# layer's prefix ("ackly:ch"). A key without it belongs to somebody else.
OWN_REDIS_PREFIX = b"ackly"


class ForeignRedisData(BenchError):
    """The Redis database holds keys Ackly did not write: it is somebody else's."""


def clear_redis(redis_url: str) -> int:
    """Delete Ackly's own keys in the Redis DB of `redis_url`; the number deleted.

    Never empties a database: DB 0 (every client's default) is refused outright, and so is a
    database holding any key without Ackly's prefix, before anything is deleted.
    """
    import redis

    if urlsplit(redis_url).path.strip("/") in ("", "0"):
        raise ForeignRedisData(
            f"refusing Redis DB 0 ({redis_url}): give Ackly's tests and benchmarks a DB of their own"
        )
    client = redis.Redis.from_url(redis_url)
    try:
        own = []
        for key in client.scan_iter(count=1000):
            if not key.startswith(OWN_REDIS_PREFIX):
                raise ForeignRedisData(
                    f"refusing Redis {redis_url}: it holds {key[:60]!r}, a key Ackly did not write"
                )
            own.append(key)
        for start in range(0, len(own), 1000):
            client.delete(*own[start : start + 1000])
        return len(own)
    finally:
        client.close()


def sql_scalar(db_url: str, query: str, params: tuple = ()) -> Any:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        row = cursor.fetchone() if cursor.description else None
        return row[0] if row else None


# --- processes ------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    log_path: Path
    command: list[str]

    def pids(self) -> list[int]:
        """This process and its descendants (gunicorn's workers)."""
        found = [self.proc.pid]
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        i = 0
        while i < len(found):
            found.extend(children.get(found[i], []))
            i += 1
        return found


class WaitSampler(threading.Thread):
    """Samples what the bench database's backends are doing every 100 ms during a part.

    "active:Lock/transactionid" piling up means requests queue on a row lock (the quota row);
    "active:cpu" is PostgreSQL working; "idle in transaction" is a transaction held open while
    Python works.
    """

    def __init__(self, db_url: str) -> None:
        super().__init__(daemon=True)
        self.db_url = db_url
        self.samples = 0
        self.counts: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        query = (
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state IS NOT NULL AND state <> 'idle'"
        )
        try:
            with psycopg.connect(self.db_url, autocommit=True) as conn:
                while not self._stop_event.wait(0.1):
                    self.samples += 1
                    for state, wtype, wevent in conn.execute(query).fetchall():
                        label = f"{state}:{wtype}/{wevent}" if wtype else f"{state}:cpu"
                        self.counts[label] = self.counts.get(label, 0) + 1
        except psycopg.Error:
            return  # a diagnostic only: never fails the run

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        """Mean number of backends in each state per sample, busiest first."""
        n = max(self.samples, 1)
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])[:8]
        return {"samples": self.samples, "mean_backends": {k: round(v / n, 2) for k, v in ranked}}


CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


def memory_of(pid: int) -> dict[str, Any] | None:
    """Peak (VmHWM) and current (VmRSS) resident memory of one process, in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def mb(key: str) -> float:
        return round(int(fields[key].split()[0]) / 1024, 1)

    return {"pid": pid, "cmd": cmdline.strip(), "peak_rss_mb": mb("VmHWM"), "rss_mb": mb("VmRSS")}


@dataclass
class Supervisor:
    """Owns every process the bench starts; `stop_all` ends them by their own ids."""

    workdir: Path
    env: dict[str, str]
    servers: list[Server] = field(default_factory=list)
    others: list[subprocess.Popen] = field(default_factory=list)

    def start_server(self, name: str, command: list[str], port: int, env: dict[str, str]) -> Server:
        log_path = self.workdir / f"{name}-{port}.log"
        with open(log_path, "wb") as fh:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        server = Server(name, proc, port, log_path, command)
        self.servers.append(server)
        return server

    def wait_ready(self, server: Server, probe: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{server.port}{probe}"
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise BenchError(f"{server.name} exited at start-up:\n{tail(server.log_path)}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # any HTTP answer means it serves
            except OSError:
                time.sleep(0.2)
        raise BenchError(f"{server.name} on port {server.port} not ready after {timeout:.0f}s")

    def stop_servers(self) -> None:
        for server in self.servers:
            stop_process(server.proc, grace=5.0)
        self.servers.clear()

    def stop_all(self) -> None:
        for proc in self.others:
            stop_process(proc)
        self.others.clear()
        self.stop_servers()


def take_lock(path: Path, wait: float) -> IO[str] | None:
    """One run at a time: an exclusive lock on `path`, waited for at most `wait` s (else None)."""
    lock = open(path, "w")  # noqa: SIM115 - held for the whole run, closed by release_lock
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                return None
            time.sleep(1)


def release_lock(lock: IO[str]) -> None:
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


def leave_no_trace(args: argparse.Namespace, lock: IO[str]) -> None:
    """A run's last step, whatever happened: its database dropped (unless --keep-db), its Redis
    keys cleared, the lock released."""
    if not args.keep_db:
        with contextlib.suppress(psycopg.Error):
            drop_database(args.db_url)
    with contextlib.suppress(Exception):
        clear_redis(args.redis_url)
    release_lock(lock)


def die_with_parent() -> None:
    """In the child: die if the runner dies, even by SIGKILL, so nothing is left running."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    # SIGKILL: Daphne can hang in shutdown on SIGTERM (see stop_process).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


STOPS = {"terminated": 0, "killed": 0}


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group we created for it, then SIGKILL after `grace` seconds.

    Counted in STOPS: a Daphne process whose sync thread is inside async_to_sync (the
    broadcast) when SIGTERM stops the event loop never exits on its own.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
        STOPS["terminated"] += 1
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        STOPS["killed"] += 1


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- the bench ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.env = self.server_env()
        self.sup = Supervisor(workdir, self.env)
        self.results: dict[str, Any] = {}
        self.prefilled = 0
        self.worker: subprocess.Popen | None = None

    def server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ACKLY_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="ackly.settings",
            DATABASE_URL=self.args.db_url,
            REDIS_URL=self.args.redis_url,
            DEBUG="0",
            SECRET_KEY=secrets.token_urlsafe(60),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECURE_SSL_REDIRECT="0",
            PYTHONUNBUFFERED="1",
            # This run's own, filled by collect_static: never the checkout's staticfiles/.
            STATIC_ROOT=str(self.workdir / "static"),
        )
        return env

    # setup ---------------------------------------------------------------------------------

    def manage(self, *argv: str, env: dict[str, str] | None = None) -> list[str]:
        out = subprocess.run(
            [PYTHON, "manage.py", *argv],
            cwd=ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            raise BenchError(f"manage.py {argv[0]} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout.strip().splitlines()

    def collect_static(self) -> None:
        """The static files into this run's STATIC_ROOT: a DEBUG=0 server refuses to start
        without them (ackly/startup.py)."""
        started = time.monotonic()
        self.manage("collectstatic", "--noinput", "-v", "0")
        log(f"collectstatic into {self.env['STATIC_ROOT']}: {time.monotonic() - started:.1f} s")

    def setup_data(self, *argv: str) -> list[str]:
        out = subprocess.run(
            [PYTHON, "-m", "bench.setup_data", *argv],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise BenchError(f"bench.setup_data {argv[0]} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout.strip().splitlines()

    def prepare(self) -> None:
        log(f"fresh database {db_name(self.args.db_url)}, Redis {self.args.redis_url}")
        recreate_database(self.args.db_url)
        clear_redis(self.args.redis_url)
        self.manage("migrate", "--noinput")
        self.collect_static()
        if not self.args.keep_burst_limits:
            # The bench measures throughput, not the burst limiter refusing it: raise Pro's burst
            # limits in this throwaway database (the limiter still runs on every request).
            sql_scalar(
                self.args.db_url,
                "UPDATE billing_plan SET burst_per_key = %s, burst_per_workspace = %s "
                "WHERE code = 'pro' RETURNING id",
                (1_000_000, 1_000_000),
            )
        owner = "bench-owner"
        self.session = self.setup_data("user", owner)[-1].strip()
        org = self.manage(
            "createworkspace", "Bench", "--plan", "pro", "--owner", owner,
            "--event-limit", str(10**12),
        )[-1].strip()
        # One source for every part: the ingest API ignores the whitelist, the v1 API needs it.
        lines = self.manage("createsource", org, "bench", "--allow", "bench.event")
        self.org = org
        self.key = lines[-1].strip()
        self.workspace_pk = sql_scalar(
            self.args.db_url, "SELECT id FROM workspaces_workspace WHERE public_id = %s", (org,)
        )
        self.prefilled = self.prefill(self.args.prefill) if self.args.prefill else 0
        self.results["setup"] = {
            "workspace": org,
            "prefilled_events": self.prefilled,
            "checkpoint": checkpoint(self.args.db_url),
        }
        log(f"workspace {org} and its source (management commands)")

    def prefill(self, rows: int) -> int:
        """Grow the events table first (cost per event must stay flat from 10^4 to 10^6 rows)."""
        log(f"prefilling ingest_event with {rows} rows")
        source_pk = sql_scalar(
            self.args.db_url,
            "SELECT id FROM sources_source WHERE workspace_id = %s AND slug = 'bench'",
            (self.workspace_pk,),
        )
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO ingest_event (public_id, workspace_id, source_id, status, message, "
                "description, event_type, external_id, duration_ms, metadata, received_at) "
                "SELECT substr(md5('prefill' || i), 1, 24), %s, %s, 'success', 'prefill', '', "
                "'bench.prefill', 'prefill-' || i, 10, '{\"prefill\": true}'::jsonb, "
                "now() - make_interval(secs => i) FROM generate_series(1, %s) AS i",
                (self.workspace_pk, source_pk, rows),
            )
            # VACUUM too: otherwise autovacuum starts on the fresh million rows during the
            # parts and its CPU lands in their figures.
            conn.execute("VACUUM (ANALYZE) ingest_event")
        return rows

    # servers -------------------------------------------------------------------------------

    def server_commands(self, kind: str, port: int, procs: int) -> list[str]:
        if kind == "daphne":
            return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "ackly.asgi:application"]
        if kind == "uvicorn":
            return [
                str(BIN / "uvicorn"), "ackly.asgi:application", "--host", "127.0.0.1",
                "--port", str(port),
                # As docs/deployment.md runs it: no access log, Django has no lifespan, the
                # app (not uvicorn) reads proxy headers.
                "--no-access-log", "--lifespan", "off", "--no-proxy-headers",
                "--log-level", "warning",
            ]
        return [
            str(BIN / "gunicorn"),
            "ackly.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(procs),
            # As docs/deployment.md runs it: no access log (the load balancer keeps one).
            "--log-level",
            "warning",
        ]

    def start_servers(
        self, env: dict[str, str], probe: str, kind: str | None = None, procs: int | None = None
    ) -> tuple[list[str], list[str]]:
        """The HTTP base URLs and websocket base URLs of freshly started server processes.

        `recipe` (docs/deployment.md) is `procs` uvicorn processes for HTTP, where the fast
        lane serves POST /api/ingest, and one Daphne for the websockets.
        """
        kind = kind or self.args.server
        procs = procs or self.args.procs
        http_kind = "uvicorn" if kind == "recipe" else kind
        if http_kind != "daphne" and shutil.which(str(BIN / http_kind)) is None:
            raise BenchError(f"{http_kind} is not installed: .venv/bin/pip install -e '.[bench]'")
        count = 1 if kind == "gunicorn" else procs  # gunicorn forks its own workers
        if kind == "gunicorn":
            # A sync worker uses one connection at a time (docs/deployment.md).
            env = dict(env, DB_POOL_MIN="1", DB_POOL_MAX="2")
        http, ws = [], []
        for _ in range(count):
            port = free_port()
            cmd = self.server_commands(http_kind, port, procs)
            self.sup.start_server(http_kind, cmd, port, env)
            http.append(f"http://127.0.0.1:{port}")
            if kind in ("daphne", "uvicorn"):
                ws.append(f"ws://127.0.0.1:{port}")
        if kind in ("gunicorn", "recipe"):
            # Daphne keeps the websockets (WSGI has none; the recipe keeps them on Daphne).
            port = free_port()
            cmd = self.server_commands("daphne", port, 1)
            self.sup.start_server("daphne-ws", cmd, port, env)
            ws.append(f"ws://127.0.0.1:{port}")
        for server in self.sup.servers:
            self.sup.wait_ready(server, probe)
        return http, ws

    def start_worker(self) -> None:
        """`manage.py worker` beside the servers during (a)-(c), as `make run` and
        docs/deployment.md run it: its merges of the search indexes' pending lists are part of
        what ingest costs, so its CPU (and its backend's, in postgres) is counted."""
        log_file = open(self.workdir / "worker.log", "wb")  # noqa: SIM115 - kept open
        self.worker = subprocess.Popen(
            [PYTHON, "manage.py", "worker"], cwd=ROOT, env=self.env, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
        )
        self.sup.others.append(self.worker)

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_process(self.worker)
            self.sup.others.remove(self.worker)
            self.worker = None

    def worker_cpu(self) -> float:
        return process_cpu(self.worker.pid) if self.worker is not None else 0.0

    def memory(self) -> list[dict[str, Any]]:
        out = []
        for server in self.sup.servers:
            for pid in server.pids():
                info = memory_of(pid)
                if info is not None:
                    info["server"] = server.name
                    out.append(info)
        return out

    # load ----------------------------------------------------------------------------------

    def db_backend_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each PostgreSQL backend serving the bench database."""
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            pids = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        return {pid: process_cpu(pid) for (pid,) in pids}

    def server_cpu(self) -> float:
        return sum(process_cpu(pid) for server in self.sup.servers for pid in server.pids())

    def http_load(
        self, name: str, http: list[str], path: str, kind: str, *extra: str,
        concurrency: int, duration: float, grace: float = 120.0,
    ) -> dict[str, Any]:
        """One run of the aiohttp load generator on `path`: what every part passes, + `extra`."""
        argv = [
            "--urls", ",".join(http), "--path", path, "--kind", kind,
            "--concurrency", str(concurrency), "--duration", str(duration),
            "--max-requests", str(self.args.max_requests), *extra,
        ]
        if kind != "ceiling":  # the ceiling view takes no key
            argv += ["--key", self.key]
        return self.loadgen(name, *argv, timeout=duration + grace)

    def loadgen(self, name: str, *argv: str, timeout: float) -> dict[str, Any]:
        out_path = self.workdir / f"{name}.json"

        def run_client() -> dict[str, Any]:
            proc = subprocess.Popen(
                [PYTHON, "-m", "bench.loadgen", "http", *argv, "--out", str(out_path)],
                cwd=ROOT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            self.sup.others.append(proc)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_process(proc)
                raise BenchError(f"load generator {name} overran {timeout:.0f}s") from None
            finally:
                self.sup.others.remove(proc)
            if proc.returncode != 0:
                raise BenchError(f"load generator {name} failed (exit {proc.returncode})")
            return json.loads(out_path.read_text())

        return self.measure(run_client)

    def wrk(
        self, name: str, urls: list[str], path: str, kind: str, duration: float | None = None
    ) -> dict[str, Any]:
        """Parts (a) and (e) with --client wrk: the same load, measured the same way."""
        a = self.args
        return self.measure(
            lambda: wrk_client.run(
                urls=urls,
                path=path,
                kind=kind,
                key=self.key if kind == "single" else "",
                concurrency=a.concurrency,
                duration=a.duration if duration is None else duration,
                max_requests=a.max_requests,
                idempotency=kind == "single",
                workdir=self.workdir,
                name=name,
                preexec_fn=die_with_parent,
            )
        )

    def measure(self, run_client: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run one client and account for who used the CPU meanwhile."""
        servers_before, machine_before, t0 = self.server_cpu(), machine_busy(), time.monotonic()
        worker_before = self.worker_cpu()
        db_before = self.db_backend_cpu()
        sampler = WaitSampler(self.args.db_url)
        sampler.start()
        try:
            result = run_client()
        finally:
            sampler.stop()
        result["postgres_waits"] = sampler.summary()
        # Who used the 2 cores during the part: on a shared machine the rest is other work.
        wall = time.monotonic() - t0
        result["cpu"] = {
            "wall_s": round(wall, 1),
            "capacity_s": round(wall * (os.cpu_count() or 1), 1),
            "machine_busy_s": round(machine_busy() - machine_before, 1),
            "servers_s": round(self.server_cpu() - servers_before, 1),
            "worker_s": round(self.worker_cpu() - worker_before, 1),
            "client_s": result.get("client_cpu_s"),
            # PostgreSQL backends of the bench database (one that ended mid-part is missed).
            "postgres_s": round(
                sum(cpu - db_before.get(pid, 0.0) for pid, cpu in self.db_backend_cpu().items()),
                1,
            ),
        }
        # Server CPU per request and per accepted event: far less sensitive to other load on the
        # machine than req/s, so runs on a busy machine can still be compared on it.
        servers_ms = result["cpu"]["servers_s"] * 1000
        if result.get("requests"):
            result["cpu"]["servers_ms_per_request"] = round(servers_ms / result["requests"], 2)
        if result.get("accepted"):
            result["cpu"]["servers_ms_per_event"] = round(servers_ms / result["accepted"], 3)
        return result

    def available(self, base: str, path: str) -> bool:
        """The route is there when an unauthenticated POST gets the API's 401 (not a 404)."""
        return self.probe(base, path) == 401

    def probe(self, base: str, path: str) -> int:
        """Status of an unauthenticated POST."""
        req = urllib.request.Request(
            base + path, data=b"{}", method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code

    def closed_loop(self, name: str, http: list[str], path: str, kind: str) -> dict[str, Any]:
        """(a) and (e): `--concurrency` connections, closed loop, after a `--warmup` run.

        The warm-up is the same load, started on fresh servers; its figures are reported
        apart (`warmup`) and its accepted requests are counted in the count check. wrk's
        histogram is corrected for coordinated omission, so a fresh process's first tenth of
        a second (connections opening, first queries planned) would otherwise show up as
        ~1 % of the samples of a 10-20 s run: the figures are the steady state.
        """
        a = self.args

        def load(run: str, duration: float) -> dict[str, Any]:
            if a.client == "wrk":
                return self.wrk(run, http, path, kind, duration)
            extra = ("--no-idempotency",) if kind == "ceiling" else ()
            return self.http_load(
                run, http, path, kind, *extra, concurrency=a.concurrency, duration=duration
            )

        warmup = load(f"{name}-warmup", a.warmup) if a.warmup > 0 else None
        result = load(name, a.duration)
        if warmup is not None:
            result["warmup"] = {k: warmup[k] for k in WARMUP_FIGURES}
        return result

    def part_a(self, http: list[str]) -> dict[str, Any]:
        if not self.available(http[0], "/api/ingest"):
            return {"status": SKIPPED}
        a = self.args
        log(
            f"(a) single events: POST /api/ingest, {a.concurrency} connections, "
            f"{a.warmup:g}s warm-up + {a.duration:g}s"
        )
        return {"status": "ran", **self.closed_loop("a", http, "/api/ingest", "single")}

    def part_b(self, http: list[str]) -> dict[str, Any]:
        if not self.available(http[0], "/api/v1/ingest/events"):
            return {"status": SKIPPED}
        a = self.args
        log(
            f"(b) {a.batch_size}-event batches: POST /api/v1/ingest/events, "
            f"{a.batch_concurrency} connections, {a.duration:g}s"
        )
        result = self.http_load(
            "b", http, "/api/v1/ingest/events", "batch", "--batch-size", str(a.batch_size),
            concurrency=a.batch_concurrency, duration=a.duration, grace=180,
        )
        return {"status": "ran", "events_per_s": result["accepted_per_s"], **result}

    def part_c(self, http: list[str], ws: list[str]) -> dict[str, Any]:
        if not self.available(http[0], "/api/ingest"):
            return {"status": SKIPPED, "why": "POST /api/ingest is not there"}
        a = self.args
        out_path = self.workdir / "c-ws.json"
        expected_path = self.workdir / "c-expected.txt"
        listen_for = a.ws_duration + a.ws_grace + 120
        listener = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "bench.loadgen",
                "ws",
                "--urls",
                ",".join(ws),
                "--org",
                self.org,
                "--session",
                self.session,
                "--sockets",
                str(a.ws_sockets),
                "--duration",
                str(listen_for),
                "--max-drain",
                str(a.ws_grace),
                "--expected-from",
                str(expected_path),
                "--out",
                str(out_path),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.sup.others.append(listener)
        # The processes that hold the sockets: their CPU while the stamped load runs, their
        # peak RSS after it.
        holders = [s for s in self.sup.servers if f"ws://127.0.0.1:{s.port}" in ws]

        def holders_cpu() -> float:
            return sum(process_cpu(s.proc.pid) for s in holders)

        try:
            ready = read_ready(listener, timeout=120)
            if ready == 0:
                stop_process(listener)
                detail = json.loads(out_path.read_text()) if out_path.exists() else {}
                return {"status": SKIPPED, "why": "no dashboard socket was accepted", **detail}
            log(
                f"(c) {ready} sockets connected; {a.ws_rate:g} events/s on POST /api/ingest, "
                f"{a.warmup:g}s warm-up + {a.ws_duration:g}s"
            )
            # The same load first, unstamped (the listener times stamped events only): fresh
            # servers' first seconds otherwise made p99 (234-274 ms with `--parts c` alone
            # against 56-64 ms after (a), 2026-12-01 22:36).
            warmup = self.http_load(
                "c-warmup", http, "/api/ingest", "single", "--rate", str(a.ws_rate),
                concurrency=128, duration=a.warmup,
            ) if a.warmup > 0 else None
            cpu_at_start = holders_cpu()
            sent = self.http_load(
                "c-send", http, "/api/ingest", "single", "--rate", str(a.ws_rate), "--stamp",
                concurrency=128, duration=a.ws_duration,
            )
            cpu_sending = holders_cpu() - cpu_at_start
            # Tell the listener the sender is done and how many stamped events it got accepted:
            # it drains late broadcasts until every socket has them all (at most --ws-grace s),
            # writes its result and exits.
            expected_path.write_text(str(sent["accepted"]))
            listener.send_signal(signal.SIGUSR1)
            try:
                listener.wait(timeout=a.ws_grace + 30)
            except subprocess.TimeoutExpired:
                stop_process(listener, grace=30)
            # Until every socket had every event (the listener's sockets closed too).
            cpu_to_drained = holders_cpu() - cpu_at_start
        finally:
            stop_process(listener)
            self.sup.others.remove(listener)
        got = json.loads(out_path.read_text())
        expected = sent["accepted"] * got["sockets_connected"]
        result = {
            "status": "ran",
            "sockets": got["sockets_connected"],
            "sent": sent,
            "ws": got,
            "deliveries_expected": expected,
            "delivered_fraction": round(got["deliveries"] / expected, 4) if expected else None,
            "latency": got["latency"],
            "socket_servers": {
                "cpu_s_while_sending": round(cpu_sending, 1),
                "sending_s": sent["cpu"]["wall_s"],
                "cpu_s_until_drained": round(cpu_to_drained, 1),
                # CPU per (socket, event) delivered: what 1,000 sockets x 1,000 events/s cost
                # (x 10^6 per s), whatever else the machine was doing.
                "cpu_us_per_delivery": (
                    round(cpu_to_drained * 1e6 / got["deliveries"], 2) if got["deliveries"] else None
                ),
                "memory": [m for s in holders if (m := memory_of(s.proc.pid)) is not None],
            },
        }
        if warmup is not None:
            result["warmup"] = {k: warmup[k] for k in WARMUP_FIGURES}
        return result

    def part_e(self) -> dict[str, Any]:
        """The bare view + one INSERT, same server kind and process count, no middleware."""
        a = self.args
        sql_scalar(a.db_url, "DROP TABLE IF EXISTS bench_ceiling")
        from bench.ceiling import CREATE_TABLE_SQL

        with psycopg.connect(a.db_url, autocommit=True) as conn:
            conn.execute(CREATE_TABLE_SQL)
        env = dict(self.env, DJANGO_SETTINGS_MODULE="bench.ceiling_settings", ACKLY_BENCH_CEILING="1")
        http, _ = self.start_servers(env, "/bench/ping", a.ceiling_server, a.ceiling_procs)
        log(
            f"(e) ceiling: POST /bench/ceiling, {a.concurrency} connections, "
            f"{a.warmup:g}s warm-up + {a.duration:g}s"
        )
        result = self.closed_loop("e", http, "/bench/ceiling", "ceiling")
        expected = result["accepted"] + warmed(result)
        memory = self.memory()
        self.sup.stop_servers()
        rows = sql_scalar(a.db_url, "SELECT count(*) FROM bench_ceiling")
        return {
            "status": "ran",
            **result,
            "memory": memory,
            "count_check": {
                "expected": expected,
                "found": rows,
                "passed": rows == expected and result["unknown_outcomes"] == 0
                and result.get("warmup", {}).get("unknown_outcomes", 0) == 0,
            },
        }

    # the run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        self.results.update(
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            machine=machine(a.db_url),
            options=vars(a).copy(),
            # Settings passed through from the caller's environment that change what is measured.
            server_settings={k: self.env[k] for k in ("INGEST_FAST_LANE",) if k in self.env},
        )
        self.prepare()
        parts = set(a.parts.split(","))
        log(f"starting {a.procs} x {a.server}")
        http, ws = self.start_servers(self.env, "/api/v1/ingest/ping")
        self.start_worker()
        self.results["servers"] = [
            {"name": s.name, "port": s.port, "command": " ".join(s.command[0:1] + s.command[1:])}
            for s in self.sup.servers
        ]
        skip = {"status": "skipped: not selected (--parts)"}
        self.results["a"] = self.part_a(http) if "a" in parts else skip
        self.results["b"] = self.part_b(http) if "b" in parts else skip
        self.results["c"] = self.part_c(http, ws) if "c" in parts else skip
        memory = self.memory()
        self.results["d"] = {
            "status": "ran",
            "processes": memory,
            "max_peak_rss_mb": max((m["peak_rss_mb"] for m in memory), default=None),
        }
        self.stop_worker()
        self.sup.stop_servers()
        self.results["verification"] = self.verify()
        self.results["e"] = self.part_e() if "e" in parts else skip
        # (f) after the count check: its other traffic and probes are events of their own.
        self.results["f"] = alerts_bench.part_f(self) if "f" in parts else skip
        self.results["g"] = self.part_g() if "g" in parts else skip
        self.results["a_fraction_of_ceiling"] = fraction(self.results["a"], self.results["e"])
        self.results["goals"] = goals(self.results)
        checks = [self.results["verification"]["passed"]]
        if self.results["e"].get("status") == "ran":
            checks.append(self.results["e"]["count_check"]["passed"])
        self.results["passed"] = all(checks)
        self.results["server_stops"] = dict(STOPS)
        self.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return self.results

    def part_g(self) -> dict[str, Any]:
        """(g) the dashboard at scale: bench/scale.py in its own process, under this run's lock,
        on its own database (prefilled once, kept); its raw results in bench/results/scale.json."""
        a = self.args
        out = ROOT / "bench" / "results" / "scale.json"
        command = [PYTHON, "-m", "bench.scale", "--lock-held", "--rows", str(a.scale_rows),
                   "--repeat", str(a.scale_repeat), "--out", str(out)]
        log(f"(g) dashboard at scale: {' '.join(command[1:])}")
        proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True,
                                preexec_fn=die_with_parent)
        self.sup.others.append(proc)
        try:
            code = proc.wait()
        finally:
            self.sup.others.remove(proc)
        if code != 0 or not out.exists():
            return {"status": f"failed (exit {code})"}
        scale = json.loads(out.read_text())
        rows = scale["sequential"]
        slowest = max(rows, key=lambda row: row["p95_ms"])
        return {
            "status": "ran",
            "results": str(out.relative_to(ROOT)),
            "rows": scale["targets"]["rows"],
            "slowest_p95": {"name": slowest["name"], "p95_ms": slowest["p95_ms"]},
            "over_150ms_p95": [row["name"] for row in rows if row["p95_ms"] > 150],
            "live_page_users": [
                {"users": c["users"], "p95_ms": c["p95_ms"]} for c in scale["concurrent"]
            ],
        }

    def verify(self) -> dict[str, Any]:
        """Every accepted event is in the database, and nothing else is."""
        r = self.results
        ran = [p for p in ("a", "b", "c") if r[p].get("status") == "ran"]
        expected_events = self.prefilled + (
            r["a"]["accepted"] + warmed(r["a"]) if "a" in ran else 0
        )
        if "c" in ran:
            expected_events += r["c"]["sent"]["accepted"] + warmed(r["c"])
        expected_timeline = r["b"]["accepted"] if "b" in ran else 0
        unknown = sum(r[p]["unknown_outcomes"] for p in ("a", "b") if p in ran)
        for p in ("a", "c"):
            if p in ran:
                unknown += r[p].get("warmup", {}).get("unknown_outcomes", 0)
        if "c" in ran:
            unknown += r["c"]["sent"]["unknown_outcomes"]
        db = self.args.db_url
        events_ws = sql_scalar(
            db, "SELECT count(*) FROM ingest_event WHERE workspace_id = %s", (self.workspace_pk,)
        )
        events_all = sql_scalar(db, "SELECT count(*) FROM ingest_event")
        timeline_ws = sql_scalar(
            db,
            "SELECT count(*) FROM ingest_timelineevent WHERE workspace_id = %s",
            (self.workspace_pk,),
        )
        timeline_all = sql_scalar(db, "SELECT count(*) FROM ingest_timelineevent")
        usage = sql_scalar(
            db,
            "SELECT coalesce(sum(events), 0) FROM billing_usage WHERE workspace_id = %s",
            (self.workspace_pk,),
        )
        passed = (
            unknown == 0
            and events_ws == events_all == expected_events
            and timeline_ws == timeline_all == expected_timeline
        )
        return {
            "parts_counted": ran,
            "events": {
                "expected": expected_events,
                "in_workspace": events_ws,
                "in_table": events_all,
            },
            "timeline_events": {
                "expected": expected_timeline,
                "in_workspace": timeline_ws,
                "in_table": timeline_all,
            },
            "quota_usage_counter": int(usage),
            "unknown_outcomes": unknown,
            "passed": passed,
        }


def read_ready(proc: subprocess.Popen, timeout: float) -> int:
    """Wait for the listener's `READY n` line (its stdout is a binary pipe)."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            chunk = b""
        buf += chunk
        for line in buf.decode(errors="replace").splitlines():
            if line.startswith("READY "):
                return int(line.split()[1])
        if not chunk and proc.poll() is not None:
            raise BenchError("websocket listener exited before it was ready")
        time.sleep(0.1)
    raise BenchError("websocket listener not ready in time")


def fraction(a: dict[str, Any], e: dict[str, Any]) -> float | None:
    if a.get("status") != "ran" or e.get("status") != "ran" or not e.get("req_per_s"):
        return None
    return round(a["req_per_s"] / e["req_per_s"], 3)


def goals(r: dict[str, Any]) -> dict[str, Any]:
    """Each goal beside the figure measured (None: the part did not run)."""

    def lat(part: dict[str, Any]) -> float | None:
        return (part.get("latency") or {}).get("p99_ms") if part.get("status") == "ran" else None

    a, b, c = r["a"], r["b"], r["c"]
    figures = {
        "a_req_per_s": (a.get("req_per_s") if a.get("status") == "ran" else None, ">="),
        "a_p99_ms": (lat(a), "<="),
        "b_events_per_s": (b.get("events_per_s") if b.get("status") == "ran" else None, ">="),
        "c_p99_ms": (lat(c), "<="),
        "d_rss_mb": (r["d"].get("max_peak_rss_mb"), "<="),
    }
    out = {}
    for name, (value, op) in figures.items():
        goal = GOALS[name]
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out[name] = {"measured": value, "goal": f"{op} {goal}", "met": met}
    return out


def machine(db_url: str) -> dict[str, Any]:
    mem_kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    try:
        pg = sql_scalar(admin_url(db_url), "SHOW server_version")
    except psycopg.Error:
        pg = None
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return {
        "nproc": os.cpu_count(),
        "mem_total_gb": round(mem_kb / 1024 / 1024, 1),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "postgresql": pg,
        "git_commit": commit,
        # Servers run the working tree: uncommitted changes to tracked files are named here.
        "git_modified_files": [line[3:] for line in dirty],
    }


def cpu_line(part: dict[str, Any]) -> str:
    cpu = part.get("cpu") or {}
    return (
        f"server CPU {cpu.get('servers_ms_per_request')} ms/request; CPU s of "
        f"{cpu.get('capacity_s')}: servers {cpu.get('servers_s')}, worker "
        f"{cpu.get('worker_s')}, postgres "
        f"{cpu.get('postgres_s')}, client {cpu.get('client_s')}, whole machine "
        f"{cpu.get('machine_busy_s')}"
    )


def summary(r: dict[str, Any]) -> str:
    def lat(p: dict[str, Any]) -> str:
        latency = p.get("latency") or {}
        return f"p50 {latency.get('p50_ms')} ms, p99 {latency.get('p99_ms')} ms"

    lines = [
        f"Ackly bench ({r['options']['procs']} x {r['options']['server']}, "
        f"client {r['options'].get('client', 'aiohttp')}, "
        f"{r['machine']['nproc']} cores, load {r['machine']['loadavg_at_start'][0]:.2f})"
    ]
    a, b, c, e = r["a"], r["b"], r["c"], r["e"]
    lines.append(
        "(a) single events: "
        + (
            f"{a['req_per_s']} req/s, {lat(a)}, errors {a['errors']} of {a['requests']}; " + cpu_line(a)
            if a.get("status") == "ran"
            else a["status"]
        )
    )
    lines.append(
        "(b) 500-event batches: "
        + (
            f"{b['events_per_s']} events/s ({b['req_per_s']} req/s), {lat(b)}, errors {b['errors']}; "
            + f"server CPU {(b.get('cpu') or {}).get('servers_ms_per_event')} ms/event; "
            + cpu_line(b)
            if b.get("status") == "ran"
            else b["status"]
        )
    )
    lines.append(
        "(c) ingest->websocket: "
        + (
            f"{lat(c)}, {c['sockets']} sockets, sent {c['sent']['accepted_per_s']} events/s "
            f"(target {r['options']['ws_rate']:g}, {c['sent']['skipped_by_client']} not sent on "
            f"time), delivered {c['delivered_fraction']}; socket server CPU "
            f"{c['socket_servers']['cpu_s_while_sending']} s in {c['socket_servers']['sending_s']} s "
            f"({c['socket_servers']['cpu_us_per_delivery']} us per delivery), "
            f"peak RSS {[m['peak_rss_mb'] for m in c['socket_servers']['memory']]} MB"
            if c.get("status") == "ran"
            else c["status"]
        )
    )
    lines.append(
        "(d) peak RSS per server process (MB): "
        + ", ".join(f"{m['server']}:{m['peak_rss_mb']}" for m in r["d"].get("processes", []))
    )
    lines.append(
        "(e) ceiling (view + one INSERT): "
        + (
            f"{e['req_per_s']} req/s, {lat(e)}; (a) is {r['a_fraction_of_ceiling']} of it; " + cpu_line(e)
            if e.get("status") == "ran"
            else e["status"]
        )
    )
    v = r["verification"]
    lines.append(
        f"count check: events {v['events']}, timeline {v['timeline_events']}, "
        f"unknown {v['unknown_outcomes']} -> {'PASSED' if v['passed'] else 'FAILED'}"
    )
    if e.get("status") == "ran":
        lines.append(f"ceiling count check: {e['count_check']}")
    lines.append(alerts_bench.summary_line(r.get("f", {"status": "not run"})))
    g = r.get("g", {"status": "not run"})
    lines.append(
        "(g) dashboard at scale: "
        + (
            f"{g['rows']:,} rows, slowest p95 {g['slowest_p95']}, over 150 ms: "
            f"{g['over_150ms_p95'] or 'none'}, live page with users {g['live_page_users']} "
            f"({g['results']})"
            if g.get("status") == "ran"
            else g["status"]
        )
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n")[0])
    # The default is the production recipe (docs/deployment.md): uvicorn processes for HTTP
    # (the fast lane serves POST /api/ingest), one Daphne for the websockets.
    p.add_argument(
        "--server", choices=["recipe", "daphne", "uvicorn", "gunicorn"], default="recipe",
        help="recipe: uvicorn for HTTP + Daphne for websockets; gunicorn: sync workers + Daphne",
    )
    p.add_argument(
        "--procs", type=int, default=None,
        help="HTTP server processes (gunicorn: workers); default 4 for gunicorn, else 2",
    )
    # The ceiling is a sync Django view: gunicorn's sync workers serve it fastest (the
    # reference figures and docs/performance.md), so (a) is compared with its best case.
    p.add_argument("--ceiling-server", choices=["daphne", "uvicorn", "gunicorn"], default="gunicorn")
    p.add_argument("--ceiling-procs", type=int, default=None, help="default as --procs for it")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per part (a), (b), (e)")
    p.add_argument(
        "--warmup", type=float, default=2.0,
        help="seconds of the same load before (a), (c) and (e), counted in the count check only",
    )
    p.add_argument("--concurrency", type=int, default=32, help="connections for (a) and (e)")
    p.add_argument(
        "--client",
        choices=["wrk", "aiohttp"],
        default="wrk" if wrk_client.available() else "aiohttp",
        help="load generator for (a) and (e); default wrk when /usr/bin/wrk is installed",
    )
    p.add_argument("--batch-concurrency", type=int, default=4, help="connections for (b)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--ws-sockets", type=int, default=50)
    p.add_argument("--ws-rate", type=float, default=1000.0, help="events/s sent during (c)")
    p.add_argument("--ws-duration", type=float, default=None, help="seconds of (c); default --duration")
    p.add_argument(
        "--ws-grace",
        type=float,
        default=30.0,
        help="(c): at most this long to drain late broadcasts (ends once sockets are quiet 2 s)",
    )
    p.add_argument("--max-requests", type=int, default=500_000, help="bound per part")
    p.add_argument(
        "--parts", default="a,b,c,e,f",
        help="comma-separated subset of a,b,c,e,f,g; (g), the dashboard at scale, is not in the "
        "default: its first prefill (40,000,000 rows) takes 15-30 minutes",
    )
    alerts_bench.add_arguments(p)
    p.add_argument("--scale-rows", type=int, default=40_000_000, help="(g): rows prefilled")
    p.add_argument("--scale-repeat", type=int, default=20, help="(g): runs of each request")
    p.add_argument(
        "--db-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ackly_bench"),
    )
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"))
    p.add_argument(
        "--keep-burst-limits",
        action="store_true",
        help="keep Pro's burst limits (500/key, 1500/workspace) instead of raising them",
    )
    p.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="rows put in ingest_event before the load (e.g. 10^6)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep server logs (always kept on failure)")
    p.add_argument("--keep-db", action="store_true", help="do not drop the bench database at the end")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    p.add_argument("--lock-wait", type=float, default=600.0, help="seconds to wait for another run")
    p.add_argument(
        "--max-total", type=int, default=None,
        help="hard stop for the whole run (s); default 900, 7200 with part (g)",
    )
    args = p.parse_args(argv)
    if args.ws_duration is None:
        args.ws_duration = args.duration
    if args.procs is None:
        args.procs = 4 if args.server == "gunicorn" else 2
    if args.ceiling_procs is None:
        args.ceiling_procs = 4 if args.ceiling_server == "gunicorn" else 2
    if args.max_total is None:
        args.max_total = 7200 if "g" in args.parts.split(",") else 900
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    lock = take_lock(LOCK_PATH, args.lock_wait)
    if lock is None:
        print("another bench run holds the lock; giving up", file=sys.stderr)
        return 2
    signal.alarm(args.max_total)
    workdir = Path(tempfile.mkdtemp(prefix="ackly-bench-"))
    bench = Bench(args, workdir)
    try:
        results = bench.run()
    except KeyboardInterrupt as exc:
        print(f"bench interrupted: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - report, clean up, exit non-zero
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        for server in bench.sup.servers:
            print(
                f"--- {server.name}:{server.port} log tail\n{tail(server.log_path)}",
                file=sys.stderr,
            )
        return 1
    finally:
        signal.alarm(0)
        bench.sup.stop_all()
        leave_no_trace(args, lock)
    if args.keep_logs:
        results["logs"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))
    print(f"written: {out}" + (f"  (server logs: {workdir})" if args.keep_logs else ""))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
