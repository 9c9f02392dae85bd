"""The load generator: a separate process that drives HTTP or listens on dashboard websockets.

`python -m bench.loadgen http ...` sends requests (closed loop with fixed concurrency, or open
loop at a fixed rate), waits for every request it started before stopping (so each request's
outcome is known and the runner's count check is exact), and writes one JSON result.
`python -m bench.loadgen ws ...` connects N dashboard sockets, prints `READY <n>`, and records
for every event it receives the delay since the sender stamped it (`bsend:<ns>:` in the
event's externalId: both processes read the same wall clock).

Loopback only, bounded by --duration and --max-requests; it always stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import resource
import signal
import sys
import time
from array import array
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import aiohttp

MARK = re.compile(r"bsend:(\d+):")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def loopback_only(urls: list[str]) -> list[str]:
    """Refuse any target that is not on this machine."""
    for url in urls:
        if urlsplit(url).hostname not in LOOPBACK:
            raise SystemExit(f"refusing non-loopback target {url!r}")
    return urls


def percentiles(samples: array | list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max in milliseconds (nearest rank) of latencies given in milliseconds."""
    if not samples:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)
    n = len(ordered)

    def rank(p: float) -> float:
        return round(ordered[min(n - 1, max(0, int(p * n + 0.999999) - 1))], 2)

    return {
        "p50_ms": rank(0.50),
        "p90_ms": rank(0.90),
        "p99_ms": rank(0.99),
        "max_ms": round(ordered[-1], 2),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 2)


# --- request bodies -------------------------------------------------------------------------


def single_body(seq: int, stamp: bool) -> bytes:
    """One ingest-API event; with `stamp`, externalId carries the send time for part (c)."""
    external = f"bsend:{time.time_ns()}:{seq}" if stamp else f"bench-{os.getpid()}-{seq}"
    return json.dumps(
        {
            "status": "success",
            "message": "bench event",
            "eventType": "bench.event",
            "externalId": external,
            "durationMs": 12.5,
            "metadata": {"seq": seq, "host": "bench-host", "tags": ["a", "b"]},
        },
        separators=(",", ":"),
    ).encode()


def batch_body(size: int) -> bytes:
    """A v1 batch of `size` whitelisted events spread over ten workers."""
    events = [
        {
            "eventType": "bench.event",
            "category": "operations",
            "actor": {"externalId": f"bench-worker-{i % 10}"},
            "duration": 3,
            "metadata": {"i": i, "host": "bench-host"},
        }
        for i in range(size)
    ]
    return json.dumps({"events": events}, separators=(",", ":")).encode()


# --- HTTP -----------------------------------------------------------------------------------


