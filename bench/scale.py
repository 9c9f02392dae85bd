"""The dashboard at scale: a 40,000,000-row database and every dashboard read, one at a time and
the live page with 20 users at once (`make bench BENCH_ARGS="--parts g"` runs it too).

    .venv/bin/python -m bench.scale [--rows 40000000] [--refill] [--repeat 20]

Prefill, once (a marker table remembers it; `--refill` redoes it, `--rows` scales it down):
its own PostgreSQL database (`ackly_scale`), migrated; one big Pro workspace with its owner
(made by Django) holding 15/40 of the rows as ingest events and 15/40 as timeline events, and
999 more workspaces (plain SQL) sharing the other 10/40; 90 days of rows in arrival order,
each workspace's sources, workers, statuses, event types and metadata skewed as real traffic
is. The rows go in by `INSERT … SELECT generate_series` in chunks, the event tables' indexes
dropped first and built afterwards (two at a time, one per core); triggers are off during the
load (`session_replication_role = replica`: foreign keys, the timeline's reference checks and
the counters), the counters are then filled by one GROUP BY per table (`--counters triggers`
keeps the counter triggers firing instead, to compare), and VACUUM ANALYZE runs last.

Measure: uvicorn as the production recipe runs it (docs/deployment.md), a session of the big
workspace's owner, each dashboard request `--repeat` times one after another (p50/p95/max),
then the live page from `--users` concurrent users. Writes bench/results/scale.json and prints
a table. Holds the bench lock (bench.run) while it measures, not while it fills.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg

from bench.run import (
    LOCK_PATH,
    BenchError,
    Supervisor,
    admin_url,
    clear_redis,
    db_name,
    free_port,
    machine,
    recreate_database,
    release_lock,
    take_lock,
)

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
OWNER = "scale-owner"
MARKER = "bench_scale_prefill"
DAYS = 89  # the rows' span: inside Pro's 90-day retention for the whole run
CHUNK = 2_000_000
# The v1 timeline's event types and the ingest API's, most frequent first (a power law picks).
EVENT_TYPES = [
    "backup.completed", "deploy.finished", "sync.run", "invoice.sent", "report.generated",
    "backup.started", "deploy.started", "email.sent", "import.finished", "cache.warmed",
    "cleanup.run", "payment.captured", "webhook.delivered", "cert.renewed", "index.rebuilt",
    "export.finished", "db.vacuumed", "queue.drained", "scan.completed", "build.passed",
]
TIMELINE_TYPES = [
    "ticket.resolved", "commit.pushed", "call.logged", "doc.updated", "deal.closed",
    "task.completed", "review.done", "meeting.held", "incident.acked", "lead.qualified",
]
CATEGORIES = [
    "support", "development", "communication", "sales", "project_management", "documentation",
    "operations",
]
NO_MATCH = "zzq-nothing-matches"


def sources_of(n: str) -> str:
    """SQL: how many sources workspace number `n` has (0 is the big one)."""
    return f"CASE WHEN {n} = 0 THEN 12 ELSE 2 + {n} % 5 END"


def workers_of(n: str) -> str:
    """SQL: how many workers workspace number `n` has."""
    return f"CASE WHEN {n} = 0 THEN 400 ELSE 5 + {n} % 20 END"


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sql_array(values: list[str]) -> str:
    return "(ARRAY[" + ", ".join(f"'{v}'" for v in values) + "])"


# --- prefill -------------------------------------------------------------------------------


class Prefill:
    """Fills the scale database once; what it did and how long each step took."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.rows = args.rows
        self.big_events = self.rows * 15 // 40
        self.big_timeline = self.rows * 15 // 40
        self.other_events = self.rows * 5 // 40
        self.other_timeline = self.rows - self.big_events - self.big_timeline - self.other_events
        self.timings: dict[str, float] = {}
        # Index name -> its columns' statistics targets (drop_indexes, rebuild).
        self.stat_targets: dict[str, list[tuple[int, int]]] = {}

    def connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.args.db_url, autocommit=True)
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 0")  # one build per core instead
        conn.execute("SET work_mem = '64MB'")
        return conn

    def step(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 1)
        log(f"{name}: {self.timings[name]} s")

    def done_before(self) -> dict[str, Any] | None:
        """The marker of a finished prefill of this size, else None. A prefill of another size
        is never replaced without --refill: it took long to make."""
        try:
            with psycopg.connect(self.args.db_url, autocommit=True) as conn:
                row = conn.execute(
                    f"SELECT rows, workspaces, details FROM {MARKER} ORDER BY finished_at DESC LIMIT 1"
                ).fetchone()
        except psycopg.Error:
            return None
        if row is None:
            return None
        if (row[0], row[1]) != (self.rows, self.args.workspaces):
            raise BenchError(
                f"{db_name(self.args.db_url)} holds a prefill of {row[0]:,} rows in {row[1]:,} "
                "workspaces: --refill replaces it, --db-url names another database"
            )
        return row[2]

    def check_disk(self) -> None:
        """40,000,000 rows take ~20 GB with their indexes (figures in docs/performance.md)."""
        need_gb = self.rows / 40_000_000 * 25 + 2
        free_gb = shutil.disk_usage(ROOT).free / 1e9
        log(f"free disk {free_gb:.0f} GB; the prefill needs about {need_gb:.0f} GB")
        if free_gb < need_gb * 1.5:
            raise BenchError(f"not enough free disk: {free_gb:.0f} GB for ~{need_gb:.0f} GB")

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.check_disk()
        recreate_database(self.args.db_url, prefix="ackly_scale")
        clear_redis(self.args.redis_url)
        t = time.monotonic()
        manage(self.env, "migrate", "--noinput", "-v", "0")
        self.step("migrate", t)
        t = time.monotonic()
        self.make_tenants()
        self.step("workspaces, sources, workers", t)
        with self.connect() as conn:
            indexes = self.drop_indexes(conn)
        t = time.monotonic()
        self.load_rows()
        self.step("rows", t)
        t = time.monotonic()
        self.rebuild(indexes)
        self.step("indexes", t)
        if self.args.counters == "groupby":
            t = time.monotonic()
            fill_counters(self)
            self.step("counters (GROUP BY)", t)
        t = time.monotonic()
        # The small tables too: filled by SQL, their statistics would say they are empty.
        self.parallel(["VACUUM (ANALYZE) ingest_event", "VACUUM (ANALYZE) ingest_timelineevent",
                       "VACUUM (ANALYZE) stats_eventcount", "ANALYZE workspaces_workspace, "
                       "sources_source, workspaces_worker, auth_user, workspaces_membership"])
        self.step("vacuum analyze", t)
        details = {
            "rows": self.rows,
            "events": self.big_events + self.other_events,
            "timeline_events": self.big_timeline + self.other_timeline,
            "big_workspace": {"events": self.big_events, "timeline_events": self.big_timeline},
            "counters": self.args.counters,
            "seconds": self.timings,
            "total_s": round(time.monotonic() - started, 1),
        }
        with psycopg.connect(self.args.db_url, autocommit=True) as conn:
            details["database_size"] = conn.execute(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ).fetchone()[0]
            conn.execute(
                f"CREATE TABLE {MARKER} (rows bigint, workspaces int, finished_at timestamptz, "
                "details jsonb)"
            )
            conn.execute(
                f"INSERT INTO {MARKER} VALUES (%s, %s, now(), %s)",
                (self.rows, self.args.workspaces, json.dumps(details)),
            )
        log(f"prefill done in {details['total_s']} s, database {details['database_size']}")
        return details

    def make_tenants(self) -> None:
        """The big workspace and its owner by Django; the others, their sources and workers by SQL."""
        setup = (
            "from django.contrib.auth import get_user_model\n"
            "from workspaces.services import create_workspace\n"
            f"user = get_user_model().objects.create_user({OWNER!r}, '{OWNER}@bench.invalid')\n"
            "print(create_workspace('Scale', 'pro', owner=user, event_limit=10**12).pk)\n"
        )
        big = int(manage(self.env, "shell", "-c", setup)[-1])
        others = self.args.workspaces - 1
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO workspaces_workspace (public_id, name, plan_id, billing_anchor, "
                "created_at) SELECT 'org_' || lpad(upper(to_hex(i)), 26, '0'), 'Tenant ' || i, "
                "(SELECT id FROM billing_plan WHERE code = (ARRAY['pro', 'starter', 'free'])"
                "[1 + i %% 3]), now() - interval '120 days', now() - interval '120 days' "
                "FROM generate_series(1, %s) AS i",
                (others,),
            )
            # Each workspace's index (0 = the big one) beside its id, for the row generators.
            conn.execute(
                "CREATE TABLE scale_ws AS SELECT %s::bigint AS id, 0 AS n UNION ALL "
                "SELECT id, row_number() OVER (ORDER BY id)::int FROM workspaces_workspace "
                "WHERE id <> %s",
                (big, big),
            )
            # Sources: 12 in the big workspace, 2-6 in the others; k is the source's rank.
            conn.execute(
                "INSERT INTO sources_source (public_id, workspace_id, name, slug, "
                "allowed_event_types, created_at) SELECT 'src_' || lpad(upper(to_hex(w.n * 16 + k)), "
                "26, '0'), w.id, 'Source ' || k, 'source-' || k, '[]'::jsonb, now() - interval '100 days' "
                "FROM scale_ws w, generate_series(0, 11) AS k "
                f"WHERE k < {sources_of('w.n')}"
            )
            conn.execute(
                "CREATE TABLE scale_src AS SELECT w.n, s.id, s.workspace_id, "
                "(row_number() OVER (PARTITION BY w.n ORDER BY s.id) - 1)::int AS k, "
                "count(*) OVER (PARTITION BY w.n)::int AS of "
                "FROM sources_source s JOIN scale_ws w ON w.id = s.workspace_id"
            )
            # Workers: 400 in the big workspace, 5-24 in the others.
            conn.execute(
                "INSERT INTO workspaces_worker (public_id, workspace_id, display_name, "
                "external_id, email, created_at) SELECT 'wrk_' || lpad(upper(to_hex(w.n * 512 + k)), "
                "26, '0'), w.id, 'Worker ' || w.n || '-' || k, 'ext-' || k, "
                "'worker' || k || '@tenant' || w.n || '.example', now() - interval '100 days' "
                "FROM scale_ws w, generate_series(0, 399) AS k "
                f"WHERE k < {workers_of('w.n')}"
            )
            conn.execute(
                "CREATE TABLE scale_wrk AS SELECT w.n, r.id, "
                "(row_number() OVER (PARTITION BY w.n ORDER BY r.id) - 1)::int AS k, "
                "count(*) OVER (PARTITION BY w.n)::int AS of "
                "FROM workspaces_worker r JOIN scale_ws w ON w.id = r.workspace_id"
            )
            for table in ("scale_ws", "scale_src", "scale_wrk"):
                conn.execute(f"CREATE INDEX ON {table} (n, k)" if table != "scale_ws"
                             else "CREATE INDEX ON scale_ws (n)")
                conn.execute(f"ANALYZE {table}")

    def drop_indexes(
        self, conn: psycopg.Connection, tables: tuple[str, ...] = ("ingest_event", "ingest_timelineevent")
    ) -> list[tuple[str, str, str, str]]:
        """Drop the tables' indexes and unique constraints (not the primary keys); their
        definitions, to build them again once the rows are in."""
        found: list[tuple[str, str, str, str]] = []
        for table in tables:
            for name, definition in conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'u'", (table,)
            ).fetchall():
                found.append((table, "constraint", name, definition))
                conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
            for name, definition in conn.execute(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass "
                "AND NOT x.indisprimary AND NOT EXISTS (SELECT FROM pg_constraint c "
                "WHERE c.conindid = i.oid)", (table,)
            ).fetchall():
                found.append((table, "index", name, definition))
                # pg_get_indexdef leaves out a column's statistics target (the trigram indexes
                # keep a 1,000-value sample, which the search reads): set again after the build.
                self.stat_targets[name] = conn.execute(
                    "SELECT attnum, attstattarget FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attstattarget > 0", (name,)
                ).fetchall()
                conn.execute(f"DROP INDEX {name}")
        log(f"dropped {len(found)} indexes to build after the load")
        return found

    def rebuild(self, indexes: list[tuple[str, str, str, str]]) -> None:
        """Build what drop_indexes dropped, two at a time (one per core), the trigram indexes
        (the longest builds) first, so that both cores stay busy to the end. A unique
        constraint is built as a plain unique index beside the others and attached afterwards
        (ADD CONSTRAINT … USING INDEX, instant): ALTER TABLE would wait for every build on
        its table to end, and hold up the next builds while it ran."""
        indexes = sorted(indexes, key=lambda index: "gin_trgm_ops" not in index[3])
        self.parallel([
            f"CREATE UNIQUE INDEX {name} ON {table} {definition.removeprefix('UNIQUE ')}"
            if kind == "constraint" else definition
            for table, kind, name, definition in indexes
        ])
        with self.connect() as conn:
            for table, kind, name, _ in indexes:
                if kind == "constraint":
                    conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}")
                for column, target in self.stat_targets.get(name, []):
                    conn.execute(f"ALTER INDEX {name} ALTER COLUMN {column} SET STATISTICS {target}")

    def parallel(self, statements: list[str], workers: int = 2) -> None:
        def run(statement: str) -> None:
            started = time.monotonic()
            with self.connect() as conn:
                conn.execute(statement)
            log(f"{time.monotonic() - started:7.1f} s  {' '.join(statement.split())[:110]}")

        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(run, statements):
                pass

    def chunks(self, total: int) -> list[tuple[int, int]]:
        return [(lo, min(lo + CHUNK, total)) for lo in range(0, total, CHUNK)]

    def event_sql(self, lo: int, hi: int, total: int, others: int) -> str:
        """Rows lo..hi of the ingest events, arrival ordered over DAYS days; 3/4 of them the big
        workspace's, a quarter spread over the `others`."""
        types = sql_array(EVENT_TYPES)
        return f"""
        INSERT INTO ingest_event (public_id, workspace_id, source_id, status, message, description,
            event_type, external_id, duration_ms, metadata, received_at)
        SELECT lpad(to_hex(extract(epoch FROM g.at)::bigint), 8, '0') || lpad(to_hex(g.i), 16, '0'),
            s.workspace_id, s.id,
            CASE WHEN g.r < 0.85 THEN 'success' WHEN g.r < 0.96 THEN 'failure' ELSE 'partial' END,
            g.etype || ' on host-' || (g.i % 40) || ' took ' || (g.i % 9000) || ' ms',
            CASE WHEN g.i % 10 = 0 THEN 'Retried after a timeout' ELSE '' END,
            g.etype, 'run-' || g.i, (g.i % 9000)::float,
            jsonb_build_object('host', 'host-' || (g.i % 40), 'region',
                (ARRAY['eu-west-1', 'us-east-1', 'ap-south-1'])[1 + g.i % 3],
                'bytes', g.i % 1000003 * 97, 'attempt', 1 + g.i % 3),
            g.at
        FROM (
            SELECT i, wn, random() AS r,
                {types}[1 + floor(power(random(), 2) * {len(EVENT_TYPES)})::int] AS etype,
                {sources_of('g.wn')} AS nsrc, {workers_of('g.wn')} AS nwrk,
                random() AS sr,
                now() - interval '{DAYS} days' * (1 - i::float8 / {total}) AS at
            FROM (SELECT i, CASE WHEN i % 4 <> 3 THEN 0 ELSE 1 + (i / 4) % {others} END AS wn
                  FROM generate_series({lo}, {hi - 1}) AS i) AS g
        ) AS g
        JOIN scale_src s ON s.n = g.wn AND s.k = floor(power(g.sr, 2) * g.nsrc)::int
        """

    def load_rows(self) -> None:
        """Both tables at once, one connection each (two cores), chunk by chunk."""
        others = max(self.args.workspaces - 1, 1)
        events = self.big_events + self.other_events
        timeline = self.big_timeline + self.other_timeline

        def load(table: str, total: int) -> None:
            with self.connect() as conn:
                if self.args.counters == "groupby":
                    conn.execute("SET session_replication_role = replica")
                else:
                    # Foreign keys and reference checks off as above; the counters fire anyway.
                    conn.execute("SET session_replication_role = replica")
                    conn.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER stats_count_inserted")
                try:
                    for lo, hi in self.chunks(total):
                        t = time.monotonic()
                        conn.execute(self.row_sql(table, lo, hi, total, others))
                        log(f"{table}: {hi:,} of {total:,} ({time.monotonic() - t:.1f} s)")
                finally:
                    conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER stats_count_inserted")

        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(load, "ingest_event", events),
                       pool.submit(load, "ingest_timelineevent", timeline)]
            for future in futures:
                future.result()

    def row_sql(self, table: str, lo: int, hi: int, total: int, others: int) -> str:
        make = self.event_sql if table == "ingest_event" else self.timeline_sql
        return make(lo, hi, total, others)

    def timeline_sql(self, lo: int, hi: int, total: int, others: int) -> str:
        """Rows lo..hi of the timeline, as event_sql; workers picked by a power law too."""
        types = sql_array(TIMELINE_TYPES)
        categories = sql_array(CATEGORIES)
        return f"""
        INSERT INTO ingest_timelineevent (public_id, workspace_id, source_id, worker_id, event_type,
            category, timestamp, duration, metadata, request_id, received_at)
        SELECT 'tle_' || lpad(upper(to_hex(g.i)), 26, '0'), s.workspace_id, s.id, w.id,
            g.etype, {categories}[1 + floor(power(g.cr, 2) * {len(CATEGORIES)})::int],
            g.at - interval '1 second' * (g.i % 300), g.i % 3600,
            jsonb_build_object('ticket', 'T-' || g.i, 'priority',
                (ARRAY['low', 'normal', 'high'])[1 + g.i % 3], 'channel',
                (ARRAY['email', 'chat', 'phone', 'web'])[1 + g.i % 4]),
            'req_' || lpad(upper(to_hex(g.i / 50)), 26, '0'), g.at
        FROM (
            SELECT i, wn, random() AS cr,
                {types}[1 + floor(power(random(), 2) * {len(TIMELINE_TYPES)})::int] AS etype,
                {sources_of('g.wn')} AS nsrc, {workers_of('g.wn')} AS nwrk,
                random() AS sr, random() AS wr,
                now() - interval '{DAYS} days' * (1 - i::float8 / {total}) AS at
            FROM (SELECT i, CASE WHEN i % 4 <> 3 THEN 0 ELSE 1 + (i / 4) % {others} END AS wn
                  FROM generate_series({lo}, {hi - 1}) AS i) AS g
        ) AS g
        JOIN scale_src s ON s.n = g.wn AND s.k = floor(power(g.sr, 2) * g.nsrc)::int
        JOIN scale_wrk w ON w.n = g.wn AND w.k = floor(power(g.wr, 3) * g.nwrk)::int
        """


