"""`python -m bench.purge`: the retention purge at scale, measured under ingest and dashboard load.

Steps: a fresh PostgreSQL database of its own (default `ackly_purge`) and Redis DB 3 → migrate →
three workspaces (Free 7 days, Starter 30, Pro 90) with a source each and a Pro worker → a prefill
by generated SQL, day by day in time order, of 10,000,000 expired rows (events and timeline
events) and about 1,000,000 unexpired ones → the HTTP servers as `make bench` starts them, and
`manage.py worker` → a baseline of ingest and dashboard load → then per cycle:
`manage.py purge_expired` while 1,000 events/s arrive on `POST /api/ingest` and a signed-in
dashboard reads the live page and feed.json one request at a time; VACUUM under the same load;
the same volume of expired rows stored again. Table and index sizes are taken after each step
(a steady state is the same size every cycle), the purge's time, rows/s and peak RSS, and at
the end every event counter is compared with a GROUP BY of the rows.

`--part partition` measures the alternative instead, in raw SQL in a scratch database of its
own (`ackly_purge_part`): a daily-partitioned copy of the events table against the plain one.

Holds the bench lock of bench/run.py, so it never overlaps another benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.loadgen import percentiles
from bench.run import (
    LOCK_PATH,
    PYTHON,
    ROOT,
    Bench,
    BenchError,
    checkpoint,
    clear_redis,
    die_with_parent,
    drop_database,
    leave_no_trace,
    log,
    recreate_database,
    sql_scalar,
    tail,
    take_lock,
)

DB_PREFIX = "ackly_purge"
TABLES = ("ingest_event", "ingest_timelineevent", "stats_eventcount")


@dataclass(frozen=True)
class Span:
    """Rows of one kind in one workspace: `per_day` rows on each day `first`..`last` days ago."""

    plan: str
    kind: str  # "event" or "timeline"
    first: int
    last: int
    per_day: int

    @property
    def rows(self) -> int:
        return (self.last - self.first + 1) * self.per_day


# 10,000,000 expired rows, at least a day past each plan's retention (7, 30, 90 days).
EXPIRED = (
    Span("free", "event", 8, 39, 125_000),
    Span("starter", "event", 31, 60, 100_000),
    Span("pro", "event", 91, 115, 80_000),
    Span("pro", "timeline", 91, 115, 40_000),
)
# 989,500 unexpired rows, at least a day inside retention.
KEPT = (
    Span("free", "event", 0, 5, 35_000),
    Span("starter", "event", 0, 28, 10_000),
    Span("pro", "event", 0, 88, 4_000),
    Span("pro", "timeline", 0, 88, 1_500),
)

EVENT_INSERT = """
INSERT INTO ingest_event (public_id, workspace_id, source_id, status, message, description,
  event_type, external_id, duration_ms, metadata, received_at)
SELECT substr(md5(%(tag)s || '-' || s.ws || '-' || i), 1, 24), s.ws, s.src,
  (ARRAY['success', 'success', 'success', 'failure', 'partial'])[1 + i %% 5],
  'nightly job ' || i, '', 'purge.prefill', 'run-' || i, (i %% 5000)::float,
  jsonb_build_object('host', 'host-' || (i %% 50), 'i', i),
  %(t0)s - make_interval(days => %(day)s) - make_interval(secs => i * 86400.0 / s.n)
FROM jsonb_to_recordset(%(spans)s::jsonb) AS s(ws bigint, src bigint, n int),
  LATERAL generate_series(0, s.n - 1) AS i
ORDER BY 11
"""
TIMELINE_INSERT = """
INSERT INTO ingest_timelineevent (public_id, workspace_id, source_id, worker_id, event_type,
  category, timestamp, duration, metadata, request_id, received_at)
SELECT 'tle_' || md5(%(tag)s || '-' || s.ws || '-' || i), s.ws, s.src, s.wrk, 'purge.prefill',
  'operations', at, i %% 600, jsonb_build_object('i', i), 'req_purge', at
FROM jsonb_to_recordset(%(spans)s::jsonb) AS s(ws bigint, src bigint, wrk bigint, n int),
  LATERAL generate_series(0, s.n - 1) AS i,
  LATERAL (SELECT %(t0)s - make_interval(days => %(day)s)
           - make_interval(secs => i * 86400.0 / s.n) AS at) AS t
ORDER BY at
"""
# Rows on either side of their workspace's retention now, as purge_expired decides.
BY_RETENTION = """
SELECT count(*) FROM {table} r JOIN workspaces_workspace w ON w.id = r.workspace_id
JOIN billing_plan p ON p.id = w.plan_id
WHERE {where} r.received_at {cmp} now() - make_interval(days => p.retention_days)
"""
# Every counter against a GROUP BY of the rows (stats/migrations/0001's bucket); differences.
COUNTER_CHECK = """
WITH rows AS (
  SELECT workspace_id, source_id, date_bin('15 minutes', received_at, '2000-01-01+00') AS bucket,
         status AS kind, count(*) AS n FROM ingest_event GROUP BY 1, 2, 3, 4
  UNION ALL
  SELECT workspace_id, source_id, date_bin('15 minutes', received_at, '2000-01-01+00'),
         'timeline', count(*) FROM ingest_timelineevent GROUP BY 1, 2, 3, 4
)
SELECT count(*) FROM rows r FULL JOIN stats_eventcount c
  USING (workspace_id, source_id, bucket, kind)
