"""The benchmark's own correctness: a tiny run writes its JSON and its count check passes.

It asserts what the bench counted, never how fast anything was. It runs the real runner
(`python -m bench.run`): its own PostgreSQL database (ackly_bench) and Redis DB 7, the
production recipe's servers (one uvicorn, one Daphne for websockets; one gunicorn worker for
the ceiling), the separate
load-generator processes. One run, with the aiohttp load generator driving every part:
`make bench` drives (a) and (e) with wrk when it is installed; the run here asserts what was
counted, which is the same whichever client sent the requests.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.server]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[int, dict]:
    """One short run, shared by the tests below (40-60 s on a busy 2 cores)."""
    pytest.importorskip("aiohttp", reason="the load generator needs aiohttp (dev/bench extra)")
    out = tmp_path_factory.mktemp("bench") / "latest.json"
    # Tiny and bounded: 1 server process, 2 s per part, 2 sockets; the runner's own hard stop
    # (--max-total) ends it long before the test's timeout.
    options = shlex.split(
        "--procs 1 --ceiling-procs 1 --duration 2 --warmup 0.5 --concurrency 4 "
        "--batch-concurrency 1 --batch-size 20 "
        "--ws-sockets 2 --ws-rate 20 --ws-grace 1 --max-requests 400 --max-total 200 "
        "--lock-wait 120 --client aiohttp --parts a,b,c,e,f"
    )
    command = [sys.executable, "-m", "bench.run", *options, "--out", str(out)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=360)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the runner stops every process it started on its way out.
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode != 0 or not out.exists():
        pytest.fail(
            f"bench run failed (exit {proc.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    return proc.returncode, json.loads(out.read_text())


def test_it_writes_the_results_json_and_exits_cleanly(smoke_run):
    returncode, results = smoke_run
    assert returncode == 0
    assert results["passed"] is True
    for part in ("a", "b", "c", "d", "e", "verification", "goals", "machine"):
        assert part in results


def test_it_records_which_client_drove_a_and_e(smoke_run):
    _, results = smoke_run
    assert results["options"]["client"] == "aiohttp"
    for part in ("a", "e"):
        assert results[part].get("client", "aiohttp") == "aiohttp"
        assert results[part]["client_cpu_s"] is not None


def test_every_part_ran_against_real_endpoints_and_stored_something(smoke_run):
    _, results = smoke_run
    for part in ("a", "b", "c"):
        assert results[part]["status"] == "ran", results[part]
    assert results["a"]["accepted"] > 0
    assert results["b"]["accepted"] > 0
    assert results["c"]["sent"]["accepted"] > 0
    assert results["c"]["sockets"] == 2


def test_every_accepted_event_is_in_the_database_and_nothing_else(smoke_run):
    _, results = smoke_run
    check = results["verification"]
    assert check["passed"] is True
    assert check["unknown_outcomes"] == 0
    events = check["events"]
    assert events["in_workspace"] == events["in_table"] == events["expected"]
    timeline = check["timeline_events"]
    assert timeline["in_workspace"] == timeline["in_table"] == timeline["expected"]
    # The expected figure is the sum of what the load generator saw accepted, warm-up included.
    counted = 0
    if results["a"]["status"] == "ran":
        warmup = results["a"]["warmup"]
        counted += results["a"]["accepted"] + warmup["accepted"]
        assert results["a"]["accepted"] == results["a"]["statuses"].get("201", 0)
        assert warmup["accepted"] == warmup["statuses"].get("201", 0) > 0
    if results["c"]["status"] == "ran":
        warmup = results["c"]["warmup"]  # untimed, but stored like the rest
        counted += results["c"]["sent"]["accepted"] + warmup["accepted"]
        assert warmup["accepted"] == warmup["statuses"].get("201", 0) > 0
    assert events["expected"] == counted


def test_part_f_times_events_to_the_webhook_with_the_alerts_worker(smoke_run):
    _, results = smoke_run
    f = results["f"]
    assert f["status"] == "ran", f
    assert f["probes"] >= 1 and f["latency"]["p50_ms"] > 0


def test_the_ceiling_stores_exactly_the_requests_it_answered_201(smoke_run):
    _, results = smoke_run
    ceiling = results["e"]
    assert ceiling["status"] == "ran"
    assert ceiling["accepted"] > 0
    assert ceiling["accepted"] == ceiling["statuses"]["201"]
    both = ceiling["accepted"] + ceiling["warmup"]["accepted"]
    assert ceiling["count_check"] == {"expected": both, "found": both, "passed": True}


def test_it_reports_peak_memory_for_every_server_process(smoke_run):
    _, results = smoke_run
    processes = results["d"]["processes"]
    # The recipe's servers (uvicorn for HTTP, the websockets' Daphne): each one.
    assert {p["server"] for p in processes} == {s["name"] for s in results["servers"]}
    assert len(processes) >= len(results["servers"])
    assert all(p["peak_rss_mb"] > 0 for p in processes)