def fill_counters(prefill: Prefill) -> None:
    """stats_eventcount from the rows, one GROUP BY per table (the statements the counters'
    migration backfills with), both at once into the empty table, its indexes built after."""
    migration = importlib.import_module("stats.migrations.0001_initial")
    with prefill.connect() as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        if conn.execute("SELECT EXISTS (SELECT FROM stats_eventcount)").fetchone()[0]:
            raise BenchError("stats_eventcount is not empty before its fill")
        indexes = prefill.drop_indexes(conn, ("stats_eventcount",))
    prefill.parallel(["SET work_mem = '256MB'; " + statement
                      for statement in migration._pg_backfill(f'"{schema}"')])
    prefill.rebuild(indexes)


def counters_match(db_url: str) -> dict[str, Any]:
    """Whether every counter equals its rows (and no counter lacks rows): two full scans."""
    query = """
        SELECT count(*) FROM (
            SELECT workspace_id, source_id, date_bin('15 minutes', received_at,
                TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, {kind} AS kind, count(*) AS n
            FROM {table} GROUP BY 1, 2, 3, 4
        ) AS rows FULL JOIN (SELECT * FROM stats_eventcount WHERE kind {cond}) AS c
        USING (workspace_id, source_id, bucket, kind)
        WHERE rows.n IS DISTINCT FROM c.count
    """
    out = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        for table, kind, cond in (("ingest_event", "status", "<> 'timeline'"),
                                  ("ingest_timelineevent", "'timeline'", "= 'timeline'")):
            out[table] = conn.execute(query.format(table=table, kind=kind, cond=cond)).fetchone()[0]
    return {"mismatched_counters": out, "passed": not any(out.values())}