WHERE r.n IS DISTINCT FROM c.count
"""


def mb(n: int) -> float:
    return round(n / 2**20, 1)


class PurgeBench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.bench = Bench(args, workdir)
        # The machine's PostgreSQL is shared: the servers' pools stay small (the fast lane's own
        # pool of 3 per process writes the ingest load; the dashboard reads one at a time).
        self.bench.env["DB_POOL_MAX"] = "6"
        self.results: dict[str, Any] = {
            "args": dict(vars(args)),
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        }
        self.http: list[str] = []

    # setup ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        a, b = self.args, self.bench
        log(f"fresh database {a.db_url.rsplit('/', 1)[1]}, Redis {a.redis_url}")
        recreate_database(a.db_url, prefix=DB_PREFIX)
        clear_redis(a.redis_url)
        # The counters' trigger functions timed by PostgreSQL (pg_stat_user_functions).
        sql_scalar(a.db_url, f"ALTER DATABASE {a.db_url.rsplit('/', 1)[1]} SET track_functions = 'pl'")
        b.manage("migrate", "--noinput")
        b.collect_static()
        # The load is 1,000 events/s on one key: the burst limiter runs but must not refuse it.
        sql_scalar(a.db_url, "UPDATE billing_plan SET burst_per_key = 1000000, "
                             "burst_per_workspace = 1000000 RETURNING id")
        owner = "purge-owner"
        self.session = b.setup_data("user", owner)[-1].strip()
        self.ids: dict[str, dict[str, int]] = {}
        for plan in ("free", "starter", "pro"):
            org = b.manage("createworkspace", f"Purge {plan}", "--plan", plan, "--owner", owner,
                           "--event-limit", str(10**12))[-1].strip()
            key = b.manage("createsource", org, "jobs", "--allow", "bench.event")[-1].strip()
            ws = sql_scalar(a.db_url, "SELECT id FROM workspaces_workspace WHERE public_id = %s",
                            (org,))
            src = sql_scalar(a.db_url, "SELECT id FROM sources_source WHERE workspace_id = %s",
                             (ws,))
            wrk = sql_scalar(
                a.db_url,
                "INSERT INTO workspaces_worker (public_id, display_name, external_id, created_at, "
                "workspace_id) VALUES (%s, 'Purge worker', %s, now(), %s) RETURNING id",
                (f"wrk_purge{plan}", f"purge-{plan}", ws),
            )
            self.ids[plan] = {"ws": ws, "src": src, "wrk": wrk}
            if plan == "pro":  # the load and the dashboard use the Pro workspace
                self.org, b.key = org, key

    def fill(self, spans: tuple[Span, ...], tag: str) -> dict[str, Any]:
        """Store `spans` day by day, oldest first, each day's rows in time order (as they arrive)."""
        t0 = datetime.now(UTC)
        scale = self.args.scale
        started = time.monotonic()
        stored = 0
        days = sorted({d for s in spans for d in range(s.first, s.last + 1)}, reverse=True)
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            for day in days:
                for kind, sql in (("event", EVENT_INSERT), ("timeline", TIMELINE_INSERT)):
                    todo = [
                        {**self.ids[s.plan], "n": max(1, int(s.per_day * scale))}
                        for s in spans if s.kind == kind and s.first <= day <= s.last
                    ]
                    if todo:
                        cur = conn.execute(sql, {"tag": f"{tag}-{day}", "t0": t0, "day": day,
                                                 "spans": json.dumps(todo)})
                        stored += cur.rowcount
        elapsed = time.monotonic() - started
        log(f"stored {stored:,} rows ({tag}) in {elapsed:.0f} s")
        return {"rows": stored, "seconds": round(elapsed, 1),
                "rows_per_s": round(stored / elapsed)}

    def bulk_fill(self) -> dict[str, Any]:
        """The first fill as a bulk load: the tables' plain indexes dropped, the rows stored,
        the same indexes built again (as fresh as a restored dump's; later fills go through them)."""
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            indexes = conn.execute(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "WHERE i.indrelid IN ('ingest_event'::regclass, 'ingest_timelineevent'::regclass) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
            ).fetchall()
            for name, _ in indexes:
                conn.execute(f"DROP INDEX {name}")
        filled = {"expired": self.fill(EXPIRED, "c0x"), "kept": self.fill(KEPT, "c0k")}
        started = time.monotonic()
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            for _, definition in indexes:
                conn.execute(definition)
        filled["indexes"] = [name for name, _ in indexes]
        filled["index_build_s"] = round(time.monotonic() - started, 1)
        log(f"{len(indexes)} indexes built again in {filled['index_build_s']} s")
        return filled

    def sizes(self, label: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            for table in TABLES:
                heap, index, total, rows = conn.execute(
                    "SELECT pg_relation_size(%s), pg_indexes_size(%s), "
                    f"pg_total_relation_size(%s), (SELECT count(*) FROM {table})",
                    (table, table, table),
                ).fetchone()
                dead, autovacuums = conn.execute(
                    "SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables "
                    "WHERE relname = %s", (table,),
                ).fetchone()
                out[table] = {"rows": rows, "heap_mb": mb(heap), "indexes_mb": mb(index),
                              "total_mb": mb(total), "dead_tuples": dead,
                              "autovacuums": autovacuums}
        self.results.setdefault("sizes", []).append({"at": label, **out})
        e, t = out["ingest_event"], out["ingest_timelineevent"]
        log(f"sizes {label}: events {e['rows']:,} rows {e['total_mb']} MB "
            f"(heap {e['heap_mb']}, indexes {e['indexes_mb']}); timeline {t['rows']:,} rows "
            f"{t['total_mb']} MB; counters {out['stats_eventcount']['total_mb']} MB")
        return out

    def expired_now(self) -> int:
        return sum(sql_scalar(self.args.db_url, BY_RETENTION.format(table=t, where="", cmp="<"))
                   for t in ("ingest_event", "ingest_timelineevent"))

    def prefilled_kept(self) -> int:
        """Prefilled rows inside retention (the ingest load's rows are not counted)."""
        where = "r.event_type = 'purge.prefill' AND"
        return sum(sql_scalar(self.args.db_url, BY_RETENTION.format(table=t, where=where, cmp=">="))
                   for t in ("ingest_event", "ingest_timelineevent"))

    # load ----------------------------------------------------------------------------------

    def under_load(self, label: str, work) -> dict[str, Any]:
        """Run `work()` while the ingest load and the dashboard probe run; the figures of the
        load windows that lie wholly within it, and of the probe's requests during it."""
        stop = threading.Event()
        windows: list[dict[str, Any]] = []
        reads: list[tuple[float, str, float, int]] = []
        failures: list[BaseException] = []

        def ingest() -> None:
            n = 0
            while not stop.is_set():
                start = time.time()
                try:
                    r = self.bench.http_load(
                        f"{label}-{n}", self.http, "/api/ingest", "single",
                        "--rate", str(self.args.rate), concurrency=128,
                        duration=self.args.window,
                    )
                except (BenchError, psycopg.Error) as exc:  # the load's own bookkeeping failed
                    failures.append(exc)
                    if len(failures) > 3:
                        return
                    continue
                finally:
                    n += 1
                windows.append({"start": start, "end": time.time(), **r})

        def dashboard() -> None:
            paths = (f"/w/{self.org}/events/", f"/w/{self.org}/events/feed.json")
            headers = {"Cookie": f"sessionid={self.session}"}
            i = 0
            while not stop.is_set():
                path = paths[i % 2]
                i += 1
                t0 = time.perf_counter()
                try:
                    with urllib.request.urlopen(urllib.request.Request(
                        self.http[i % len(self.http)] + path, headers=headers), timeout=30
                    ) as resp:
                        resp.read()
                        status = resp.status
                except urllib.error.HTTPError as err:
                    status = err.code
                except OSError:
                    status = 0
                reads.append((time.time(), path.rsplit("/", 1)[1] or "live page",
                              (time.perf_counter() - t0) * 1000, status))
                stop.wait(0.25)

        threads = [threading.Thread(target=f, daemon=True) for f in (ingest, dashboard)]
        for thread in threads:
            thread.start()
        time.sleep(self.args.window)  # one whole window of load before the work starts
        server_before = self.server_counters()
        began = time.time()
        outcome = work()
        ended = time.time()
        server_after = self.server_counters()
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(timeout=self.args.window + 150)
        if len(failures) > 3:
            raise BenchError(f"ingest load during {label} failed: {failures[0]}")
        inside = [w for w in windows if w["start"] >= began and w["end"] <= ended]
        around = [w for w in windows if w["end"] > began and w["start"] < ended]
        during = [r for r in reads if began <= r[0] <= ended]

        def window_line(w: dict[str, Any]) -> dict[str, Any]:
            return {"from_s": round(w["start"] - began, 1), "to_s": round(w["end"] - began, 1),
                    "req_per_s": w["req_per_s"], "errors": w["errors"],
                    "unknown": w["unknown_outcomes"], "skipped": w["skipped_by_client"],
                    **w["latency"], "postgres_waits": w["postgres_waits"]["mean_backends"],
                    "cpu": {k: w["cpu"].get(k) for k in ("servers_s", "worker_s", "postgres_s",
                                                          "machine_busy_s")}}

        reads_by: dict[str, list[float]] = {}
        for _, name, ms, _status in during:
            reads_by.setdefault(name, []).append(ms)
        result = {
            "work": outcome,
            "seconds": round(ended - began, 1),
            "ingest": {
                "windows_inside": len(inside),
                "p99_ms_worst_window": max((w["latency"]["p99_ms"] or 0 for w in inside),
                                           default=None),
                "p99_ms_median_window": statistics.median(
                    [w["latency"]["p99_ms"] or 0 for w in inside]) if inside else None,
                "p50_ms_median_window": statistics.median(
                    [w["latency"]["p50_ms"] or 0 for w in inside]) if inside else None,
                "accepted_total": sum(w["accepted"] for w in windows),
                "errors_total": sum(w["errors"] + w["unknown_outcomes"] for w in windows),
                "windows": [window_line(w) for w in around],
            },
            "dashboard": {
                name: {"requests": len(v), **percentiles(v),
                       "p95_ms": percentiles_95(v)} for name, v in reads_by.items()
            },
            "dashboard_errors": sum(1 for r in during if r[3] != 200),
            "load_windows_lost": [str(f)[:200] for f in failures],
            # Checkpoints and WAL while the work ran (the server's, every database's).
            "server": {k: round(server_after[k] - server_before[k], 1) for k in server_after},
        }
        for w in result["ingest"]["windows"]:
            waits = ", ".join(f"{k} {v}" for k, v in list(w["postgres_waits"].items())[:3])
            busy = (w["cpu"]["machine_busy_s"] or 0) / max(w["to_s"] - w["from_s"], 1e-9)
            log(f"  {label} window {w['from_s']:g}..{w['to_s']:g} s: {w['req_per_s']} req/s, "
                f"p50 {w['p50_ms']} p99 {w['p99_ms']} max {w.get('max_ms')} ms, machine "
                f"{busy / (os.cpu_count() or 1):.0%} busy; postgres {waits}")
        log(f"  {label} server: {result['server']}")
        i = result["ingest"]
        log(f"{label}: {result['seconds']} s; ingest p99 worst window {i['p99_ms_worst_window']} "
            f"ms (median {i['p99_ms_median_window']}), errors {i['errors_total']}; dashboard "
            + ", ".join(f"{k} p95 {v['p95_ms']} ms" for k, v in result["dashboard"].items()))
        return result

    # the work ------------------------------------------------------------------------------

    def purge(self) -> dict[str, Any]:
        """`manage.py purge_expired` as cron runs it; its time and peak RSS (from wait4)."""
        out_path = self.bench.workdir / f"purge-{time.monotonic_ns()}.log"
        # The command's own default pacing unless --duty-percent names one for this cycle.
        duties = self.args.duty_percent
        argv = [PYTHON, "manage.py", "purge_expired", "-v", "2"]
        if self.args.batch_size:
            argv += ["--batch-size", str(self.args.batch_size)]
        if duties:
            cycle = len(self.results.get("cycles", []))
            argv += ["--duty-percent", str(duties[min(cycle, len(duties) - 1)])]
        triggers = self.trigger_time()
        started = time.monotonic()
        with open(out_path, "wb") as fh:
            proc = subprocess.Popen(argv, cwd=ROOT, env=self.bench.env, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=die_with_parent)
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - started
        output = out_path.read_text()
        if proc.returncode != 0:
            raise BenchError(f"purge_expired failed ({proc.returncode}):\n{tail(out_path)}")
        total = int(output.split("Purged ", 1)[1].split()[0])
        after = self.trigger_time()
        deleted_triggers = {
            name: {"calls": v["calls"] - triggers.get(name, {}).get("calls", 0),
                   "ms": round(v["ms"] - triggers.get(name, {}).get("ms", 0.0), 1)}
            for name, v in after.items() if name.endswith("_deleted")
        }
        return {"command": " ".join(argv[1:]), "seconds": round(elapsed, 1), "rows": total,
                "delete_triggers": deleted_triggers,
                "rows_per_s": round(total / elapsed), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "output": output.splitlines()}

    def horizon_wait(self, since: float) -> float:
        """Seconds waited (at most --horizon-wait) until no transaction that holds an xid is
        older than `since`: until then VACUUM may remove none of the rows deleted after it
        began, whichever database it runs in (the cluster shares one xid horizon)."""
        started = time.monotonic()
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            while time.monotonic() - started < self.args.horizon_wait:
                (older,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                    "AND xact_start < to_timestamp(%s)", (since,)).fetchone()
                if not older:
                    break
                time.sleep(2)
        return round(time.monotonic() - started, 1)

    def vacuum(self) -> dict[str, Any]:
        """VACUUM as autovacuum would, with what it says it removed and what it could not."""
        said: list[str] = []
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            # Whatever holds back the horizon (dead rows VACUUM may not remove yet).
            holders = [
                f"{datname} pid {pid} {state} xmin age {age} for {held} {query!r}"
                for datname, pid, state, age, held, query in conn.execute(
                    "SELECT datname, pid, state, age(backend_xmin), "
                    "date_trunc('second', now() - xact_start)::text, left(query, 80) "
                    "FROM pg_stat_activity WHERE backend_xmin IS NOT NULL "
                    "AND pid <> pg_backend_pid() ORDER BY age(backend_xmin) DESC LIMIT 5")
            ]
        started = time.monotonic()
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            conn.add_notice_handler(lambda diag: said.extend(
                line.strip() for line in (diag.message_primary or "").splitlines()
                if line.strip().startswith(("tuples:", "pages:", "index scan", "removable",
                                            "automatic", "vacuuming", "index \""))))
            # Throttled as autovacuum throttles itself (by default autovacuum_vacuum_cost_delay
            # 2 ms per cost limit of 200): a manual VACUUM runs unthrottled, and on two cores
            # that took ingest's p99 to 531 ms after a 10,000,000-row purge.
            conn.execute(f"SET vacuum_cost_delay = '{self.args.vacuum_cost_delay:g}ms'")
            conn.execute("SET vacuum_cost_limit = 200")
            conn.execute("VACUUM (VERBOSE) ingest_event, ingest_timelineevent, stats_eventcount")
        seconds = round(time.monotonic() - started, 1)
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            conn.execute("ANALYZE ingest_event, ingest_timelineevent, stats_eventcount")
        return {"seconds": seconds, "verbose": said, "oldest_snapshots": holders}

    def server_counters(self) -> dict[str, float]:
        """The server's checkpoint counters and WAL position (MB), to subtract."""
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time / 1000, "
                "checkpoint_sync_time / 1000, buffers_checkpoint * 8192 / 2^20, "
                "buffers_backend * 8192 / 2^20, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') / 2^20 "
                "FROM pg_stat_bgwriter").fetchone()
        names = ("checkpoints_timed", "checkpoints_req", "checkpoint_write_s", "checkpoint_sync_s",
                 "checkpoint_written_mb", "backend_written_mb", "wal_mb")
        return {k: float(v) for k, v in zip(names, row, strict=True)}

    def trigger_time(self) -> dict[str, dict[str, float]]:
        """Calls and total milliseconds of the counters' trigger functions so far."""
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT funcname, calls, total_time FROM pg_stat_user_functions "
                "WHERE funcname LIKE 'ackly_count_%'").fetchall()
        return {name: {"calls": calls, "ms": round(ms, 1)} for name, calls, ms in rows}

    def run(self) -> dict[str, Any]:
        a = self.args
        self.prepare()
        self.results["prefill"] = self.bulk_fill()
        # As a table that has lived would be: vacuumed and analysed, nothing dirty in the WAL.
        self.vacuum()
        self.results["checkpoint"] = checkpoint(a.db_url)
        self.sizes("prefilled")
        self.http, _ = self.bench.start_servers(self.bench.env, "/api/v1/ingest/ping", kind="uvicorn",
                                                procs=a.procs)
        self.bench.start_worker()  # as make run: it merges the search indexes' pending lists
        log(f"servers {self.http}; baseline load {a.baseline:g} s")
        self.results["baseline"] = self.under_load("baseline", lambda: time.sleep(a.baseline))
        self.results["cycles"] = []
        for cycle in range(1, a.cycles + 1):
            kept, expired = self.prefilled_kept(), self.expired_now()
            log(f"cycle {cycle}: {expired:,} rows past retention, {kept:,} prefilled rows kept")
            purge = self.under_load(f"purge-{cycle}", self.purge)
            left, kept_after = self.expired_now(), self.prefilled_kept()
            checks = {"expired_before": expired, "deleted": purge["work"]["rows"],
                      "expired_left": left, "kept_before": kept, "kept_after": kept_after,
                      "passed": left == 0 and kept_after == kept
                      and purge["work"]["rows"] >= expired}
            log(f"purge {purge['work']['seconds']} s, {purge['work']['rows_per_s']:,} rows/s, "
                f"peak RSS {purge['work']['peak_rss_mb']} MB; checks {checks}")
            self.sizes(f"cycle {cycle}: after the purge")
            waited = self.horizon_wait(time.time())
            log(f"waited {waited} s for older transactions (any database) to end")
            vacuum = self.under_load(f"vacuum-{cycle}", self.vacuum)
            vacuum["horizon_wait_s"] = waited
            self.sizes(f"cycle {cycle}: after VACUUM")
            refill = self.fill(EXPIRED, f"c{cycle}x")
            self.sizes(f"cycle {cycle}: the same volume stored again")
            self.results["cycles"].append({"purge": purge, "checks": checks, "vacuum": vacuum,
                                           "refill": refill})
        self.results["counters_differing"] = sql_scalar(a.db_url, COUNTER_CHECK)
        self.results["server_memory"] = self.bench.memory()
        log(f"counters differing from a GROUP BY of the rows: {self.results['counters_differing']}")
        return self.results


