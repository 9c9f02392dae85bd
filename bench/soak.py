"""`make soak`: a steady mixed load on the production recipe for 10 minutes, then exact checks.

The runner (`python -m bench.soak`) makes its own PostgreSQL database (`ackly_soak…`) and
empties its own Redis DB (13), builds a Pro workspace with a source, its key and a logged-in
owner through the management commands, plants rows that are already past retention, and
starts the server processes exactly as `bench.run` does (its recipe and defaults, not a copy).
A separate load process (`python -m bench.soak load …`) then sends, at a fixed rate (open
loop), a mix of every kind of request a real sender makes — single events, v1 batches of
several sizes, partly rejected batches, snapshots, pings, idempotent replays and conflicts,
dry runs, and refused requests that must get their documented 4xx — while a few dashboard
websockets stay connected and count what they receive. The runner meanwhile samples the
resident memory of every server process and runs `purge_expired` twice.

At the end: every accepted event is in the database and nothing else is (by id for single
events, by requestId for batches), the quota counter equals the stored events, every counted
refusal is in the rejections table, planted old rows are purged, no websocket saw an event
that was not stored. Results go to bench/results/soak.json; the exit status is non-zero on
any error, mismatch or clear memory growth. Loopback only; it always stops by itself within
--duration + --grace seconds (after at most --lock-wait waiting for another soak), and stops
every process it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from bench import run as bench_run

ROOT = bench_run.ROOT
PYTHON = bench_run.PYTHON
LOCK_PATH = Path(tempfile.gettempdir()) / "ackly-soak.lock"
DB_PREFIX = "ackly_soak"
SAFE_REDIS_DBS = frozenset({"", "0", "1", "2", "3"})  # shared with other work: never emptied

# Share of each kind of request in the mix (weights, not percentages). The run starts with one
# of each, in this order (replays and conflicts last: they need an earlier keyed request).
MIX: dict[str, int] = {
    "single": 36,
    "batch": 10,
    "partial_batch": 3,
    "snapshot": 9,
    "ping": 6,
    "dry_run": 6,
    "bad_json": 3,
    "bad_fields": 3,
    "bad_key": 2,
    "no_auth": 1,
    "too_large": 1,
    "v1_bad": 4,
    "batch_over_limit": 1,
    "replay": 8,
    "conflict": 3,
}
BATCH_SIZES = ((1, 3), (10, 3), (50, 2), (200, 1), (500, 1))  # (events, weight)
ALLOWED_TYPES = ("soak.event", "soak.deploy")
WORKERS = 20  # actors of the v1 requests: soak-worker-0 … soak-worker-19
REPLAY_WINDOW_S = 300  # replay only keys younger than this (the server keeps them 600 s)
BASE62 = string.ascii_letters + string.digits


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ============================================================================================
# The load process: `python -m bench.soak load …`
# ============================================================================================


class Load:
    """One open-loop mixed load; every request started ends in exactly one counted outcome."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.kinds = list(MIX)
        self.weights = [MIX[k] for k in self.kinds]
        self.started_at = 0.0
        self.seq = 0
        self.target = itertools.count()
        self.idem_keys = itertools.count(1)
        # Outcomes.
        self.requests: Counter[str] = Counter()
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.unknown_outcomes = 0
        self.skipped_by_client = 0
        self.latency_by_kind: dict[str, list[float]] = defaultdict(list)
        self.latency_by_minute: dict[int, list[float]] = defaultdict(list)
        self.errors_by_minute: Counter[int] = Counter()
        # What the database must hold afterwards.
        self.accepted_ids: set[str] = set()
        self.dry_run_ids: set[str] = set()
        self.batch_accepted: dict[str, int] = {}  # requestId -> events accepted
        self.snapshots_stored = 0
        self.rejections: Counter[str] = Counter()  # code -> refusals the server must count
        self.replayable: list[dict[str, Any]] = []
        self.replays_checked = 0
        # Websockets.
        self.ws_stats: list[dict[str, Any]] = []
        self.ws_event_ids: set[str] = set()
        self.ws_timeline_ids: set[str] = set()
        self.last_frame = 0.0

    # --- helpers --------------------------------------------------------------------------

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def idem_key(self, kind: str) -> str:
        """A fresh Idempotency-Key (unique in the run: reuse is what `conflict` does on purpose)."""
        return f"soak-{kind}-{next(self.idem_keys)}"

    def url(self, path: str) -> str:
        urls = self.args.urls
        return urls[next(self.target) % len(urls)] + path

    def headers(self, key: str | None = None, idem: str | None = None) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        if idem is not None:
            h["Idempotency-Key"] = idem
        return h

    def error(self, kind: str, reason: str, minute: int) -> None:
        self.errors[f"{kind}: {reason}"[:160]] += 1
        self.errors_by_minute[minute] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{time.strftime('%H:%M:%S')} {kind}: {reason}"[:600])

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    # --- bodies ---------------------------------------------------------------------------

    def single_body(self, note: str = "") -> bytes:
        n = self.next_seq()
        return self.dumps(
            {
                "status": self.rng.choice(("success", "failure", "partial")),
                "message": f"soak event {n}{note}",
                "eventType": "soak.single",
                "externalId": f"soak-{n}",
                "durationMs": round(self.rng.uniform(0, 5000), 3),
                "metadata": {"seq": n, "host": "soak-host", "tags": ["x", "y"][: n % 3]},
            }
        )

    def v1_event(self, event_type: str = "soak.event") -> dict[str, Any]:
        n = self.rng.randrange(WORKERS)
        return {
            "eventType": event_type,
            "category": self.rng.choice(("operations", "development", "support")),
            "actor": {"externalId": f"soak-worker-{n}"},
            "duration": self.rng.randrange(0, 600),
            "metadata": {"seq": self.next_seq()},
        }

    def batch_size(self) -> int:
        sizes, weights = zip(*BATCH_SIZES, strict=True)
        return self.rng.choices(sizes, weights)[0]

    def snapshot_body(self) -> bytes:
        n = self.rng.randrange(WORKERS)
        return self.dumps(
            {
                "snapshotType": self.rng.choice(("tickets_open", "queue_depth")),
                "actor": {"externalId": f"soak-worker-{n}"},
                "metrics": {
                    "open": self.rng.randrange(100),
                    "oldest": {"value": self.rng.randrange(3600), "unit": "s", "label": "Oldest"},
                    "state": "ok",
                },
            }
        )

    # --- one request ----------------------------------------------------------------------

    async def send(
        self,
        kind: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None = None,
    ) -> tuple[int, Any, bytes, Any, int] | None:
        """(status, headers, raw body, parsed JSON or None, minute); None: outcome unknown."""
        minute = int((time.monotonic() - self.started_at) // 60)
        self.requests[kind] += 1
        t0 = time.perf_counter()
        try:
            async with self.session.request(
                method, self.url(path), data=body, headers=headers
            ) as r:
                raw = await r.read()
                status, resp_headers = r.status, r.headers.copy()  # case-insensitive
        except Exception as exc:  # noqa: BLE001 - a reset or timeout: counted, never hidden
            self.unknown_outcomes += 1
            self.statuses[kind][type(exc).__name__] += 1
            self.error(kind, f"no response: {type(exc).__name__}: {exc}", minute)
            return None
        ms = (time.perf_counter() - t0) * 1000.0
        self.latency_by_kind[kind].append(ms)
        self.latency_by_minute[minute].append(ms)
        self.statuses[kind][str(status)] += 1
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if status >= 500:
            self.error(kind, f"{status} {raw[:300]!r}", minute)
            return None
        return status, resp_headers, raw, parsed, minute

    def expect_error(
        self, kind: str, result: Any, status: int, code: str, counted: int = 1
    ) -> None:
        """A documented refusal: this status, this code in the envelope, X-Request-Id equal."""
        if result is None:
            return
        got, headers, raw, body, minute = result
        envelope = body.get("error") if isinstance(body, dict) else None
        if got != status or not isinstance(envelope, dict) or envelope.get("code") != code:
            self.error(kind, f"expected {status} {code}, got {got} {raw[:300]!r}", minute)
            return
        if envelope.get("requestId") != headers.get("X-Request-Id"):
            self.error(kind, "error requestId differs from X-Request-Id", minute)
        self.rejections[code] += counted

    def remember(self, path: str, idem: str, body: bytes, status: int, raw: bytes) -> None:
        self.replayable.append(
            {
                "path": path,
                "key": idem,
                "body": body,
                "status": status,
                "raw": raw,
                "t": time.monotonic(),
            }
        )

    async def pick_replayable(self) -> dict[str, Any] | None:
        """A recent keyed request to repeat; at the very start, wait up to 5 s for the first."""
        for _ in range(50):
            if self.replayable:
                break
            await asyncio.sleep(0.1)
        cutoff = time.monotonic() - REPLAY_WINDOW_S
        while self.replayable and self.replayable[0]["t"] < cutoff:
            self.replayable.pop(0)
        return self.rng.choice(self.replayable) if self.replayable else None

    # --- the kinds ------------------------------------------------------------------------

    async def do_single(self, kind: str = "single") -> None:
        body = self.single_body()
        # Half the singles carry a key (always while none is replayable yet).
        keyed = self.rng.random() < 0.5 or not self.replayable
        idem = self.idem_key("single") if keyed else None
        path = "/api/ingest/" if self.rng.random() < 0.1 else "/api/ingest"
        result = await self.send(kind, "POST", path, self.headers(self.args.key, idem), body)
        if result is None:
            return
        status, _, raw, payload, minute = result
        event_id = payload.get("id") if isinstance(payload, dict) else None
        if (
            status != 201
            or not isinstance(event_id, str)
            or not re.fullmatch(r"[0-9a-f]{24}", event_id)
        ):
            self.error(kind, f"expected 201 with an id, got {status} {raw[:300]!r}", minute)
            return
        self.accepted_ids.add(event_id)
        if idem is not None:
            self.remember(path, idem, body, status, raw)

    async def do_batch(self, kind: str = "batch") -> None:
        size = self.batch_size()
        body = self.dumps(
            {"events": [self.v1_event(self.rng.choice(ALLOWED_TYPES)) for _ in range(size)]}
        )
        idem = self.idem_key("batch") if self.rng.random() < 0.5 else None
        path = "/api/v1/ingest/events"
        result = await self.send(kind, "POST", path, self.headers(self.args.key, idem), body)
        if result is None:
            return
        status, headers, raw, payload, minute = result
        if status != 202 or not isinstance(payload, dict) or payload.get("accepted") != size:
            self.error(kind, f"expected 202 accepting {size}, got {status} {raw[:300]!r}", minute)
            return
        if payload.get("requestId") != headers.get("X-Request-Id"):
            self.error(kind, "requestId differs from X-Request-Id", minute)
        self.batch_accepted[payload["requestId"]] = size
        if idem is not None:
            self.remember(path, idem, body, status, raw)

    async def do_partial_batch(self) -> None:
        kind = "partial_batch"
        size = self.rng.choice((4, 10, 30))
        events = [self.v1_event() for _ in range(size)]
        bad = sorted(self.rng.sample(range(size), k=max(1, size // 4)))
        for i in bad:
            events[i]["eventType"] = "soak.not-whitelisted"
        body = self.dumps({"events": events})
        path = "/api/v1/ingest/events"
        result = await self.send(kind, "POST", path, self.headers(self.args.key), body)
        if result is None:
            return
        status, _, raw, payload, minute = result
        good = size - len(bad)
        rejected = (
            (payload.get("results") or {}).get("rejected") if isinstance(payload, dict) else None
        )
        if (
            status != 207
            or payload.get("accepted") != good
            or not isinstance(rejected, list)
            or [r.get("index") for r in rejected] != bad
            or {r.get("code") for r in rejected} != {"forbidden_event_type"}
        ):
            self.error(kind, f"expected 207 {good}/{size}, got {status} {raw[:300]!r}", minute)
            return
        self.batch_accepted[payload["requestId"]] = good
        self.rejections["forbidden_event_type"] += len(bad)

    async def do_snapshot(self) -> None:
        kind = "snapshot"
        body = self.snapshot_body()
        idem = self.idem_key("snapshot") if self.rng.random() < 0.3 else None
        path = "/api/v1/ingest/snapshots"
        result = await self.send(kind, "POST", path, self.headers(self.args.key, idem), body)
        if result is None:
            return
        status, _, raw, payload, minute = result
        if status != 202 or not isinstance(payload, dict) or payload.get("ok") is not True:
            self.error(kind, f"expected 202 ok, got {status} {raw[:300]!r}", minute)
            return
        self.snapshots_stored += 1
        if idem is not None:
            self.remember(path, idem, body, status, raw)

    async def do_ping(self) -> None:
        kind = "ping"
        result = await self.send(kind, "GET", "/api/v1/ingest/ping", self.headers(self.args.key))
        if result is None:
            return
        status, _, raw, payload, minute = result
        if (
            status != 200
            or not isinstance(payload, dict)
            or payload.get("organizationId") != self.args.org
        ):
            self.error(
                kind, f"expected 200 for {self.args.org}, got {status} {raw[:300]!r}", minute
            )

    async def do_replay(self) -> None:
        kind = "replay"
        record = await self.pick_replayable()
        if record is None:
            await self.do_single()
            return
        headers = self.headers(self.args.key, record["key"])
        result = await self.send(kind, "POST", record["path"], headers, record["body"])
        if result is None:
            return
        status, resp_headers, raw, _, minute = result
        if (
            status != record["status"]
            or raw != record["raw"]
            or resp_headers.get("Idempotent-Replayed") != "true"
        ):
            self.error(
                kind,
                f"expected the stored {record['status']} replayed, got {status} "
                f"replayed={resp_headers.get('Idempotent-Replayed')} {raw[:200]!r}",
                minute,
            )
            return
        self.replays_checked += 1

    async def do_conflict(self) -> None:
        kind = "conflict"
        record = await self.pick_replayable()
        if record is None:
            await self.do_single()
            return
        other = record["body"][:-1] + b',"soakConflict":' + str(self.next_seq()).encode() + b"}"
        headers = self.headers(self.args.key, record["key"])
        result = await self.send(kind, "POST", record["path"], headers, other)
        self.expect_error(kind, result, 409, "idempotency_key_reused")

    async def do_dry_run(self) -> None:
        kind = "dry_run"
        choice = self.rng.choice(("single", "batch", "snapshot"))
        if choice == "single":
            path, body, want = "/api/ingest?dryRun=true", self.single_body(" (dry run)"), 201
        elif choice == "batch":
            n = self.rng.choice((1, 20))
            path, want = "/api/v1/ingest/events?dryRun=true", 202
            body = self.dumps({"events": [self.v1_event() for _ in range(n)]})
        else:
            path, body, want = "/api/v1/ingest/snapshots?dryRun=1", self.snapshot_body(), 202
        result = await self.send(kind, "POST", path, self.headers(self.args.key), body)
        if result is None:
            return
        status, _, raw, payload, minute = result
        if status != want or not isinstance(payload, dict):
            self.error(kind, f"{choice}: expected {want}, got {status} {raw[:300]!r}", minute)
            return
        if choice == "single" and isinstance(payload.get("id"), str):
            self.dry_run_ids.add(payload["id"])

    async def do_bad_json(self) -> None:
        bodies = (b'{"status": "success",', b"\xff\xfe not utf-8", b'{"status": NaN}', b"[1, 2")
        result = await self.send(
            "bad_json", "POST", "/api/ingest", self.headers(self.args.key), self.rng.choice(bodies)
        )
        self.expect_error("bad_json", result, 400, "invalid_body")

    async def do_bad_fields(self) -> None:
        body = self.rng.choice(
            (
                {"status": "maybe"},
                {"status": "success", "durationMs": -1},
                {"status": "success", "message": "x" * 1001},
                {"status": "failure", "eventType": 42, "metadata": {"k": "v"}},
            )
        )
        result = await self.send(
            "bad_fields", "POST", "/api/ingest", self.headers(self.args.key), self.dumps(body)
        )
        self.expect_error("bad_fields", result, 400, "invalid_body")

    async def do_bad_key(self) -> None:
        key = "ak_live_" + "".join(self.rng.choice(BASE62) for _ in range(40))
        result = await self.send(
            "bad_key", "POST", "/api/ingest", self.headers(key), self.single_body()
        )
        # An unknown key names no source: nothing to count.
        self.expect_error("bad_key", result, 401, "invalid_key", counted=0)

    async def do_no_auth(self) -> None:
        result = await self.send(
            "no_auth", "POST", "/api/ingest", self.headers(), self.single_body()
        )
        self.expect_error("no_auth", result, 401, "missing_authorization", counted=0)

    async def do_too_large(self) -> None:
        kind = "too_large"
        filler = "x" * (1024 * 1024 + 512)
        if self.rng.random() < 0.5:
            body = self.dumps({"status": "success", "description": filler})
            result = await self.send(kind, "POST", "/api/ingest", self.headers(self.args.key), body)
            self.expect_error(kind, result, 413, "payload_too_large")
        else:
            body = self.dumps({"events": [self.v1_event()], "pad": filler})
            path = "/api/v1/ingest/events"
            result = await self.send(kind, "POST", path, self.headers(self.args.key), body)
            self.expect_error(kind, result, 413, "batch_too_large")

    async def do_batch_over_limit(self) -> None:
        body = self.dumps({"events": [self.v1_event() for _ in range(501)]})
        result = await self.send(
            "batch_over_limit", "POST", "/api/v1/ingest/events", self.headers(self.args.key), body
        )
        self.expect_error("batch_over_limit", result, 413, "batch_too_large")

    async def do_v1_bad(self) -> None:
        """A v1 request refused as a whole: empty, every actor missing, or every type forbidden."""
        kind = "v1_bad"
        choice = self.rng.choice(("empty", "missing_actor", "forbidden"))
        path = "/api/v1/ingest/events"
        if choice == "empty":
            result = await self.send(
                kind, "POST", path, self.headers(self.args.key), b'{"events":[]}'
            )
            self.expect_error(kind, result, 400, "invalid_body")
            return
        n = self.rng.choice((1, 3))
        events = [self.v1_event() for _ in range(n)]
        for event in events:
            if choice == "missing_actor":
                event["actor"] = {}
            else:
                event["eventType"] = "soak.not-whitelisted"
        result = await self.send(
            kind, "POST", path, self.headers(self.args.key), self.dumps({"events": events})
        )
        # Every event rejected: the first rejection's status; each event is counted.
        if choice == "missing_actor":
            self.expect_error(kind, result, 400, "missing_actor", counted=n)
        else:
            self.expect_error(kind, result, 403, "forbidden_event_type", counted=n)

    # --- websockets -----------------------------------------------------------------------

    async def socket(self, i: int, stop: Any) -> None:
        """One dashboard socket held for the whole run; reconnects (and counts) if dropped."""
        import aiohttp

        base = self.args.ws_urls[i % len(self.args.ws_urls)]
        stats: dict[str, Any] = {
            "url": base,
            "connects": 0,
            "closed_early": [],
            "frames": Counter(),
            "event_items": 0,
            "timeline_items": 0,
            "bad_frames": 0,
        }
        self.ws_stats.append(stats)
        seen_events: set[str] = set()
        seen_timeline: set[str] = set()
        stats["_events"], stats["_timeline"] = seen_events, seen_timeline
        while not stop.is_set():
            try:
                ws = await self.session.ws_connect(
                    f"{base}/ws/workspaces/{self.args.org}/",
                    headers={
                        "Cookie": f"sessionid={self.args.session}",
                        "Origin": base.replace("ws://", "http://"),
                    },
                    max_msg_size=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                )
            except Exception as exc:  # noqa: BLE001 - counted; retried after a pause
                stats["closed_early"].append(f"connect failed: {type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(1.0)
                continue
            stats["connects"] += 1
            self.ws_sockets[i] = ws
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                self.last_frame = time.monotonic()
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    stats["bad_frames"] += 1
                    continue
                kind = frame.get("type")
                stats["frames"][str(kind)] += 1
                if kind == "events":
                    for item in frame.get("items", []):
                        stats["event_items"] += 1
                        seen_events.add(item.get("id"))
                elif kind == "timeline":
                    for item in frame.get("items", []):
                        stats["timeline_items"] += 1
                        seen_timeline.add(item.get("id"))
            if not stop.is_set():
                stats["closed_early"].append(f"closed by the server: code {ws.close_code}")
                await asyncio.sleep(1.0)

    # --- the run --------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        import aiohttp

        args = self.args
        timeout = aiohttp.ClientTimeout(total=args.request_timeout)
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        stop_ws = asyncio.Event()
        self.ws_sockets: dict[int, Any] = {}
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            self.session = session
            ws_tasks = [asyncio.create_task(self.socket(i, stop_ws)) for i in range(args.sockets)]
            # The sockets join their group before the first event is sent.
            for _ in range(100):
                if len(self.ws_sockets) >= args.sockets:
                    break
                await asyncio.sleep(0.1)
            print(f"READY {len(self.ws_sockets)}", flush=True)
            self.started_at = time.monotonic()
            deadline = self.started_at + args.duration
            inflight: set[asyncio.Task] = set()
            handlers = {k: getattr(self, f"do_{k}") for k in self.kinds}
            for k in range(10**9):
                due = self.started_at + k / args.rate
                if due >= deadline:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(inflight) >= args.max_inflight:
                    self.skipped_by_client += 1
                    continue
                first = k < len(self.kinds)
                kind = self.kinds[k] if first else self.rng.choices(self.kinds, self.weights)[0]
                task = asyncio.create_task(handlers[kind]())
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if inflight:
                await asyncio.gather(*inflight)
            elapsed = time.monotonic() - self.started_at
            # Late broadcasts: wait until the sockets are quiet for 3 s (at most --ws-drain s).
            drain_start = time.monotonic()
            while time.monotonic() - drain_start < args.ws_drain:
                if time.monotonic() - max(self.last_frame, drain_start) >= 3.0:
                    break
                await asyncio.sleep(0.2)
            stop_ws.set()
            for ws in list(self.ws_sockets.values()):
                await ws.close()
            for task in ws_tasks:
                task.cancel()
            await asyncio.gather(*ws_tasks, return_exceptions=True)
        return self.report(elapsed)

    def report(self, elapsed: float) -> dict[str, Any]:
        from bench.loadgen import cpu_seconds, percentiles

        total = sum(self.requests.values())
        sockets = []
        for stats in self.ws_stats:
            events, timeline = stats.pop("_events"), stats.pop("_timeline")
            self.ws_event_ids |= events
            self.ws_timeline_ids |= timeline
            stats["frames"] = dict(stats["frames"])
            stats["distinct_events"] = len(events)
            stats["events_delivered_fraction"] = (
                round(len(events & self.accepted_ids) / len(self.accepted_ids), 4)
                if self.accepted_ids
                else None
            )
            stats["distinct_timeline_events"] = len(timeline)
            sockets.append(stats)
        # A dashboard must never show an event that was not stored (dry runs included).
        unknown_ws_events = sorted(self.ws_event_ids - self.accepted_ids)
        for stats in sockets:
            if stats["closed_early"]:
                self.errors[f"websocket dropped: {stats['closed_early'][0]}"[:160]] += len(
                    stats["closed_early"]
                )
        if unknown_ws_events:
            self.errors["websocket showed an event that was not accepted"] += len(unknown_ws_events)
        minutes = []
        for minute in sorted(self.latency_by_minute):
            lat = percentiles(self.latency_by_minute[minute])
            minutes.append(
                {
                    "minute": minute + 1,
                    "requests": len(self.latency_by_minute[minute]),
                    "errors": self.errors_by_minute.get(minute, 0),
                    "p50_ms": lat["p50_ms"],
                    "p99_ms": lat["p99_ms"],
                    "max_ms": lat["max_ms"],
                }
            )
        all_latencies = [ms for values in self.latency_by_kind.values() for ms in values]
        return {
            "duration_s": round(elapsed, 1),
            "rate_target": self.args.rate,
            "rate_achieved": round(total / elapsed, 2) if elapsed else 0.0,
            "requests": total,
            "skipped_by_client": self.skipped_by_client,
            "by_kind": {
                kind: {
                    "requests": self.requests[kind],
                    "statuses": dict(sorted(self.statuses[kind].items())),
                    "latency": percentiles(self.latency_by_kind[kind]),
                }
                for kind in self.kinds
                if self.requests[kind]
            },
            "latency": percentiles(all_latencies),
            "latency_by_minute": minutes,
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors.most_common()),
            "error_samples": self.error_samples,
            "unknown_outcomes": self.unknown_outcomes,
            "replays_checked": self.replays_checked,
            "expected": {
                "event_ids": sorted(self.accepted_ids),
                "dry_run_ids": sorted(self.dry_run_ids),
                "batches": self.batch_accepted,
                "timeline_events": sum(self.batch_accepted.values()),
                "snapshots": self.snapshots_stored,
                "rejections": dict(self.rejections),
            },
            "websockets": {
                "sockets": sockets,
                "timeline_ids_seen": sorted(self.ws_timeline_ids),
                "events_not_accepted": unknown_ws_events[:10],
            },
            "client_cpu_s": cpu_seconds(),
        }


def load_main(argv: list[str]) -> int:
    from bench.loadgen import loopback_only

    p = argparse.ArgumentParser(prog="bench.soak load")
    p.add_argument("--urls", required=True)
    p.add_argument("--ws-urls", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--org", required=True)
    p.add_argument("--session", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--sockets", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-inflight", type=int, default=256)
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--ws-drain", type=float, default=20.0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    args.urls = loopback_only(args.urls.split(","))
    args.ws_urls = loopback_only(args.ws_urls.split(","))
    result = asyncio.run(Load(args).run())
    Path(args.out).write_text(json.dumps(result))
    return 0


# ============================================================================================
# The runner: `python -m bench.soak`
# ============================================================================================


class RssSampler(threading.Thread):
    """Every `interval` s: resident memory (VmRSS, VmHWM) of every server process and child."""

    def __init__(self, bench: bench_run.Bench, interval: float) -> None:
        super().__init__(daemon=True)
        self.bench = bench
        self.interval = interval
        self.t0 = time.monotonic()
        self.samples: dict[int, dict[str, Any]] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        t = round(time.monotonic() - self.t0, 1)
        mains = {server.proc.pid for server in self.bench.sup.servers}
        for info in self.bench.memory():
            role = "main" if info["pid"] in mains else "worker"  # gunicorn forks workers
            proc = self.samples.setdefault(
                info["pid"],
                {
                    "server": info["server"],
                    "role": role,
                    "cmd": info["cmd"],
                    "series": [],
                    "peak": 0.0,
                },
            )
            proc["series"].append((t, info["rss_mb"]))
            proc["peak"] = max(proc["peak"], info["peak_rss_mb"])

    def run(self) -> None:
        self.sample()
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
        self.sample()  # the last reading, with the load finished


def memory_report(
    samples: dict[int, dict[str, Any]], duration: float, max_growth_pct: float
) -> dict[str, Any]:
    """Start, peak, end and growth over the second half of the load, per server process.

    Growth is the median RSS of the last window of the run against the median of the first
    window of its second half (window: a tenth of the run, at least 3 samples' worth), so a
    warm-up in the first half and single noisy samples do not count; the slope (least squares
    over the second half) is reported beside it. Judged only when the second half lasts 60 s
    or more.
    """
    half = duration / 2
    window = max(duration / 10, 15.0)
    judged = half >= 60
    processes = []
    for pid, proc in sorted(samples.items()):
        series = [(t, rss) for t, rss in proc["series"] if t <= duration + 5]
        if not series:
            continue
        second = [(t, rss) for t, rss in series if t >= half]
        head = [rss for t, rss in second if t <= half + window]
        tail = [rss for t, rss in second if t >= duration - window]
        growth = slope = None
        if head and tail:
            growth = round(
                (statistics.median(tail) - statistics.median(head)) / statistics.median(head) * 100,
                1,
            )
        if len(second) >= 3:
            ts = [t for t, _ in second]
            rs = [r for _, r in second]
            t_mean, r_mean = statistics.fmean(ts), statistics.fmean(rs)
            var = sum((t - t_mean) ** 2 for t in ts)
            if var > 0:
                slope = round(sum((t - t_mean) * (r - r_mean) for t, r in second) / var * 60, 2)
        processes.append(
            {
                "pid": pid,
                "server": proc["server"],
                "role": proc.get("role", "main"),
                "cmd": proc["cmd"],
                "samples": len(series),
                "start_rss_mb": series[0][1],
                "peak_rss_mb": proc["peak"],
                "end_rss_mb": series[-1][1],
                "second_half_growth_pct": growth,
                "second_half_slope_mb_per_min": slope,
                "series": series,
            }
        )
    growing = [
        p["pid"]
        for p in processes
        if judged
        and p["second_half_growth_pct"] is not None
        and p["second_half_growth_pct"] > max_growth_pct
    ]
    return {
        "threshold_pct": max_growth_pct,
        "judged": judged,
        "why_not_judged": None if judged else "the second half is shorter than 60 s",
        "processes": processes,
        "growing_pids": growing,
        "passed": not growing,
    }


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        # The server recipe is bench.run's own: its options, defaults, environment and commands.
        recipe: list[str] = ["--db-url", args.db_url, "--redis-url", args.redis_url]
        if args.server:
            recipe += ["--server", args.server]
        if args.procs:
            recipe += ["--procs", str(args.procs)]
        self.bench_args = bench_run.parse_args(recipe)
        self.bench = bench_run.Bench(self.bench_args, workdir)
        self.results: dict[str, Any] = {}
        self.planted: Counter[str] = Counter()
        self.purges: list[dict[str, Any]] = []

    # --- setup ----------------------------------------------------------------------------

    def sql(self, query: str, params: tuple = ()) -> Any:
        return bench_run.sql_scalar(self.args.db_url, query, params)

    def prepare(self) -> None:
        a = self.args
        log(f"fresh database {bench_run.db_name(a.db_url)}, Redis {a.redis_url}")
        bench_run.recreate_database(a.db_url, prefix=DB_PREFIX)
        flush_redis(a.redis_url)
        self.bench.manage("migrate", "--noinput")
        self.bench.collect_static()
        owner = "soak-owner"
        self.session = self.bench.setup_data("user", owner)[-1].strip()
        # The real Pro plan and its limits (burst 500/s per key): the soak is a steady load far
        # below them, so any 429 is a finding.
        self.org = self.bench.manage("createworkspace", "Soak", "--plan", "pro", "--owner", owner)[
            -1
        ].strip()
        lines = self.bench.manage(
            "createsource", self.org, "soak", "--allow", ",".join(ALLOWED_TYPES)
        )
        self.key = lines[-1].strip()
        self.workspace_pk = self.sql(
            "SELECT id FROM workspaces_workspace WHERE public_id = %s", (self.org,)
        )
        self.source_pk = self.sql(
            "SELECT id FROM sources_source WHERE workspace_id = %s", (self.workspace_pk,)
        )
        self.worker_pk = self.sql(
            "INSERT INTO workspaces_worker (public_id, workspace_id, display_name, external_id, "
            "email, created_at) VALUES ('wrk_soak_retired', %s, 'Retired worker', "
            "'soak-retired', NULL, now() - interval '400 days') RETURNING id",
            (self.workspace_pk,),
        )
        self.plant_old_rows("before the load")
        log(f"workspace {self.org}, source and key made by the management commands")

    def plant_old_rows(self, when: str) -> None:
        """Rows past Pro's 90-day retention, for purge_expired to delete while the load runs."""
        n = self.args.old_rows
        if n <= 0:
            return
        tag = f"{len(self.purges)}"
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO ingest_event (public_id, workspace_id, source_id, status, message, "
                "description, event_type, external_id, duration_ms, metadata, received_at) "
                "SELECT substr(md5('soak-old' || %s || i), 1, 24), %s, %s, 'success', 'old', '', "
                "'soak.old', 'old-' || i, 1, NULL, now() - interval '200 days' - make_interval(secs => i) "
                "FROM generate_series(1, %s) AS i",
                (tag, self.workspace_pk, self.source_pk, n),
            )
            conn.execute(
                "INSERT INTO ingest_timelineevent (public_id, workspace_id, source_id, worker_id, "
                "event_type, category, timestamp, duration, metadata, request_id, received_at) "
                "SELECT 'tle_soak_old_' || %s || '_' || i, %s, %s, %s, 'soak.event', 'operations', "
                "now() - interval '200 days', 1, NULL, 'req_soak_old', "
                "now() - interval '200 days' - make_interval(secs => i) FROM generate_series(1, %s) AS i",
                (tag, self.workspace_pk, self.source_pk, self.worker_pk, n // 2),
            )
            conn.execute(
                "INSERT INTO ingest_snapshothistory (workspace_id, source_id, worker_id, snapshot_type, "
                "timestamp, metrics, metadata, request_id, received_at) "
                "SELECT %s, %s, %s, 'old', now() - interval '200 days', '{\"n\": 1}'::jsonb, NULL, "
                "'req_soak_old', now() - interval '200 days' - make_interval(secs => i) "
                "FROM generate_series(1, %s) AS i",
                (self.workspace_pk, self.source_pk, self.worker_pk, n // 4),
            )
        self.planted["ingest.Event"] += n
        self.planted["ingest.TimelineEvent"] += n // 2
        self.planted["ingest.SnapshotHistory"] += n // 4
        log(f"planted {n} + {n // 2} + {n // 4} rows past retention ({when})")

    def purge(self) -> None:
        t0 = time.monotonic()
        out = subprocess.run(
            [PYTHON, "manage.py", "purge_expired", "--batch-size", "500"],
            cwd=ROOT,
            env=self.bench.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        deleted = {}
        for line in out.stdout.splitlines():
            m = re.fullmatch(r"(\S+): (\d+) deleted", line.strip())
            if m:
                deleted[m.group(1)] = int(m.group(2))
        self.purges.append(
            {
                "at_s": round(t0 - self.load_t0, 1),
                "seconds": round(time.monotonic() - t0, 2),
                "exit": out.returncode,
                "deleted": deleted,
                "stderr": out.stderr[-500:] if out.returncode else "",
            }
        )
        log(f"purge_expired: {deleted} (exit {out.returncode})")

    # --- the run --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        self.results.update(
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            machine=bench_run.machine(a.db_url),
            options=vars(a).copy(),
            recipe={"server": self.bench_args.server, "procs": self.bench_args.procs},
        )
        self.prepare()
        log(f"starting {self.bench_args.procs} x {self.bench_args.server} (bench.run's recipe)")
        http, ws = self.bench.start_servers(self.bench.env, "/api/v1/ingest/ping")
        self.results["servers"] = [
            {"name": s.name, "port": s.port, "command": " ".join(s.command)}
            for s in self.bench.sup.servers
        ]
        cpu_before = self.bench.server_cpu()
        load_out = self.workdir / "load.json"
        command = [
            PYTHON,
            "-m",
            "bench.soak",
            "load",
            "--urls",
            ",".join(http),
            "--ws-urls",
            ",".join(ws),
            "--key",
            self.key,
            "--org",
            self.org,
            "--session",
            self.session,
            "--rate",
            str(a.rate),
            "--duration",
            str(a.duration),
            "--sockets",
            str(a.sockets),
            "--seed",
            str(a.seed),
            "--out",
            str(load_out),
        ]
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=bench_run.die_with_parent,
        )
        self.bench.sup.others.append(proc)
        ready = bench_run.read_ready(proc, timeout=30)
        self.load_t0 = time.monotonic()
        sampler = RssSampler(self.bench, a.sample_every)
        sampler.start()
        log(
            f"load: {a.rate:g} req/s for {a.duration:g}s, {ready} of {a.sockets} sockets connected, "
            f"RSS every {a.sample_every:g}s"
        )
        # purge_expired while the load runs; fresh old rows before each later purge.
        schedule = [a.duration * (i + 1) / (a.purges + 1) for i in range(a.purges)]
        for i, at in enumerate(schedule):
            while time.monotonic() - self.load_t0 < at and proc.poll() is None:
                time.sleep(0.5)
            if proc.poll() is not None:
                break
            if i > 0:
                self.plant_old_rows(f"before purge {i + 1}")
            self.purge()
        try:
            proc.wait(timeout=max(0.0, a.duration - (time.monotonic() - self.load_t0)) + 90)
        except subprocess.TimeoutExpired:
            bench_run.stop_process(proc)
            raise bench_run.BenchError("the load process overran its duration by 90 s") from None
        finally:
            self.bench.sup.others.remove(proc)
            sampler.stop()
        if proc.returncode != 0 or not load_out.exists():
            raise bench_run.BenchError(f"the load process failed (exit {proc.returncode})")
        load = json.loads(load_out.read_text())
        server_cpu = round(self.bench.server_cpu() - cpu_before, 1)
        self.bench.sup.stop_servers()
        self.results["loadavg_at_end"] = os.getloadavg()
        expected = load.pop("expected")
        ws_timeline_ids = load["websockets"].pop("timeline_ids_seen")
        self.results["load"] = load
        self.results["server_cpu"] = {
            "seconds": server_cpu,
            "ms_per_request": round(server_cpu * 1000 / load["requests"], 2)
            if load["requests"]
            else None,
        }
        self.results["memory"] = memory_report(
            sampler.samples, load["duration_s"], a.max_growth_pct
        )
        self.results["purges"] = self.purges
        self.results["server_logs"] = self.server_log_problems()
        self.results["count_check"] = self.verify(expected, ws_timeline_ids)
        errors = load["errors"] + self.results["server_logs"]["tracebacks"]
        self.results["errors"] = errors
        self.results["server_stops"] = dict(bench_run.STOPS)
        self.results["passed"] = (
            errors == 0
            and self.results["count_check"]["passed"]
            and self.results["memory"]["passed"]
        )
        self.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return self.results

    def server_log_problems(self) -> dict[str, Any]:
        """Tracebacks and 500s the servers logged (an error even when the client saw none)."""
        tracebacks, samples = 0, []
        for log_path in sorted(self.workdir.glob("*.log")):
            text = log_path.read_text(errors="replace")
            for match in re.finditer(
                r"Traceback \(most recent call last\)|Internal Server Error", text
            ):
                tracebacks += 1
                if len(samples) < 3:
                    samples.append(f"{log_path.name}: {text[match.start() : match.start() + 800]}")
        return {"tracebacks": tracebacks, "samples": samples}

    def verify(self, expected: dict[str, Any], ws_timeline_ids: list[str]) -> dict[str, Any]:
        """Every accepted event in the database, nothing else; quota, rejections, purge, sockets."""
        db, ws_pk = self.args.db_url, self.workspace_pk
        with psycopg.connect(db, autocommit=True) as conn:

            def rows(query: str, params: tuple = ()) -> list[tuple]:
                return conn.execute(query, params).fetchall()

            stored_ids = {
                r[0]
                for r in rows(
                    "SELECT public_id FROM ingest_event WHERE workspace_id = %s", (ws_pk,)
                )
            }
            events_all = rows("SELECT count(*) FROM ingest_event")[0][0]
            by_request = dict(
                rows(
                    "SELECT request_id, count(*) FROM ingest_timelineevent WHERE workspace_id = %s "
                    "GROUP BY request_id",
                    (ws_pk,),
                )
            )
            timeline_all = rows("SELECT count(*) FROM ingest_timelineevent")[0][0]
            timeline_ids = {r[0] for r in rows("SELECT public_id FROM ingest_timelineevent")}
            snapshots = rows(
                "SELECT count(*) FROM ingest_snapshothistory WHERE workspace_id = %s", (ws_pk,)
            )[0][0]
            snapshots_all = rows("SELECT count(*) FROM ingest_snapshothistory")[0][0]
            usage = rows(
                "SELECT coalesce(sum(events), 0) FROM billing_usage WHERE workspace_id = %s",
                (ws_pk,),
            )[0][0]
            rejections = dict(
                rows(
                    "SELECT code, sum(count)::bigint FROM ingest_rejection WHERE workspace_id = %s "
                    "GROUP BY code",
                    (ws_pk,),
                )
            )
            old_left = sum(
                rows(
                    f"SELECT count(*) FROM {table} WHERE received_at < now() - interval '90 days'"
                )[0][0]
                for table in ("ingest_event", "ingest_timelineevent", "ingest_snapshothistory")
            )

        want_ids = set(expected["event_ids"])
        missing = sorted(want_ids - stored_ids)
        unexpected = sorted(stored_ids - want_ids)
        dry_stored = sorted(set(expected["dry_run_ids"]) & stored_ids)
        want_batches: dict[str, int] = expected["batches"]
        batch_mismatch = {
            rid: {"expected": want_batches.get(rid, 0), "found": by_request.get(rid, 0)}
            for rid in set(want_batches) | set(by_request)
            if want_batches.get(rid, 0) != by_request.get(rid, 0)
        }
        timeline_expected = expected["timeline_events"]
        stored_events = len(want_ids)
        purged = Counter()
        for purge in self.purges:
            purged.update(purge["deleted"])
        purge_ok = all(p["exit"] == 0 for p in self.purges) and all(
            purged.get(label, 0) == n for label, n in self.planted.items()
        )
        want_rejections = {code: n for code, n in expected["rejections"].items() if n}
        rejections = {code: int(n) for code, n in rejections.items()}
        ws_timeline_unknown = sorted(set(ws_timeline_ids) - timeline_ids)
        checks = {
            "events": not missing and not unexpected and events_all == stored_events,
            "timeline_events": not batch_mismatch and timeline_all == timeline_expected,
            "snapshots": snapshots == snapshots_all == expected["snapshots"],
            "quota_usage": usage == stored_events + timeline_expected,
            "rejections_counted": rejections == want_rejections,
            "purge": purge_ok and old_left == 0,
            "websockets_showed_only_stored": not ws_timeline_unknown,
        }
        return {
            "events": {
                "expected": stored_events,
                "in_workspace": len(stored_ids),
                "in_table": events_all,
                "missing": missing[:10],
                "unexpected": unexpected[:10],
                "dry_run_ids_stored": dry_stored[:10],
            },
            "timeline_events": {
                "expected": timeline_expected,
                "batches": len(want_batches),
                "in_table": timeline_all,
                "batch_mismatches": dict(list(batch_mismatch.items())[:10]),
            },
            "snapshot_history": {
                "expected": expected["snapshots"],
                "in_workspace": snapshots,
                "in_table": snapshots_all,
            },
            "quota_usage": {
                "counter": int(usage),
                "stored_events": stored_events + timeline_expected,
            },
            "rejections": {"expected": want_rejections, "counted": rejections},
            "purge": {
                "planted": dict(self.planted),
                "deleted": dict(purged),
                "past_retention_left": old_left,
            },
            "websocket_timeline_ids_not_stored": ws_timeline_unknown[:10],
            "checks": checks,
            "passed": all(checks.values()),
        }


def flush_redis(redis_url: str) -> None:
    if urlsplit(redis_url).path.strip("/") in SAFE_REDIS_DBS:
        raise bench_run.BenchError(
            "refusing to empty Redis DB 0-3: give the soak its own DB (e.g. /13)"
        )
    bench_run.clear_redis(redis_url)


# --- report -----------------------------------------------------------------------------------


def summary(r: dict[str, Any]) -> str:
    load, mem, check = r["load"], r["memory"], r["count_check"]
    lat = load["latency"]
    lines = [
        f"Ackly soak: {r['recipe']['procs']} x {r['recipe']['server']}, {load['duration_s']} s at "
        f"{load['rate_achieved']} req/s (target {load['rate_target']:g}), "
        f"{r['machine']['nproc']} cores, load average {r['machine']['loadavg_at_start'][0]:.2f} "
        f"at start, {r['loadavg_at_end'][0]:.2f} at end",
        f"requests {load['requests']}: "
        + ", ".join(f"{k} {v['requests']}" for k, v in load["by_kind"].items()),
        f"latency p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms; per minute p99: "
        + ", ".join(str(m["p99_ms"]) for m in load["latency_by_minute"]),
        f"errors {r['errors']} (unknown outcomes {load['unknown_outcomes']}, server tracebacks "
        f"{r['server_logs']['tracebacks']}, not sent on time {load['skipped_by_client']})"
        + (f": {load['errors_by_kind']}" if load["errors_by_kind"] else ""),
        "websockets: "
        + "; ".join(
            f"{s['frames']} events delivered {s['events_delivered_fraction']}, "
            f"dropped {len(s['closed_early'])}"
            for s in load["websockets"]["sockets"]
        ),
        "RSS (MB) start/peak/end, growth over the second half: "
        + "; ".join(
            f"{p['server']}{' worker' if p['role'] == 'worker' else ''}[{p['pid']}] "
            f"{p['start_rss_mb']}/{p['peak_rss_mb']}/{p['end_rss_mb']}, "
            f"{p['second_half_growth_pct']}% ({p['second_half_slope_mb_per_min']} MB/min)"
            for p in mem["processes"]
        )
        + (
            f" -> {'PASSED' if mem['passed'] else 'FAILED'} (threshold {mem['threshold_pct']}%)"
            if mem["judged"]
            else f" -> not judged: {mem['why_not_judged']}"
        ),
        f"purge_expired: {[p['deleted'] for p in r['purges']]}",
        f"count check: events {check['events']['expected']} expected, {check['events']['in_table']} stored; "
        f"timeline {check['timeline_events']['expected']}/{check['timeline_events']['in_table']}; "
        f"snapshots {check['snapshot_history']['expected']}/{check['snapshot_history']['in_table']}; "
        f"quota counter {check['quota_usage']['counter']}; rejections {check['rejections']['counted']}; "
        f"{check['checks']} -> {'PASSED' if check['passed'] else 'FAILED'}",
        f"SOAK {'PASSED' if r['passed'] else 'FAILED'}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 10 min)")
    p.add_argument("--rate", type=float, default=20.0, help="requests/s, fixed (open loop)")
    p.add_argument("--server", default=None, help="server kind; default: bench.run's default")
    p.add_argument("--procs", type=int, default=None, help="server processes; default: bench.run's")
    p.add_argument("--sockets", type=int, default=4, help="dashboard websockets held open")
    p.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling interval (s)")
    p.add_argument("--purges", type=int, default=2, help="purge_expired runs during the load")
    p.add_argument(
        "--old-rows", type=int, default=2000, help="events past retention planted per purge"
    )
    p.add_argument(
        "--max-growth-pct",
        type=float,
        default=20.0,
        help="fail when a process's RSS grows more than this over the second half",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the request mix")
    p.add_argument(
        "--db-url",
        default=os.environ.get(
            "SOAK_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ackly_soak"
        ),
    )
    p.add_argument(
        "--redis-url", default=os.environ.get("SOAK_REDIS_URL", "redis://127.0.0.1:6379/13")
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.json"))
    p.add_argument("--grace", type=int, default=300, help="hard stop at --duration + this (s)")
    p.add_argument(
        "--lock-wait", type=float, default=120.0, help="seconds to wait for another soak"
    )
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--keep-db", action="store_true")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        p.error("--rate and --duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        return load_main(argv[1:])
    args = parse_args(argv)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too: a shell that starts the soak in the background has it ignored by default.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(signum, on_signal)
    lock = bench_run.take_lock(LOCK_PATH, args.lock_wait)
    if lock is None:
        print("another soak holds the lock; giving up", file=sys.stderr)
        return 2
    signal.alarm(int(args.duration) + args.grace)
    workdir = Path(tempfile.mkdtemp(prefix="ackly-soak-"))
    soak = Soak(args, workdir)
    failed = False
    try:
        results = soak.run()
    except KeyboardInterrupt as exc:
        print(f"soak interrupted: {exc}", file=sys.stderr)
        failed = True
        return 1
    except Exception as exc:  # noqa: BLE001 - report, clean up, exit non-zero
        print(f"soak failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        for server in soak.bench.sup.servers:
            print(
                f"--- {server.name}:{server.port} log tail\n{bench_run.tail(server.log_path)}",
                file=sys.stderr,
            )
        failed = True
        return 1
    finally:
        signal.alarm(0)
        soak.bench.sup.stop_all()
        if not args.keep_db:
            with contextlib.suppress(psycopg.Error):
                bench_run.drop_database(args.db_url)
        with contextlib.suppress(Exception):
            flush_redis(args.redis_url)
        bench_run.release_lock(lock)
        if failed:
            print(f"server logs kept in {workdir}", file=sys.stderr)
    if args.keep_logs or not results["passed"]:
        results["logs"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))
    print(f"written: {out}" + (f"  (server logs: {workdir})" if "logs" in results else ""))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
