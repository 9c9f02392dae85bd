"""The soak's own correctness: a short soak runs every kind of request and its checks pass.

It runs the real soak (`python -m bench.soak`): its own PostgreSQL database (ackly_soak) and
Redis DB 13, a real server process started by bench.run's recipe, the separate load process
and its websockets, purge_expired. It asserts what the soak counted and checked, never how
fast anything was. The ten-minute run is `make soak` (docs/reliability.md).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import MIX, memory_report

ROOT = Path(__file__).resolve().parents[2]


def needs_servers(test):
    """The markers of tests/bench's smoke run: PostgreSQL, Redis and a real server process."""
    for mark in (pytest.mark.postgres, pytest.mark.redis, pytest.mark.server):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def soak(tmp_path_factory) -> tuple[int, dict]:
    """One 10 s soak at 10 requests/s on one server process (about 30 s in all)."""
    pytest.importorskip("aiohttp", reason="the soak's load process needs aiohttp (dev/bench extra)")
    out = tmp_path_factory.mktemp("soak") / "soak.json"
    options = shlex.split(
        "--duration 10 --rate 10 --procs 1 --sockets 2 --purges 1 --old-rows 100 "
        "--sample-every 2 --grace 150 --lock-wait 60"
    )
    command = [sys.executable, "-m", "bench.soak", *options, "--out", str(out)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the soak stops every process it started on its way out.
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
    if not out.exists():
        pytest.fail(
            f"soak wrote no result (exit {proc.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    return proc.returncode, json.loads(out.read_text())


@needs_servers
def test_it_passes_and_exits_zero(soak):
    returncode, results = soak
    assert results["passed"] is True, results["load"]["error_samples"]
    assert returncode == 0


@needs_servers
def test_every_kind_of_request_was_sent_and_answered_as_documented(soak):
    _, results = soak
    load = results["load"]
    assert set(load["by_kind"]) == set(MIX)
    assert load["errors"] == 0, load["errors_by_kind"]
    assert load["unknown_outcomes"] == 0
    assert load["replays_checked"] >= 1
    statuses = {kind: set(v["statuses"]) for kind, v in load["by_kind"].items()}
    assert statuses["single"] == {"201"}
    assert statuses["batch"] == {"202"}
    assert statuses["partial_batch"] == {"207"}
    assert statuses["conflict"] == {"409"}
    assert statuses["too_large"] == {"413"}
    assert statuses["bad_key"] == statuses["no_auth"] == {"401"}


@needs_servers
def test_every_accepted_event_is_stored_and_nothing_else(soak):
    _, results = soak
    check = results["count_check"]
    assert all(check["checks"].values()), check["checks"]
    events = check["events"]
    # The load process's own count of 201s is what the database holds, by id.
    single_201 = results["load"]["by_kind"]["single"]["statuses"]["201"]
    assert events["expected"] == events["in_table"] == single_201 > 0
    assert events["missing"] == events["unexpected"] == events["dry_run_ids_stored"] == []
    timeline = check["timeline_events"]
    assert timeline["expected"] == timeline["in_table"] > 0
    assert check["quota_usage"]["counter"] == events["expected"] + timeline["expected"]
    assert check["rejections"]["counted"] == check["rejections"]["expected"] != {}


@needs_servers
def test_purge_expired_ran_during_the_load_and_removed_only_the_planted_rows(soak):
    _, results = soak
    (purge,) = results["purges"]
    assert purge["exit"] == 0
    planted = results["count_check"]["purge"]["planted"]
    assert planted["ingest.Event"] == 100
    for label, count in planted.items():
        assert purge["deleted"][label] == count
    assert results["count_check"]["purge"]["past_retention_left"] == 0


@needs_servers
def test_the_dashboard_sockets_stayed_connected_and_saw_only_stored_events(soak):
    _, results = soak
    sockets = results["load"]["websockets"]["sockets"]
    assert len(sockets) == 2
    for socket in sockets:
        assert socket["connects"] == 1
        assert socket["closed_early"] == []
        assert socket["frames"].get("events", 0) > 0
    assert results["load"]["websockets"]["events_not_accepted"] == []


@needs_servers
def test_it_sampled_the_memory_of_every_server_process(soak):
    _, results = soak
    memory = results["memory"]
    # Every process of the recipe (gunicorn's master and workers, Daphne), sampled throughout.
    assert {p["server"] for p in memory["processes"]} == {s["name"] for s in results["servers"]}
    for process in memory["processes"]:
        assert process["samples"] >= 3
        assert 0 < process["start_rss_mb"] <= process["peak_rss_mb"]
        assert process["end_rss_mb"] <= process["peak_rss_mb"]
    # Ten seconds say nothing about a leak: the soak says so instead of judging.
    assert memory["judged"] is False


def test_memory_growth_over_the_second_half_fails_the_soak():
    leak = [(t, 100.0 + t * 0.15) for t in range(0, 601, 5)]  # +45 MB over the second half
    report = memory_report(
        {1: {"server": "daphne", "cmd": "", "series": leak, "peak": 160.0}}, 600, 20.0
    )
    assert report["judged"] is True
    assert report["processes"][0]["second_half_growth_pct"] > 20
    assert report["growing_pids"] == [1]
    assert report["passed"] is False


def test_warm_up_in_the_first_half_is_not_growth():
    warm = [(t, min(100.0 + t, 140.0) + (t % 10) / 10) for t in range(0, 601, 5)]
    report = memory_report(
        {1: {"server": "daphne", "cmd": "", "series": warm, "peak": 141.0}}, 600, 20.0
    )
    assert report["passed"] is True
    assert abs(report["processes"][0]["second_half_growth_pct"]) < 2