# --- the alternative: daily partitions (raw SQL, a scratch database) -------------------------

PARTITIONED = """
CREATE TABLE event_part (LIKE ingest_event INCLUDING DEFAULTS) PARTITION BY RANGE (received_at);
-- A partitioned table's primary key and unique constraints must include the partition key:
-- public_id is unique only per received_at, no longer across the table.
ALTER TABLE event_part ADD PRIMARY KEY (id, received_at);
ALTER TABLE event_part ADD UNIQUE (public_id, received_at);
CREATE INDEX ON event_part (workspace_id, received_at DESC);
CREATE INDEX ON event_part (source_id, received_at DESC);
ALTER TABLE event_part ADD FOREIGN KEY (workspace_id) REFERENCES workspaces_workspace (id)
  DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE event_part ADD FOREIGN KEY (source_id) REFERENCES sources_source (id)
  DEFERRABLE INITIALLY DEFERRED;
CREATE TRIGGER stats_count_inserted AFTER INSERT ON event_part REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ackly_count_ingest_event_inserted();
CREATE TRIGGER stats_count_deleted AFTER DELETE ON event_part REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ackly_count_ingest_event_deleted();
CREATE SEQUENCE event_part_id;
ALTER TABLE event_part ALTER COLUMN id SET DEFAULT nextval('event_part_id');
"""
PART_FILL = """
INSERT INTO {table} (public_id, workspace_id, source_id, status, message, description,
  event_type, external_id, duration_ms, metadata, received_at)
SELECT substr(md5(%(tag)s || i), 1, 24), %(ws)s, %(src)s,
  (ARRAY['success', 'success', 'success', 'failure', 'partial'])[1 + i %% 5],
  'nightly job ' || i, '', 'purge.prefill', 'run-' || i, (i %% 5000)::float,
  jsonb_build_object('host', 'host-' || (i %% 50), 'i', i),
  date_trunc('day', now()) - make_interval(days => %(day)s)
  + make_interval(secs => i * 86400.0 / %(n)s)
FROM generate_series(0, %(n)s - 1) AS i ORDER BY 11
"""
# What a partition's rows count for, taken off the counters before the partition goes.
UNCOUNT = """
WITH gone AS (
  SELECT workspace_id, source_id, date_bin('15 minutes', received_at, '2000-01-01+00') AS bucket,
         status AS kind, count(*) AS n FROM {partition} GROUP BY 1, 2, 3, 4
)
UPDATE stats_eventcount c SET count = c.count - gone.n FROM gone
WHERE (c.workspace_id, c.source_id, c.bucket, c.kind)
    = (gone.workspace_id, gone.source_id, gone.bucket, gone.kind)
"""
# A separate statement: a WITH's UPDATE and the main DELETE would not see each other's rows.
UNCOUNTED = "DELETE FROM stats_eventcount WHERE count = 0"
LIVE_QUERY = ("SELECT id, public_id, status, received_at FROM {table} WHERE workspace_id = %s "
              "ORDER BY received_at DESC, id DESC LIMIT 50")