# --- what the dashboard's indexes cost ingest ------------------------------------------------

# The indexes the dashboard's type filter reads (ingest.0006, covering since 0008), by table.
FILTER_INDEXES = {"ingest_event": "event_ws_type_covering",
                  "ingest_timelineevent": "timeline_ws_type_covering"}


def index_cost(db_url: str, inserts: int, rounds: int = 5) -> dict[str, Any]:
    """Microseconds per one-row INSERT into each event table of the prefilled database, with
    and without its filter index, alternating `rounds` times. The INSERTs are statements of a
    PL/pgSQL loop (no client round trips to drown the index's share; the counters' statement
    triggers fire for each as in production), in a transaction that is rolled back with the
    index dropped inside it, so the database is left as it was."""
    out: dict[str, Any] = {"inserts_per_loop": inserts, "rounds": rounds}
    with psycopg.connect(db_url) as conn:
        ws, source, worker = conn.execute(
            "SELECT s.workspace_id, s.id, w.id FROM sources_source s JOIN workspaces_worker w "
            "ON w.workspace_id = s.workspace_id ORDER BY s.id, w.id LIMIT 1"
        ).fetchone()
        conn.rollback()
        loops = {
            "ingest_event": (
                "INSERT INTO ingest_event (public_id, workspace_id, source_id, status, message, "
                "description, event_type, external_id, duration_ms, metadata, received_at) "
                f"VALUES ('ffffffff' || lpad(to_hex(i), 16, '0'), {ws}, {source}, 'success', "
                "'one more', '', 'deploy.finished', 'x', 12, '{\"host\": \"web-1\"}', now())"
            ),
            "ingest_timelineevent": (
                "INSERT INTO ingest_timelineevent (public_id, workspace_id, source_id, worker_id, "
                "event_type, category, timestamp, duration, metadata, request_id, received_at) "
                f"VALUES ('tle_ZZ' || lpad(i::text, 24, '0'), {ws}, {source}, {worker}, "
                "'ticket.resolved', 'support', now(), 5, '{\"ticket\": \"T-1\"}', 'req_x', now())"
            ),
        }
        # "triggers off": the counters and reference checks skipped, so that the loop is the
        # heap and its indexes alone and an index's share stands out of the machine's noise.
        for table, insert in loops.items():
            for mode in ("production", "triggers off"):
                timings: dict[str, list[float]] = {"with": [], "without": []}
                for _ in range(rounds):
                    for variant in ("with", "without"):
                        if mode == "triggers off":
                            conn.execute("SET LOCAL session_replication_role = replica")
                        if variant == "without":
                            conn.execute(f"DROP INDEX {FILTER_INDEXES[table]}")
                        started = time.perf_counter()
                        conn.execute(f"DO $$ BEGIN FOR i IN 1..{inserts} LOOP {insert}; END LOOP; END $$")
                        timings[variant].append((time.perf_counter() - started) / inserts * 1e6)
                        conn.rollback()
                out.setdefault(table, {"index": FILTER_INDEXES[table]})[mode] = {
                    "us_per_insert_with": round(statistics.median(timings["with"]), 1),
                    "us_per_insert_without": round(statistics.median(timings["without"]), 1),
                    "each_round": {k: [round(v, 1) for v in vs] for k, vs in timings.items()},
                }
                log(f"{table} ({mode}): {out[table][mode]}")
    return out


