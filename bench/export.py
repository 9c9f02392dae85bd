"""The export's memory: a dashboard export of N events (1,000,000 by default) from uvicorn.

    .venv/bin/python -m bench.export [--rows 1000000] [--db-url postgres://…/ackly_bench_export]

Makes its own PostgreSQL database (dropped at the end), fills one Pro workspace with N ingest
events by one INSERT … SELECT generate_series, serves the app with uvicorn as the production
recipe does, signs in through the login form and downloads `events/export.ndjson` and
`export.csv`, counting the rows and sampling the server's resident memory every 0.1 s.
Prints one JSON line per format: rows, seconds, rows/s, RSS before and at peak (MB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.run import drop_database, free_port, memory_of, recreate_database

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PASSWORD = "export-bench-passphrase"

SETUP = """
import sys
from django.contrib.auth import get_user_model
from django.db import connection
from ingest.models import Event
from sources.services import create_source
from workspaces.services import create_workspace

user = get_user_model().objects.create_user("exporter", "exporter@example.com", "{password}")
workspace = create_workspace("Export bench", "pro", owner=user)
source, _ = create_source(workspace, "Nightly backup")
with connection.cursor() as cursor:
    cursor.execute(
        f'''INSERT INTO {{Event._meta.db_table}} (public_id, workspace_id, source_id, status, message,
            description, event_type, external_id, duration_ms, metadata, received_at)
        SELECT substr(md5(i::text), 1, 24), %s, %s,
               (ARRAY['success', 'success', 'success', 'failure', 'partial'])[1 + i %% 5],
               'backup run ' || i, '', 'backup.' || (i %% 7), 'run-' || i, (i %% 9000)::float,
               jsonb_build_object('host', 'db-' || (i %% 12), 'bytes', i * 37),
               now() - make_interval(secs => i * 1.5)
        FROM generate_series(1, %s) AS i''',
        [workspace.pk, source.pk, {rows}],
    )
    cursor.execute(f"ANALYZE {{Event._meta.db_table}}")  # as autovacuum would after such a load
print(workspace.public_id)
"""


def run(argv: list[str], env: dict[str, str], timeout: int = 1800) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Sampler(threading.Thread):
    """The server's RSS every 0.1 s (its peak, VmHWM, is read at the end too)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            memory = memory_of(self.pid)
            if memory:
                self.peak = max(self.peak, memory["rss_mb"])
            time.sleep(0.1)


def sign_in(client: httpx.Client) -> None:
    """Log in through the form. The server believes a TLS proxy is in front (X-Forwarded-Proto),
    so its cookies are Secure, which a client on plain http keeps apart: they go by hand."""
    def cookies(response: httpx.Response) -> dict[str, str]:
        return dict(re.findall(r"^([^=]+)=([^;]*)", value)[0]
                    for value in response.headers.get_list("set-cookie"))

    page = client.get("/login/")
    jar = cookies(page)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    origin = str(client.base_url).replace("http://", "https://").rstrip("/")
    answer = client.post(
        "/login/", data={"username": "exporter", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()), "Origin": origin,
                 "Referer": origin + "/login/"},
    )
    if answer.status_code != 302:
        raise SystemExit(f"login failed: {answer.status_code}")
    jar.update(cookies(answer))
    client.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())


def export(client: httpx.Client, pid: int, org_id: str, fmt: str) -> dict:
    sampler = Sampler(pid)
    before = memory_of(pid)["rss_mb"]
    sampler.start()
    started, lines, size = time.monotonic(), 0, 0
    with client.stream("GET", f"/w/{org_id}/events/export.{fmt}") as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    seconds = time.monotonic() - started
    sampler.stop.set()
    sampler.join()
    rows = lines - (1 if fmt == "csv" else 0)
    return {"format": fmt, "rows": rows, "mb": round(size / 1048576, 1),
            "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds),
            "rss_before_mb": before, "rss_peak_mb": max(sampler.peak, before)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db-url", default="postgres://postgres@127.0.0.1:5432/ackly_bench_export")
    parser.add_argument("--formats", default="ndjson,csv")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ackly-export-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ACKLY_"))}
    env.update(DJANGO_SETTINGS_MODULE="ackly.settings", DATABASE_URL=args.db_url, DEBUG="0",
               SECRET_KEY=secrets.token_urlsafe(60), ALLOWED_HOSTS="127.0.0.1",
               SECURE_SSL_REDIRECT="0", SESSION_COOKIE_SECURE="0", CSRF_COOKIE_SECURE="0",
               STATIC_ROOT=str(work / "static"), PYTHONUNBUFFERED="1")
    env.pop("REDIS_URL", None)
    recreate_database(args.db_url)
    server = None
    stack = contextlib.ExitStack()
    try:
        run([PYTHON, "manage.py", "migrate", "-v", "0"], env)
        run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"], env)
        started = time.monotonic()
        setup = SETUP.format(password=PASSWORD, rows=args.rows)
        org_id = run([PYTHON, "manage.py", "shell", "-c", setup], env).strip().splitlines()[-1]
        print(f"# {args.rows:,} events in {time.monotonic() - started:.0f} s", file=sys.stderr)
        port = free_port()
        server_log = stack.enter_context((work / "uvicorn.log").open("w"))
        server = subprocess.Popen(
            [str(Path(PYTHON).parent / "uvicorn"), "ackly.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--no-proxy-headers", "--no-access-log"],
            cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        proxied = {"X-Forwarded-Proto": "https"}
        with httpx.Client(base_url=base, timeout=600, headers=proxied) as client:
            sign_in(client)
            for fmt in args.formats.split(","):
                print(json.dumps(export(client, server.pid, org_id, fmt)))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        stack.close()
        drop_database(args.db_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