class HttpRun:
    """Counters of one HTTP run; every started request ends in exactly one of them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.statuses: Counter[int] = Counter()
        self.exceptions: Counter[str] = Counter()
        self.latencies = array("d")
        self.accepted = 0
        self.skipped_by_client = 0
        self.error_samples: list[str] = []
        self.seq = itertools.count()
        self.batch = batch_body(args.batch_size) if args.kind == "batch" else b""
        self.started = 0

    def body(self, seq: int) -> bytes:
        if self.args.kind == "batch":
            return self.batch
        return single_body(seq, stamp=self.args.stamp)

    async def one(self, session: aiohttp.ClientSession, base: str) -> None:
        seq = next(self.seq)
        self.started += 1
        headers = {"Content-Type": "application/json"}
        if self.args.key:
            headers["Authorization"] = f"Bearer {self.args.key}"
        if self.args.idempotency:
            # Unique per request: every request writes its idempotency record, none replays.
            headers["Idempotency-Key"] = f"bench-{os.getpid()}-{seq}"
        body = self.body(seq)
        t0 = time.perf_counter()
        try:
            async with session.post(base + self.args.path, data=body, headers=headers) as resp:
                payload = await resp.read()
                status = resp.status
        except Exception as exc:  # noqa: BLE001 - a timeout or reset: outcome unknown, counted
            self.exceptions[type(exc).__name__] += 1
            return
        self.latencies.append((time.perf_counter() - t0) * 1000.0)
        self.statuses[status] += 1
        if self.args.kind == "batch":
            if status in (202, 207):
                self.accepted += int(json.loads(payload).get("accepted", 0))
            elif len(self.error_samples) < 3:
                self.error_samples.append(f"{status} {payload[:300]!r}")
        elif status == 201:
            self.accepted += 1
        elif len(self.error_samples) < 3:
            self.error_samples.append(f"{status} {payload[:300]!r}")

    async def closed_loop(self, session: aiohttp.ClientSession, deadline: float) -> None:
        urls = self.args.urls

        async def worker(i: int) -> None:
            base = urls[i % len(urls)]
            while time.monotonic() < deadline and self.started < self.args.max_requests:
                await self.one(session, base)

        await asyncio.gather(*(worker(i) for i in range(self.args.concurrency)))

    async def open_loop(self, session: aiohttp.ClientSession, deadline: float) -> None:
        """Start requests on a fixed schedule; past `concurrency` in flight, skip (and count)."""
        urls = self.args.urls
        inflight: set[asyncio.Task] = set()
        t0 = time.monotonic()
        for k in itertools.count():
            due = t0 + k / self.args.rate
            if due >= deadline or self.started + self.skipped_by_client >= self.args.max_requests:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(inflight) >= self.args.concurrency:
                self.skipped_by_client += 1
                continue
            task = asyncio.create_task(self.one(session, urls[k % len(urls)]))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.gather(*inflight)

    async def run(self) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.args.request_timeout)
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            start = time.monotonic()
            deadline = start + self.args.duration
            if self.args.rate > 0:
                await self.open_loop(session, deadline)
            else:
                await self.closed_loop(session, deadline)
            elapsed = time.monotonic() - start
        completed = sum(self.statuses.values())
        ok = {"single": {201}, "ceiling": {201}, "batch": {202, 207}}[self.args.kind]
        return {
            "kind": self.args.kind,
            "path": self.args.path,
            "targets": self.args.urls,
            "concurrency": self.args.concurrency,
            "rate_target": self.args.rate or None,
            "duration_s": round(elapsed, 2),
            "requests": completed,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": completed - sum(self.statuses[s] for s in ok),
            "unknown_outcomes": sum(self.exceptions.values()),
            "exceptions": dict(self.exceptions),
            "skipped_by_client": self.skipped_by_client,
            "accepted": self.accepted,
            "req_per_s": round(completed / elapsed, 1) if elapsed else 0.0,
            "accepted_per_s": round(self.accepted / elapsed, 1) if elapsed else 0.0,
            "latency": percentiles(self.latencies),
            "error_samples": self.error_samples,
            "client_cpu_s": cpu_seconds(),
        }


# --- websockets -----------------------------------------------------------------------------


class Deliveries:
    """What the sockets received, timed exactly at a cost per frame, not per event.

    A process's sockets of one workspace all get the same frame text, so each distinct frame's
    send stamps are parsed once (frames are told apart by length and hash); each socket's
    receipt of it adds one receive time. The delays, receive time minus each stamp, are counted
    at the end into 0.1 ms bins. Parsing every stamp on every socket (1,000 sockets at 1,000
    events/s: a million a second) made the listener, not the server, the bottleneck.
    """

    BIN_NS = 100_000  # 0.1 ms

    def __init__(self, sockets: int) -> None:
        self.index: dict[tuple[int, int], int] = {}
        self.stamps: list[array] = []  # per distinct frame: its events' send times (ns)
        self.received: list[array] = []  # per distinct frame: its receive times (ns)
        self.per_socket = [0] * sockets
        self.frames = 0

    def add(self, socket: int, text: str, now_ns: int) -> None:
        self.frames += 1
        key = (len(text), hash(text))
        frame = self.index.get(key)
        if frame is None:
            frame = self.index[key] = len(self.stamps)
            self.stamps.append(array("q", (int(m) for m in MARK.findall(text))))
            self.received.append(array("q"))
        stamps = self.stamps[frame]
        if stamps:
            self.received[frame].append(now_ns)
            self.per_socket[socket] += len(stamps)

    def latency(self) -> tuple[int, dict[str, float | None]]:
        """How many (socket, event) deliveries, and their delays' percentiles (nearest rank
        over 0.1 ms bins, so each figure is within 0.1 ms of the exact one)."""
        bins: Counter[int] = Counter()
        for stamps, received in zip(self.stamps, self.received, strict=True):
            for now in received:
                bins.update((now - stamp) // self.BIN_NS for stamp in stamps)
        total = sum(bins.values())
        if not total:
            return 0, percentiles([])
        ordered = sorted(bins.items())
        figures: dict[str, float | None] = {}
        for name, p in (("p50_ms", 0.50), ("p90_ms", 0.90), ("p99_ms", 0.99)):
            rank = min(total, max(1, int(p * total + 0.999999)))
            seen = 0
            for value, count in ordered:
                seen += count
                if seen >= rank:
                    figures[name] = round((value + 1) * self.BIN_NS / 1e6, 2)
                    break
        figures["max_ms"] = round((ordered[-1][0] + 1) * self.BIN_NS / 1e6, 2)
        return total, figures


def read_expected(path: str | None) -> int | None:
    """The number of stamped events the sender got accepted, when the runner wrote it."""
    if not path:
        return None
    try:
        return int(open(path).read())
    except (OSError, ValueError):
        return None


async def ws_listen(args: argparse.Namespace) -> dict[str, Any]:
    """Connect the sockets, say READY, record delivery delays until told to stop."""
    stop = asyncio.Event()
    sender_done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGUSR1: the sender has finished; drain until every socket has every event the sender
    # got accepted (the count --expected-from names, when given) or the sockets go quiet.
    loop.add_signal_handler(signal.SIGUSR1, sender_done.set)
    last_frame = time.monotonic()
    received = Deliveries(args.sockets)
    refused: Counter[str] = Counter()
    closed_early: Counter[str] = Counter()
    sockets: dict[int, aiohttp.ClientWebSocketResponse] = {}  # by socket number
    # Dashboards open over time, not all in one instant: at most this many handshakes at once.
    handshakes = asyncio.Semaphore(args.connect_concurrency)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def connect(i: int) -> None:
            base = args.urls[i % len(args.urls)]
            origin = base.replace("ws://", "http://")
            try:
                async with handshakes:
                    ws = await session.ws_connect(
                        f"{base}/ws/workspaces/{args.org}/",
                        headers={"Cookie": f"sessionid={args.session}", "Origin": origin},
                        max_msg_size=0,
                        timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                    )
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                refused[f"{type(exc).__name__}: {exc}"[:120]] += 1
                return
            sockets[i] = ws
            asyncio.create_task(reader(i, ws))

        async def reader(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal last_frame
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    received.add(i, msg.data, time.time_ns())
                    last_frame = time.monotonic()
            if not stop.is_set():
                closed_early[str(ws.close_code)] += 1

        await asyncio.gather(*(connect(i) for i in range(args.sockets)))
        # A socket the server refuses after the handshake (4401/4403) closes within moments.
        await asyncio.sleep(0.5)
        live = sum(1 for ws in sockets.values() if not ws.closed)
        print(f"READY {live}", flush=True)
        deadline = time.monotonic() + args.duration
        drained_for = 0.0
        expected: int | None = None
        while not stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            if not sender_done.is_set():
                continue
            if expected is None:
                expected = read_expected(args.expected_from)
            open_sockets = [i for i, ws in sockets.items() if not ws.closed]
            if expected is not None:
                if all(received.per_socket[i] >= expected for i in open_sockets):
                    break
            elif time.monotonic() - last_frame >= args.quiet:
                break
            drained_for += 0.2
            if drained_for >= args.max_drain:
                break
        stop.set()
        await asyncio.gather(*(ws.close() for ws in sockets.values()), return_exceptions=True)
    listened_cpu_s = cpu_seconds()
    deliveries, latency = received.latency()
    per_socket = received.per_socket
    return {
        "sockets_requested": args.sockets,
        "sockets_connected": live,
        "refused": dict(refused),
        "closed_early": dict(closed_early),
        "frames": received.frames,
        "distinct_frames": len(received.stamps),
        "drained_after_sender_s": round(drained_for, 1),
        "deliveries": deliveries,
        "per_socket_min": min(per_socket) if sockets else 0,
        "per_socket_max": max(per_socket) if sockets else 0,
        "latency": latency,
        # CPU while listening, before the delays were counted (that is after the run).
        "client_cpu_s": listened_cpu_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.loadgen")
    sub = parser.add_subparsers(dest="cmd", required=True)
    http = sub.add_parser("http")
    http.add_argument("--urls", required=True, help="comma-separated base URLs")
    http.add_argument("--path", required=True)
    http.add_argument("--kind", choices=["single", "batch", "ceiling"], required=True)
    http.add_argument("--key", default="")
    http.add_argument("--concurrency", type=int, default=32)
    http.add_argument("--duration", type=float, default=20.0)
    http.add_argument("--max-requests", type=int, default=500_000)
    http.add_argument("--rate", type=float, default=0.0, help="requests/s (open loop); 0: closed")
    http.add_argument("--batch-size", type=int, default=500)
    http.add_argument("--stamp", action="store_true", help="send time in externalId (part c)")
    http.add_argument("--no-idempotency", dest="idempotency", action="store_false")
    http.add_argument("--request-timeout", type=float, default=60.0)
    http.add_argument("--out", required=True)
    ws = sub.add_parser("ws")
    ws.add_argument("--urls", required=True, help="comma-separated ws:// base URLs")
    ws.add_argument("--org", required=True)
    ws.add_argument("--session", required=True)
    ws.add_argument("--sockets", type=int, default=50)
    ws.add_argument("--duration", type=float, default=60.0, help="listen at most this long")
    ws.add_argument("--quiet", type=float, default=2.0, help="after SIGUSR1: stop once silent")
    ws.add_argument(
        "--expected-from", default=None,
        help="after SIGUSR1: a file holding how many stamped events each socket should get; "
        "drain until all have them (--quiet then does not apply)",
    )
    ws.add_argument("--max-drain", type=float, default=30.0, help="after SIGUSR1: at most (s)")
    ws.add_argument("--connect-concurrency", type=int, default=100, help="handshakes at once")
    ws.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    args.urls = loopback_only(args.urls.split(","))
    result = asyncio.run(HttpRun(args).run() if args.cmd == "http" else ws_listen(args))
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
