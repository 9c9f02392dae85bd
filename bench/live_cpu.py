"""CPU per load of the live events page in ONE process, on bench.scale's database.

`bench.scale` measures the page the production way (two uvicorn processes, 20 users), which on
the shared two cores moves with whatever else runs. This measures what a change to the page
buys in the code itself: `time.process_time` per load through Django's test client (the whole
middleware stack, DEBUG off, a real session of the big workspace's owner), against the
database `bench.scale --prefill-only` made. PostgreSQL's own CPU is not in it.

    .venv/bin/python -m bench.live_cpu --db-url postgres://postgres@127.0.0.1:5432/ackly_scale \\
        --loads 200 --rounds 3

Run it from a worktree of another commit for a before/after pair (bench/compare_commits.sh
makes such worktrees). Prints one line per round and a JSON line: median and min ms per load.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.live_cpu")
    parser.add_argument("--db-url", default="postgres://postgres@127.0.0.1:5432/ackly_scale")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    parser.add_argument("--loads", type=int, default=200, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    static_root = tempfile.mkdtemp(prefix="ackly-live-cpu-")
    atexit.register(shutil.rmtree, static_root, ignore_errors=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="ackly.settings", DATABASE_URL=args.db_url,
        REDIS_URL=args.redis_url, DEBUG="0", SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="testserver", SECURE_SSL_REDIRECT="0", STATIC_ROOT=static_root,
    )
    # The page names its static files through the manifest, as in production.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
                   cwd=ROOT, check=True)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from bench.scale import OWNER
    from bench.setup_data import logged_in_session
    from workspaces.models import Membership

    user = get_user_model().objects.get(username=OWNER)
    membership = Membership.objects.select_related("workspace").filter(user=user).first()
    url = f"/w/{membership.workspace.public_id}/events/"
    client = Client()
    client.cookies["sessionid"] = logged_in_session(user)
    for _ in range(20):  # warm: templates compiled, connections in the pool, plans cached
        response = client.get(url)
        assert response.status_code == 200, response.status_code
    per_load = []
    for _ in range(args.rounds):
        started = time.process_time()
        for _ in range(args.loads):
            client.get(url)
        per_load.append((time.process_time() - started) / args.loads * 1000)
        print(f"{args.loads} loads of {url}: {per_load[-1]:.2f} ms CPU each", flush=True)
    print(json.dumps({"page": "live", "bytes": len(response.content), "loads": args.loads,
                      "cpu_ms_median": round(statistics.median(per_load), 2),
                      "cpu_ms_min": round(min(per_load), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