class InsertProbe(threading.Thread):
    """One-row INSERTs into `table`, `rate` a second on one connection, each timed."""

    def __init__(self, db_url: str, table: str, ws: int, src: int, rate: float = 200.0) -> None:
        super().__init__(daemon=True)
        self.db_url, self.table, self.ws, self.src, self.rate = db_url, table, ws, src, rate
        self.samples: list[tuple[float, float]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        sql = (f"INSERT INTO {self.table} (public_id, workspace_id, source_id, status, message, "
               "description, event_type, external_id, received_at) VALUES "
               "(substr(md5(random()::text), 1, 24), %s, %s, 'success', 'probe', '', 'probe', "
               "'', now())")
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self.stop_event.wait(1 / self.rate):
                t0 = time.perf_counter()
                conn.execute(sql, (self.ws, self.src))
                self.samples.append((time.time(), (time.perf_counter() - t0) * 1000))

    def during(self, began: float, ended: float) -> dict[str, Any]:
        inside = [ms for at, ms in self.samples if began <= at <= ended + 1]
        return {"inserts": len(inside), **percentiles(inside)}

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)


def timed_each(conn: psycopg.Connection, sql: str, params: tuple, n: int) -> dict[str, Any]:
    """`n` runs of one statement, each timed from the client (planning included)."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.execute(sql, params).fetchall() if sql.lstrip().startswith("SELECT") else \
            conn.execute(sql, params)
        samples.append((time.perf_counter() - t0) * 1000)
    return {"runs": n, "mean_ms": round(statistics.mean(samples), 3), **percentiles(samples)}


def measure_partitioning(args: argparse.Namespace) -> dict[str, Any]:
    """Drop a day's partition against deleting the same rows, and what partitions cost."""
    url = args.db_url.rsplit("/", 1)[0] + "/" + DB_PREFIX + "_part"
    scratch = argparse.Namespace(**{**vars(args), "db_url": url})
    bench = Bench(scratch, Path(tempfile.mkdtemp(prefix="ackly-purge-part-")))
    n, days = args.partition_rows, 92  # a partition per day of Pro's 90 days, and margins
    r: dict[str, Any] = {"partition_rows": n}
    try:
        log(f"scratch database {url.rsplit('/', 1)[1]}: migrate, two Pro workspaces")
        recreate_database(url, prefix=DB_PREFIX)
        bench.manage("migrate", "--noinput")
        ids = {}
        for name in ("plain", "part"):
            org = bench.manage("createworkspace", name, "--plan", "pro")[-1].strip()
            bench.manage("createsource", org, "jobs")
            ws = sql_scalar(url, "SELECT id FROM workspaces_workspace WHERE public_id = %s", (org,))
            ids[name] = (ws, sql_scalar(url, "SELECT id FROM sources_source WHERE workspace_id "
                                             "= %s", (ws,)))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PARTITIONED)
            for d in range(-1, days + 2):  # tomorrow (made ahead) back to 93 days ago
                conn.execute(
                    f"CREATE TABLE event_part_{d + 1} PARTITION OF event_part FOR VALUES FROM "
                    f"(date_trunc('day', now()) - make_interval(days => {d})) TO "
                    f"(date_trunc('day', now()) - make_interval(days => {d - 1}))"
                )
            # The same rows in both: one expired day (91 days ago) and one kept (10 days ago).
            for table, name in (("ingest_event", "plain"), ("event_part", "part")):
                ws, src = ids[name]
                for day in (91, 10):
                    t0 = time.monotonic()
                    conn.execute(PART_FILL.format(table=table),
                                 {"tag": f"{name}{day}-", "ws": ws, "src": src, "day": day, "n": n})
                    r[f"fill_{name}_{day}_s"] = round(time.monotonic() - t0, 1)
            conn.execute("VACUUM (ANALYZE) ingest_event, event_part, stats_eventcount")
            r["partition_mb"] = mb(conn.execute(
                "SELECT pg_total_relation_size('event_part_92')").fetchone()[0])
        checkpoint(url)
        log(f"{n:,} expired rows in each table; the plain table's by purge_expired")
        probe = InsertProbe(url, "ingest_event", *ids["plain"])
        probe.start()
        time.sleep(2)
        began = time.time()
        out = bench.manage("purge_expired", "-v", "2",
                           *(["--batch-size", str(args.batch_size)] if args.batch_size else []))
        ended = time.time()
        probe.finish()
        r["delete"] = {"seconds": round(ended - began, 2), "output": out,
                       "concurrent_inserts": probe.during(began, ended)}
        log(f"delete: {r['delete']['seconds']} s, inserts {r['delete']['concurrent_inserts']}")
        probe = InsertProbe(url, "event_part", *ids["part"])
        probe.start()
        time.sleep(2)
        steps: dict[str, float] = {}
        began = time.time()
        with psycopg.connect(url) as conn:  # one transaction: counters and rows go together
            for step, sql in (
                ("uncount", UNCOUNT.format(partition="event_part_92")),
                ("uncounted", UNCOUNTED),
                ("detach", "ALTER TABLE event_part DETACH PARTITION event_part_92"),
                ("drop", "DROP TABLE event_part_92"),
                ("commit", "COMMIT"),
            ):
                t0 = time.perf_counter()
                conn.execute(sql)
                steps[step] = round((time.perf_counter() - t0) * 1000, 1)
        ended = time.time()
        time.sleep(1)
        probe.finish()
        r["drop"] = {"seconds": round(ended - began, 2), "steps_ms": steps,
                     "concurrent_inserts": probe.during(began, ended)}
        log(f"drop: {r['drop']}")
        r["counters_differing"] = sql_scalar(url, COUNTER_CHECK.replace(
            "ingest_event GROUP", "(SELECT * FROM ingest_event UNION ALL "
            "SELECT * FROM event_part) AS e GROUP"))
        with psycopg.connect(url, autocommit=True) as conn:
            r["insert_one_row"] = {
                name: timed_each(conn, f"INSERT INTO {table} (public_id, workspace_id, source_id, "
                                 "status, message, description, event_type, external_id, "
                                 "received_at) VALUES (substr(md5(random()::text), 1, 24), %s, %s, "
                                 "'success', 'x', '', 'x', '', now())", ids[name], 3000)
                for table, name in (("ingest_event", "plain"), ("event_part", "part"))
            }
            r["live_page_query"] = {
                name: timed_each(conn, LIVE_QUERY.format(table=table), (ids[name][0],), 300)
                for table, name in (("ingest_event", "plain"), ("event_part", "part"))
            }
            key = conn.execute("SELECT public_id FROM event_part LIMIT 1").fetchone()[0]
            r["by_public_id"] = {
                name: timed_each(conn, f"SELECT id FROM {table} WHERE public_id = %s", (key,), 300)
                for table, name in (("ingest_event", "plain"), ("event_part", "part"))
            }
        # Of the main bench's expired rows, those in days past every plan's retention (90).
        droppable = sum(s.rows for s in EXPIRED if s.first > 90)
        r["bench_rows_droppable"] = {"rows": droppable, "of": sum(s.rows for s in EXPIRED)}
    finally:
        bench.sup.stop_all()
        if not args.keep_db:
            with contextlib.suppress(psycopg.Error):
                drop_database(url)
    r["summary"] = partition_summary(r)
    return r