# --- measure -------------------------------------------------------------------------------


def manage(env: dict[str, str], *argv: str) -> list[str]:
    out = subprocess.run([PYTHON, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=3600)
    if out.returncode != 0:
        raise BenchError(f"manage.py {argv[0]} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout.strip().splitlines()


def server_env(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ACKLY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="ackly.settings", DATABASE_URL=args.db_url,
        REDIS_URL=args.redis_url, DEBUG="0", SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="127.0.0.1,localhost", SECURE_SSL_REDIRECT="0", PYTHONUNBUFFERED="1",
        STATIC_ROOT=str(workdir / "static"),
    )
    return env


def targets(db_url: str) -> dict[str, Any]:
    """The big workspace's ids and what the requests filter on: its busiest and rarest source,
    its busiest worker, an event of it, an instant 45 days back."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        def one(query: str, *params: Any) -> Any:
            return conn.execute(query, params).fetchone()[0]

        ws = one("SELECT w.id FROM workspaces_workspace w JOIN auth_user u ON u.username = %s "
                 "JOIN workspaces_membership m ON m.user_id = u.id AND m.workspace_id = w.id", OWNER)
        return {
            "workspace_pk": ws,
            "org": one("SELECT public_id FROM workspaces_workspace WHERE id = %s", ws),
            "busy_source": one("SELECT public_id FROM sources_source WHERE workspace_id = %s "
                               "ORDER BY id LIMIT 1", ws),
            "rare_source": one("SELECT public_id FROM sources_source WHERE workspace_id = %s "
                               "ORDER BY id DESC LIMIT 1", ws),
            "busy_worker": one("SELECT public_id FROM workspaces_worker WHERE workspace_id = %s "
                               "ORDER BY id LIMIT 1", ws),
            "event": one("SELECT public_id FROM ingest_event WHERE workspace_id = %s "
                         "ORDER BY received_at DESC LIMIT 1 OFFSET 1000", ws),
            "events": one("SELECT sum(count)::bigint FROM stats_eventcount "
                          "WHERE workspace_id = %s AND kind <> 'timeline'", ws),
            "timeline_events": one("SELECT sum(count)::bigint FROM stats_eventcount "
                                   "WHERE workspace_id = %s AND kind = 'timeline'", ws),
            "rows": one("SELECT sum(count)::bigint FROM stats_eventcount"),
            "workspaces": one("SELECT count(*) FROM workspaces_workspace"),
        }


def requests_of(t: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, path) of every dashboard request measured."""
    w = f"/w/{t['org']}"
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=45)
    day = old.isoformat().replace("+00:00", "Z")
    day_end = (old + timedelta(days=1)).isoformat().replace("+00:00", "Z")

    def live(**q: str) -> str:
        return f"{w}/events/" + ("?" + urlencode(q) if q else "")

    def feed(**q: str) -> str:
        return f"{w}/events/feed.json" + ("?" + urlencode(q) if q else "")

    return [
        ("live page", live()),
        ("live ?source=busiest", live(source=t["busy_source"])),
        ("live ?source=rarest", live(source=t["rare_source"])),
        ("live ?status=failure", live(status="failure")),
        ("live ?status=partial", live(status="partial")),
        ("live ?category=operations", live(category="operations")),
        ("live ?eventType=backup. (prefix)", live(eventType="backup.")),
        ("live ?eventType=<no match>", live(eventType=NO_MATCH)),
        ("live ?range=15m", live(range="15m")),
        ("live ?range=24h", live(range="24h")),
        ("live ?since&until (a day 45 d ago)", live(since=day, until=day_end)),
        ("live combined: source+status+type+7d",
         live(source=t["rare_source"], status="partial", eventType="cert.", range="7d")),
        ("live combined: category+type+30d",
         live(category="documentation", eventType="meeting.", range="30d")),
        ("live ?q=<no match> (search)", live(q=NO_MATCH)),
        # Every run id begins "run-": its number is the rare word (workspaces/search_plan.py).
        ("live ?q=<one externalId> (search)", live(q="run-1234567")),
        # Messages end "took <i % 9000> ms": these match 1 in 9,000, 1,000 and 100 events.
        ("live ?q=<0.011 % of events>", live(q="took 4321 ms")),
        ("live ?q=<0.1 % of events>", live(q="413 ms")),
        ("live ?q=<1 % of events>", live(q="13 ms")),
        ("feed.json", feed()),
        ("feed.json ?eventType=<no match>", feed(eventType=NO_MATCH)),
        ("feed.json ?before=45 d ago", feed(before=day)),
        ("feed.json ?status=partial&source=rarest", feed(status="partial", source=t["rare_source"])),
        ("feed.json ?q=<no match> (search)", feed(q=NO_MATCH)),
        ("event detail", f"{w}/events/{t['event']}/"),
        ("workers list", f"{w}/workers/"),
        ("worker page (busiest)", f"{w}/workers/{t['busy_worker']}/"),
        ("worker page 50", f"{w}/workers/{t['busy_worker']}/?page=50"),
        ("usage page", f"{w}/usage/"),
    ]


def summarise(ms: list[float]) -> dict[str, Any]:
    ordered = sorted(ms)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))], 1)

    return {"n": len(ms), "p50_ms": round(statistics.median(ordered), 1), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "max_ms": round(ordered[-1], 1)}


