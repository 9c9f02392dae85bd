"""The benchmark's own correctness: a tiny run writes its JSON and its count check passes.

It asserts what the bench counted, never how fast anything was. It runs the real runner
(`python -m bench.run`): its own PostgreSQL database (ackly_bench) and Redis DB 7, a real
Daphne process, the separate load-generator processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.server]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    """One short run shared by the tests below (about 30 s)."""
    pytest.importorskip("aiohttp", reason="the load generator needs aiohttp (dev/bench extra)")
    out = tmp_path_factory.mktemp("bench") / "latest.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--procs",
            "1",
            "--duration",
            "2",
            "--concurrency",
            "4",
            "--batch-concurrency",
            "1",
            "--batch-size",
            "20",
            "--ws-sockets",
            "2",
            "--ws-rate",
            "20",
            "--ws-grace",
            "1",
            "--max-requests",
            "400",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    results = json.loads(out.read_text()) if out.exists() else {}
    return proc, results


def test_it_writes_the_results_json_and_exits_cleanly(smoke_run):
    proc, results = smoke_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert results["passed"] is True
    for part in ("a", "b", "c", "d", "e", "verification", "goals", "machine"):
        assert part in results


def test_every_accepted_event_is_in_the_database_and_nothing_else(smoke_run):
    _, results = smoke_run
    check = results["verification"]
    assert check["passed"] is True
    assert check["unknown_outcomes"] == 0
    events = check["events"]
    assert events["in_workspace"] == events["in_table"] == events["expected"]
    timeline = check["timeline_events"]
    assert timeline["in_workspace"] == timeline["in_table"] == timeline["expected"]
    # The expected figure is the sum of what the load generator saw accepted.
    counted = 0
    if results["a"]["status"] == "ran":
        counted += results["a"]["accepted"]
        assert results["a"]["accepted"] == results["a"]["statuses"].get("201", 0)
    if results["c"]["status"] == "ran":
        counted += results["c"]["sent"]["accepted"]
    assert events["expected"] == counted


def test_the_ceiling_stores_exactly_the_requests_it_answered_201(smoke_run):
    _, results = smoke_run
    ceiling = results["e"]
    assert ceiling["status"] == "ran"
    assert ceiling["accepted"] > 0
    assert ceiling["accepted"] == ceiling["statuses"]["201"]
    assert ceiling["count_check"] == {
        "expected": ceiling["accepted"],
        "found": ceiling["accepted"],
        "passed": True,
    }


def test_it_reports_peak_memory_for_every_server_process(smoke_run):
    _, results = smoke_run
    processes = results["d"]["processes"]
    assert len(processes) == 1
    assert processes[0]["peak_rss_mb"] > 0
