"""CPU per request of the ingest path in ONE process, with no server and no network client.

`make bench` measures the service the production way; on a shared 2-core machine its req/s
move with whatever else runs. This measures what a design change buys in the code itself:
`time.process_time` (this process, all its threads) per request through `ackly.wsgi`'s
application (the WSGI app a gunicorn worker runs, middleware and all), against the real
PostgreSQL and Redis given in DATABASE_URL / REDIS_URL. PostgreSQL's and Redis's own CPU is
not in it. Run it on several commits (git worktree) for a before/after table:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ackly_inproc REDIS_URL=redis://127.0.0.1:6379/8 \\
        python -m bench.inprocess --kind single --requests 2000 --rounds 5

It makes a throwaway workspace (Pro, burst limits raised, limit 10^12) in that database,
warms up, then prints one JSON line: the median and min CPU ms per request over the rounds.
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.inprocess")
    parser.add_argument("--kind", choices=["single", "batch"], default="single")
    parser.add_argument("--requests", type=int, default=2000, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        raise SystemExit("set DATABASE_URL and REDIS_URL (a throwaway database and Redis DB)")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ackly.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # ackly.wsgi refuses DEBUG=0 without collected static files (ackly/startup.py).
    static_root = tempfile.mkdtemp(prefix="ackly-inproc-static-")
    atexit.register(shutil.rmtree, static_root, True)
    os.environ.setdefault("STATIC_ROOT", static_root)

    import django

    django.setup()
    from django.core.management import call_command

    from bench.loadgen import batch_body, single_body

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    out = io.StringIO()
    call_command(
        "createworkspace", f"inproc-{uuid.uuid4().hex[:8]}", "--plan", "pro",
        "--event-limit", str(10**12), stdout=out,
    )
    org = out.getvalue().strip().splitlines()[-1]
    out = io.StringIO()
    call_command("createsource", org, "inproc", "--allow", "bench.event", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    from billing.models import Plan

    for plan in Plan.objects.filter(code="pro"):  # save(): signals drop cached limits
        plan.burst_per_key = plan.burst_per_workspace = 10**9
        plan.save()

    from ackly.wsgi import application

    path, expected = ("/api/ingest", "201") if args.kind == "single" else (
        "/api/v1/ingest/events", "202"
    )
    batch = batch_body(500) if args.kind == "batch" else b""

    def one(seq: int) -> None:
        body = single_body(seq, stamp=False) if args.kind == "single" else batch
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
            "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
            "HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_IDEMPOTENCY_KEY": f"inproc-{seq}",
        }
        status: list[str] = []
        b"".join(application(environ, lambda s, headers, exc_info=None: status.append(s)))
        if not status[0].startswith(expected):
            raise SystemExit(f"unexpected {status[0]} from {path}")

    requests = args.requests if args.kind == "single" else max(1, args.requests // 50)
    seq = 0
    for _ in range(min(200, requests)):
        one(seq)
        seq += 1
    per_request = []
    for _ in range(args.rounds):
        started = time.process_time()
        for _ in range(requests):
            one(seq)
            seq += 1
        per_request.append((time.process_time() - started) * 1000 / requests)
    print(json.dumps({
        "kind": args.kind,
        "requests_per_round": requests,
        "rounds": args.rounds,
        "cpu_ms_per_request_median": round(statistics.median(per_request), 3),
        "cpu_ms_per_request_min": round(min(per_request), 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
