"""Part (f) of `make bench`: event → webhook received, while other traffic flows.

A workspace of its own gets a source, a webhook channel to a receiver in this process
(127.0.0.1) and a failure rule on that source, all made by the real management commands;
`--alerts-workers` `manage.py worker` processes run beside the servers. While the load
generator sends `--alerts-rate` events/s (open loop) on the bench workspace's key, a probe
sends failure and success events to the alerted source in turn, one at a time: each fires or
resolves the rule, and the time from just before the probe's POST to the webhook's arrival at
the receiver is one sample (one clock: both ends are this process). A probe whose webhook has
not arrived within `PROBE_TIMEOUT_SECONDS` counts as missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run import Bench

GOAL_P99_MS = 2000
PROBE_TIMEOUT_SECONDS = 15.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alerts-rate", type=float, default=1000.0,
                   help="(f): events/s of other traffic while probing")
    p.add_argument("--alerts-duration", type=float, default=None,
                   help="(f): seconds of probing; default --duration")
    p.add_argument("--alerts-workers", type=int, default=1, help="(f): manage.py worker processes")


class Receiver:
    """Webhooks in: when each arrived (monotonic) and its type."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.monotonic()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.cond:
                    receiver.arrivals.append((arrived, json.loads(body).get("type", "")))
                    receiver.cond.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float) -> tuple[float, str] | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.arrivals) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.arrivals[count - 1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def post_event(base: str, key: str, status: str) -> int:
    request = urllib.request.Request(
        f"{base}/api/ingest", data=json.dumps({"status": status, "eventType": "probe"}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def part_f(bench: Bench) -> dict[str, Any]:
    from bench.run import PYTHON, ROOT, die_with_parent, log, stop_process

    a = bench.args
    duration = a.alerts_duration or a.duration
    receiver = Receiver()
    org = bench.manage("createworkspace", "Alerted", "--plan", "pro",
                       "--event-limit", str(10**12))[-1].strip()
    source_lines = bench.manage("createsource", org, "probe")
    source, key = source_lines[-2].strip(), source_lines[-1].strip()
    # The receiver is plain http on loopback: the worker (and the channel's save-time check)
    # must allow both.
    worker_env = dict(bench.env, WEBHOOK_ALLOW_PRIVATE="1", WEBHOOK_ALLOW_HTTP="1")
    channel = bench.manage("createchannel", org, "--webhook", receiver.url, env=worker_env)[-2]
    bench.manage("createrule", org, "--channel", channel.strip(), "--on", "failure",
                 "--source", source)
    http, _ = bench.start_servers(bench.env, "/api/v1/ingest/ping")
    workers = []
    for number in range(a.alerts_workers):
        log_file = open(bench.workdir / f"worker-{number}.log", "wb")  # noqa: SIM115 - kept open
        workers.append(subprocess.Popen(
            [PYTHON, "manage.py", "worker"], cwd=ROOT, env=worker_env, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
        ))
    bench.sup.others.extend(workers)
    log(f"(f) event -> webhook: {a.alerts_workers} worker(s), {a.alerts_rate:g} events/s of "
        f"other traffic, {duration:g}s of probes")
    load_result: dict[str, Any] = {}

    def load() -> None:
        load_result.update(bench.http_load(
            "f-load", http, "/api/ingest", "single", "--rate", str(a.alerts_rate),
            concurrency=128, duration=duration + 2,
        ))

    samples: list[float] = []
    missed = 0
    try:
        time.sleep(2)  # the workers' start-up
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(1)  # the load at its rate before the first probe
        end = time.monotonic() + duration
        status = "failure"
        while time.monotonic() < end:
            expected = len(receiver.arrivals) + 1
            sent = time.monotonic()
            post_event(http[0], key, status)
            arrival = receiver.wait_for(expected, PROBE_TIMEOUT_SECONDS)
            if arrival is None:
                missed += 1
                break  # the rule's state is unknown now: stop probing
            samples.append((arrival[0] - sent) * 1000)
            status = "success" if status == "failure" else "failure"
            time.sleep(0.2)
        loader.join(timeout=duration + 180)
    finally:
        for worker in workers:
            stop_process(worker)
            bench.sup.others.remove(worker)
        bench.sup.stop_servers()
        receiver.close()
    p99 = percentile(samples, 0.99)
    return {
        "status": "ran",
        "probes": len(samples) + missed,
        "missed": missed,
        "latency": {
            "p50_ms": percentile(samples, 0.50),
            "p90_ms": percentile(samples, 0.90),
            "p99_ms": p99,
            "max_ms": round(max(samples), 1) if samples else None,
            "mean_ms": round(statistics.fmean(samples), 1) if samples else None,
        },
        "other_traffic": {k: load_result.get(k) for k in (
            "accepted", "accepted_per_s", "errors", "skipped_by_client", "unknown_outcomes")},
        "goal": f"p99 <= {GOAL_P99_MS} ms",
        "met": p99 is not None and missed == 0 and p99 <= GOAL_P99_MS,
    }


def summary_line(f: dict[str, Any]) -> str:
    if f.get("status") != "ran":
        return f"(f) event->webhook: {f.get('status')}"
    lat = f["latency"]
    return (
        f"(f) event->webhook: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms over {f['probes']} "
        f"probes ({f['missed']} missed) with {f['other_traffic'].get('accepted_per_s')} events/s "
        f"of other traffic -> goal {f['goal']} {'met' if f['met'] else 'NOT met'}"
    )