def timed_get(client: httpx.Client, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.get(path)
    return (time.perf_counter() - started) * 1000, response.status_code


def one_at_a_time(base: str, cookie: str, reqs: list[tuple[str, str]], repeat: int) -> list[dict]:
    out = []
    with httpx.Client(base_url=base, headers={"Cookie": cookie}, timeout=120) as client:
        for name, path in reqs:
            timed_get(client, path)  # warm: the first hit plans the query and reads cold pages
            runs = [timed_get(client, path) for _ in range(repeat)]
            statuses = sorted({status for _, status in runs})
            row = {"name": name, "path": path, "statuses": statuses,
                   **summarise([ms for ms, _ in runs])}
            log(f"{name:42} p50 {row['p50_ms']:7.1f}  p95 {row['p95_ms']:7.1f} ms  {statuses}")
            out.append(row)
    return out


def concurrent(bases: list[str], cookie: str, path: str, users: int, seconds: float,
               think: float) -> dict[str, Any]:
    """`users` threads, each its own connection, loading `path` for `seconds`, pausing `think`
    seconds between loads (0: back to back)."""
    stop = time.monotonic() + seconds
    results: list[tuple[float, int]] = []
    lock = threading.Lock()

    def user(n: int) -> None:
        with httpx.Client(base_url=bases[n % len(bases)], headers={"Cookie": cookie},
                          timeout=120) as client:
            time.sleep(think * n / users)  # spread the first loads
            while time.monotonic() < stop:
                got = timed_get(client, path)
                with lock:
                    results.append(got)
                if think:
                    time.sleep(think)

    started = time.monotonic()
    with ThreadPoolExecutor(users) as pool:
        list(pool.map(user, range(users)))
    wall = time.monotonic() - started
    statuses: dict[str, int] = {}
    for _, status in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"users": users, "think_s": think, "seconds": round(wall, 1), "path": path,
            "req_per_s": round(len(results) / wall, 1), "statuses": statuses,
            **summarise([ms for ms, _ in results])}


