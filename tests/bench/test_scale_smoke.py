"""The scale bench's own correctness (bench/scale.py): a tiny prefill, its counters equal to its
rows, and every dashboard request it measures answered 200 by the real server.

It asserts what the bench filled and counted, never how fast anything was. It runs the real
script (`python -m bench.scale`) on its own PostgreSQL database, dropped at the end, and
Redis DB 2 (the script's default); the runner's lock is not taken (`--lock-held`): nothing
here is a figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import drop_database

ROOT = Path(__file__).resolve().parents[2]
DB_URL = "postgres://postgres@127.0.0.1:5432/ackly_scale_smoke"

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.server]


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("scale") / "scale.json"
    command = [
        sys.executable, "-m", "bench.scale", "--rows", "4000", "--workspaces", "5", "--refill",
        "--check-counters", "--repeat", "1", "--procs", "1", "--users", "2",
        "--users-seconds", "0.5", "--think", "0", "--lock-held", "--db-url", DB_URL,
        "--out", str(out),
    ]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    finally:
        drop_database(DB_URL)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_the_prefill_splits_the_rows_as_documented(scale_run):
    prefill, targets = scale_run["prefill"], scale_run["targets"]
    assert prefill["rows"] == targets["rows"] == 4000
    assert prefill["events"] == prefill["timeline_events"] == 2000
    assert prefill["big_workspace"] == {"events": 1500, "timeline_events": 1500}
    assert (targets["events"], targets["timeline_events"]) == (1500, 1500)
    assert targets["workspaces"] == 5


def test_the_counters_equal_the_rows(scale_run):
    assert scale_run["counters"] == {
        "mismatched_counters": {"ingest_event": 0, "ingest_timelineevent": 0},
        "passed": True,
    }


def test_every_dashboard_request_is_answered(scale_run):
    rows = scale_run["sequential"]
    names = {row["name"] for row in rows}
    assert {"live page", "feed.json", "worker page (busiest)", "workers list", "usage page",
            "live ?q=<no match> (search)"} <= names
    assert [row["name"] for row in rows if row["statuses"] != [200]] == []
    assert all(row["n"] == 1 for row in rows)
    crowd = scale_run["concurrent"]
    assert [c["users"] for c in crowd] == [2]
    assert list(crowd[0]["statuses"]) == ["200"]