def partition_summary(r: dict[str, Any]) -> str:
    d, p = r["delete"], r["drop"]
    lines = [
        f"partitioning prototype: {r['partition_rows']:,} rows per daily partition "
        f"({r['partition_mb']} MB with indexes)",
        f"  delete by purge_expired: {d['seconds']} s with start-up ({d['output'][-1]}); "
        f"concurrent one-row inserts {d['concurrent_inserts']}",
        f"  drop (uncount + detach + drop, one transaction): {p['seconds']} s, steps "
        f"{p['steps_ms']} ms; concurrent one-row inserts {p['concurrent_inserts']}",
        f"  counters differing after both: {r['counters_differing']}",
    ]
    for figure in ("insert_one_row", "live_page_query", "by_public_id"):
        lines.append(f"  {figure}: " + "; ".join(
            f"{k} mean {v['mean_ms']} ms p99 {v['p99_ms']} ms" for k, v in r[figure].items()))
    b = r["bench_rows_droppable"]
    lines.append(f"  of the main bench's {b['of']:,} expired rows, {b['rows']:,} lie in days past "
                 "every plan's retention (droppable); the rest must still be deleted row by row")
    return "\n".join(lines)


def percentiles_95(samples: list[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered) + 0.999999) - 1)], 2)


def summary(r: dict[str, Any]) -> str:
    lines = [f"purge bench started {r['started']}, load average {r['load_at_start']} "
             f"on {os.cpu_count()} cores; rows and sizes at --scale {r['args']['scale']}"]
    p = r["prefill"]
    lines.append(f"prefill: {p['expired']['rows']:,} expired + {p['kept']['rows']:,} kept rows, "
                 f"{p['expired']['rows_per_s']:,} rows/s")

    def load_line(name: str, part: dict[str, Any]) -> str:
        i, d = part["ingest"], part["dashboard"]
        reads = "; ".join(f"{k} p50 {v['p50_ms']} p95 {v['p95_ms']} p99 {v['p99_ms']} ms "
                          f"({v['requests']})" for k, v in d.items())
        rate = statistics.median([w["req_per_s"] for w in i["windows"]]) if i["windows"] else 0
        busy = sum(w["cpu"]["machine_busy_s"] or 0 for w in i["windows"])
        wall = sum(w["to_s"] - w["from_s"] for w in i["windows"]) or 1
        return (f"  {name}: {part['seconds']} s, ingest {rate:.0f} req/s (machine "
                f"{busy / wall / (os.cpu_count() or 1):.0%} busy), p50 {i['p50_ms_median_window']} ms, "
                f"p99 median window {i['p99_ms_median_window']} ms, worst window "
                f"{i['p99_ms_worst_window']} ms ({i['windows_inside']} windows), errors "
                f"{i['errors_total']}; dashboard {reads}; dashboard errors {part['dashboard_errors']}")

    lines.append(load_line("baseline", r["baseline"]))
    for n, c in enumerate(r["cycles"], 1):
        w = c["purge"]["work"]
        lines.append(f"cycle {n}: purge {w['rows']:,} rows in {w['seconds']} s = "
                     f"{w['rows_per_s']:,} rows/s, peak RSS {w['peak_rss_mb']} MB, CPU {w['cpu_s']} s; "
                     f"checks {'PASSED' if c['checks']['passed'] else 'FAILED'} {c['checks']}")
        for name, t in w["delete_triggers"].items():
            if t["calls"]:
                lines.append(f"  {name}: {t['calls']} statements, {t['ms']:.0f} ms, "
                             f"{t['ms'] / t['calls']:.2f} ms per DELETE")
        lines.append(load_line("during the purge", c["purge"]))
        lines.append(load_line(f"during VACUUM ({c['vacuum']['work']['seconds']} s, after "
                               f"{c['vacuum'].get('horizon_wait_s')} s waiting for older "
                               "transactions)", c["vacuum"]))
        lines.extend(f"    {line}" for line in c["vacuum"]["work"]["verbose"]
                     if line.startswith(("tuples:", "vacuuming")))
        lines.extend(f"    oldest snapshot at the start: {h}"
                     for h in c["vacuum"]["work"]["oldest_snapshots"][:2])
    lines.append("sizes (MB, total = heap + indexes + toast):")
    for s in r["sizes"]:
        lines.append("  " + s["at"] + ": " + ", ".join(
            f"{t} {s[t]['rows']:,} rows {s[t]['total_mb']} (heap {s[t]['heap_mb']}, "
            f"idx {s[t]['indexes_mb']}, dead {s[t]['dead_tuples']:,})" for t in TABLES))
    lines.append(f"counters differing from a GROUP BY of the rows: {r['counters_differing']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.purge", description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["batched", "partition", "both"], default="both")
    p.add_argument("--db-url", default=f"postgres://postgres@127.0.0.1:5432/{DB_PREFIX}")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    p.add_argument("--scale", type=float, default=1.0,
                   help="rows per day x this (1: 10,000,000 expired rows; 0.01 for a quick run)")
    p.add_argument("--cycles", type=int, default=2, help="purge, VACUUM, refill: how many times")
    p.add_argument("--batch-size", type=int, default=0,
                   help="purge_expired --batch-size (default: the command's own)")
    p.add_argument("--duty-percent", default="",
                   help="purge_expired --duty-percent, one value per cycle (comma-separated; the "
                        "last repeats; default: the command's own)")
    p.add_argument("--vacuum-cost-delay", type=float, default=2.0,
                   help="VACUUM's vacuum_cost_delay in ms (cost limit 200), as autovacuum's "
                        "autovacuum_vacuum_cost_delay; 0: unthrottled")
    p.add_argument("--rate", type=float, default=1000.0, help="ingest events/s during the work")
    p.add_argument("--window", type=float, default=10.0, help="seconds per load window")
    p.add_argument("--baseline", type=float, default=30.0, help="seconds of load with no purge")
    p.add_argument("--procs", type=int, default=2, help="uvicorn processes")
    p.add_argument("--partition-rows", type=int, default=1_000_000,
                   help="--part partition: rows per daily partition")
    p.add_argument("--horizon-wait", type=float, default=600.0,
                   help="seconds VACUUM waits at most for older transactions to end")
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "purge-latest.json"))
    p.add_argument("--lock-wait", type=float, default=3600.0)
    args = p.parse_args(argv)
    args.duty_percent = [int(x) for x in args.duty_percent.split(",") if x.strip()]
    if not args.db_url.rsplit("/", 1)[1].startswith(DB_PREFIX):
        p.error(f"--db-url: the database's name must start with {DB_PREFIX}")
    # What bench.run.Bench reads of its own arguments.
    args.server, args.max_requests, args.keep_burst_limits = "uvicorn", 10**7, True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lock = take_lock(LOCK_PATH, args.lock_wait)
    if lock is None:
        print("another bench run holds the lock; giving up", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ackly-purge-"))
    runner: PurgeBench | None = None
    try:
        results = {}
        if args.part in ("batched", "both"):
            runner = PurgeBench(args, workdir)
            results = runner.run()
            runner.bench.sup.stop_all()
            print(summary(results), flush=True)
        if args.part in ("partition", "both"):
            results["partitioning"] = measure_partitioning(args)
            print(results["partitioning"]["summary"], flush=True)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - report, clean up, exit 1
        print(f"purge bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if runner is not None:
            for server in runner.bench.sup.servers:
                print(f"--- {server.name} log tail\n{tail(server.log_path)}", file=sys.stderr)
        return 1
    finally:
        if runner is not None:
            runner.bench.sup.stop_all()
        leave_no_trace(args, lock)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