def measure(args: argparse.Namespace, env: dict[str, str], workdir: Path,
            migrated: bool) -> dict[str, Any]:
    if not migrated:
        # Indexes added since the prefill, built with the prefill's memory.
        manage(dict(env, PGOPTIONS="-c maintenance_work_mem=512MB"), "migrate", "--noinput",
               "-v", "0")
    manage(env, "collectstatic", "--noinput", "-v", "0")
    with psycopg.connect(args.db_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    t = targets(args.db_url)
    session = subprocess.run(
        [PYTHON, "-m", "bench.setup_data", "user", OWNER], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip().splitlines()[-1]
    cookie = f"sessionid={session}"
    sup = Supervisor(workdir, env)
    try:
        bases = []
        for _ in range(args.procs):
            port = free_port()
            cmd = [str(BIN / "uvicorn"), "ackly.asgi:application", "--host", "127.0.0.1",
                   "--port", str(port), "--no-access-log", "--lifespan", "off",
                   "--no-proxy-headers", "--log-level", "warning"]
            server = sup.start_server("uvicorn", cmd, port, env)
            sup.wait_ready(server, "/healthz")
            bases.append(f"http://127.0.0.1:{port}")
        reqs = requests_of(t)
        if args.only:
            reqs = [r for r in reqs if any(word in r[0] for word in args.only.split(","))]
        sequential = one_at_a_time(bases[0], cookie, reqs, args.repeat)
        crowd = []
        if args.users:
            for think in (0.0, args.think) if args.think else (0.0,):
                crowd.append(concurrent(bases, cookie, f"/w/{t['org']}/events/", args.users,
                                        args.users_seconds, think))
                log(f"live page, {args.users} users, think {think} s: p50 {crowd[-1]['p50_ms']} "
                    f"p95 {crowd[-1]['p95_ms']} ms, {crowd[-1]['req_per_s']} req/s, "
                    f"{crowd[-1]['statuses']}")
    finally:
        sup.stop_all()
    return {"targets": t, "sequential": sequential, "concurrent": crowd}


def table(result: dict[str, Any]) -> str:
    t = result["targets"]
    lines = [
        f"Dashboard at scale: {t['rows']:,} rows in {t['workspaces']:,} workspaces; the measured "
        f"one holds {t['events']:,} events and {t['timeline_events']:,} timeline events "
        f"({result['options']['procs']} uvicorn, {result['options']['repeat']} runs each)",
        "",
        "| Request | p50 ms | p95 ms | max ms | status |",
        "|---|---:|---:|---:|---|",
    ]
    for row in result["sequential"]:
        lines.append(f"| {row['name']} | {row['p50_ms']} | {row['p95_ms']} | {row['max_ms']} | "
                     f"{','.join(map(str, row['statuses']))} |")
    for crowd in result["concurrent"]:
        lines.append(f"| live page, {crowd['users']} users (think {crowd['think_s']} s) | "
                     f"{crowd['p50_ms']} | {crowd['p95_ms']} | {crowd['max_ms']} | "
                     f"{crowd['statuses']} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=40_000_000, help="rows in both event tables")
    p.add_argument("--workspaces", type=int, default=1000)
    p.add_argument("--refill", action="store_true", help="fill again even if a prefill is there")
    p.add_argument("--prefill-only", action="store_true", help="fill (if needed), do not measure")
    p.add_argument("--counters", choices=["groupby", "triggers"], default="groupby",
                   help="fill the counters by one GROUP BY after the load, or by their triggers")
    p.add_argument("--check-counters", action="store_true",
                   help="compare every counter with its rows after the prefill (two full scans)")
    p.add_argument("--index-cost", type=int, default=0, metavar="N",
                   help="also time N one-row INSERTs per table with and without the filter indexes")
    p.add_argument("--repeat", type=int, default=20, help="runs of each request, one at a time")
    p.add_argument("--only", default="", help="comma-separated words: measure matching requests")
    p.add_argument("--procs", type=int, default=2, help="uvicorn processes")
    p.add_argument("--users", type=int, default=20, help="concurrent users on the live page")
    p.add_argument("--users-seconds", type=float, default=20.0)
    p.add_argument("--think", type=float, default=1.0,
                   help="the users also run with this pause between loads (s); 0: back to back only")
    p.add_argument("--db-url", default=os.environ.get(
        "SCALE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ackly_scale"))
    p.add_argument("--redis-url", default=os.environ.get("SCALE_REDIS_URL", "redis://127.0.0.1:6379/2"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.json"))
    p.add_argument("--lock-wait", type=float, default=900.0, help="seconds to wait for the lock")
    p.add_argument("--lock-held", action="store_true",
                   help="the caller holds the bench lock (bench.run's part g, the smoke test)")
    args = p.parse_args(argv)
    if not db_name(args.db_url).startswith("ackly_scale"):
        p.error("the scale database's name must start with ackly_scale (it may be dropped)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ackly-scale-"))
    env = server_env(args, workdir)
    result: dict[str, Any] = {"options": vars(args), "machine": machine(args.db_url)}
    try:
        with contextlib.suppress(psycopg.Error):
            psycopg.connect(admin_url(args.db_url)).close()
        fill = Prefill(args, env)
        prefill = None if args.refill else fill.done_before()
        migrated = prefill is None
        if prefill is None:
            prefill = fill.run()
        else:
            log(f"prefill of {args.rows:,} rows found (--refill to redo it)")
        result["prefill"] = prefill
        if args.check_counters:
            result["counters"] = counters_match(args.db_url)
            log(f"counters equal their rows: {result['counters']}")
        if args.index_cost:
            result["index_cost"] = index_cost(args.db_url, args.index_cost)
            cost_out = Path(args.out).with_name("scale-index-cost.json")
            cost_out.write_text(json.dumps(
                {"rows": args.rows, "machine": result["machine"], **result["index_cost"]}, indent=2
            ) + "\n")
        if args.prefill_only:
            print(json.dumps(result["prefill"], indent=2))
            return 0 if result.get("counters", {}).get("passed", True) else 1
        lock = None if args.lock_held else take_lock(LOCK_PATH, args.lock_wait)
        if lock is None and not args.lock_held:
            print("another bench run holds the lock; giving up", file=sys.stderr)
            return 2
        try:
            result.update(measure(args, env, workdir, migrated))
        finally:
            if lock is not None:
                release_lock(lock)
            with contextlib.suppress(Exception):
                clear_redis(args.redis_url)
    except BenchError as exc:
        print(f"scale bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(result))
    print(f"written: {out}")
    bad = [r["name"] for r in result["sequential"] if r["statuses"] != [200]]
    bad += [f"{c['users']} users" for c in result["concurrent"] if list(c["statuses"]) != ["200"]]
    if bad:
        print(f"not every answer was 200: {bad}", file=sys.stderr)
    return 1 if bad or not result.get("counters", {}).get("passed", True) else 0


if __name__ == "__main__":
    sys.exit(main())
