"""Free-text search on PostgreSQL: pg_trgm against full-text search, on generated rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ackly_search_lab \\
        .venv/bin/python -m bench.search_lab [--events 2000000] [--keep]

Makes its own database (the name must start with ackly_search_lab; dropped at the end unless
--keep), migrates it, and fills one Pro workspace with N ingest events and N timeline events
(plus a quarter as many in a second workspace) by INSERT … SELECT generate_series: varied
messages, external ids, metadata and 200 workers per workspace. Then, for no index, pg_trgm GIN
indexes (one per searched column, gin_trgm_ops on the exact expressions Django's icontains
writes) and a full-text tsvector GIN index (prefix tsquery), it prints:

* each index's build time and size;
* the feed's query (workspace, retention, ORDER BY received_at DESC, id DESC LIMIT 100) for a
  term matching nothing, a few rows and many rows: p50/p95/max over repeated runs, and the plan;
* the cost per INSERT: pgbench loops of one-row inserts into the events table (and 500-row
  timeline batches) with and without the index, GIN's fastupdate on and off;
* what full-text search cannot find (substrings).

Last, with the migration's own indexes, `workspaces.live.feed` itself (both kinds, the app's
query) for the same terms. Every statement it times is printed before its figures.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/ackly_search_lab"
REPEAT = 15

# The migrations' index names (ingest.0007's for the events, 0005's for the timeline and
# workers): dropped before the comparison, rebuilt for the last part.
APP_INDEXES = ("event_search_trgm", "timeline_metadata_trgm", "worker_display_name_trgm",
               "worker_external_id_trgm")

MESSAGES = [
    "Nightly backup of db-%s completed", "Payment failed for card ending %s",
    "Invoice %s sent to customer", "Deploy of service %s finished",
    "Sync with CRM contact %s", "Report generated for account %s",
    "Email delivered to user %s", "Backup verification for volume %s",
    "Order %s shipped", "Refund issued for order %s", "Ticket %s escalated to tier 2",
    "Cache warmed for region %s",
]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne",
             "Tyrell", "Cyberdyne", "Soylent", "Wonka", "Gringotts", "Oscorp", "Aperture",
             "Massive", "Monarch", "Nakatomi", "Pied Piper", "Prestige", "Sirius", "Virtucon",
             "Wernham", "Zorg", "Dunder", "Bluth", "Kramerica", "Sterling", "Lacuna", "Veidt"]
SUFFIXES = ["Corp", "Labs", "GmbH", "Ltd", "Inc", "Group", "Partners", "Systems"]
FIRST = ["Alex", "Maria", "Chen", "Priya", "Jonas", "Fatima", "Lucas", "Aiko", "Omar", "Sofia",
         "Mateo", "Zoe", "Ivan", "Amara", "Noah", "Lena", "Ravi", "Elif", "Hugo", "Mina"]
LAST = ["Kowalski", "Okafor", "Lindqvist", "Haddad", "Moreau", "Tanaka", "Silva", "Novak",
        "Schmidt", "Rossi"]
REGIONS = ["eu-west-1", "us-east-1", "ap-south-1", "sa-east-1", "eu-central-1"]


def sql_array(values: list[str]) -> str:
    """A text[] literal for a statement run with parameters (so % is doubled)."""
    quoted = ("'" + v.replace("'", "''").replace("%", "%%") + "'" for v in values)
    return "ARRAY[" + ", ".join(quoted) + "]"


EVENTS_SQL = f"""
INSERT INTO ingest_event (public_id, workspace_id, source_id, status, message, description,
                          event_type, external_id, duration_ms, metadata, received_at)
SELECT substr(md5(%(salt)s || i::text), 1, 24), %(ws)s, %(source)s,
       ({sql_array(["success", "success", "success", "failure", "partial"])})[1 + i %% 5],
       format(({sql_array(MESSAGES)})[1 + i %% {len(MESSAGES)}], (i * 7919) %% 100000)
         || ' for ' || ({sql_array(COMPANIES)})[1 + (i / 7) %% {len(COMPANIES)}]
         || ' ' || ({sql_array(SUFFIXES)})[1 + (i / 3) %% {len(SUFFIXES)}],
       '', 'job.' || (i %% 9),
       ({sql_array(["ord-", "cust-", "run-", "inv-"])})[1 + i %% 4]
         || lpad(((i::bigint * 2654435761) %% 100000000)::text, 8, '0'),
       (i %% 9000)::float,
       CASE WHEN i %% 4 = 0 THEN NULL ELSE jsonb_build_object(
           'host', 'web-' || (i %% 30), 'region', ({sql_array(REGIONS)})[1 + i %% 5],
           'attempt', i %% 5, 'invoice', 'inv_' || i) END,
       now() - make_interval(secs => i * %(step)s)
FROM generate_series(%(first)s::bigint, %(last)s) AS i
"""

WORKERS_SQL = f"""
INSERT INTO workspaces_worker (public_id, workspace_id, display_name, external_id, created_at)
SELECT 'wrk_' || substr(md5(%(salt)s || n::text), 1, 24), %(ws)s,
       ({sql_array(FIRST)})[1 + n %% {len(FIRST)}] || ' ' || ({sql_array(LAST)})[1 + n / {len(FIRST)}],
       'u-' || (1000 + n), now()
FROM generate_series(0, 199) AS n
"""

TIMELINE_SQL = f"""
INSERT INTO ingest_timelineevent (public_id, workspace_id, source_id, worker_id, event_type,
                                  category, timestamp, duration, metadata, request_id, received_at)
SELECT 'tle_' || substr(md5(%(salt)s || i::text), 1, 24), %(ws)s, %(source)s,
       %(worker0)s + (i * 37) %% 200, 'ticket.' || (i %% 6),
       ({sql_array(["support", "sales", "development", "operations"])})[1 + i %% 4],
       now() - make_interval(secs => i * %(step)s), i %% 3600,
       jsonb_build_object('ticket', 'ZD-' || (100000 + (i::bigint * 48271) %% 900000),
                          'channel', ({sql_array(["email", "chat", "phone"])})[1 + i %% 3]),
       'req_lab', now() - make_interval(secs => i * %(step)s)
FROM generate_series(%(first)s::bigint, %(last)s) AS i
"""

# The feed's query for one kind, as workspaces.live writes it: %(match)s is the search.
EVENTS_FEED = """SELECT id FROM ingest_event
WHERE workspace_id = %(ws)s AND received_at >= %(cutoff)s AND ({match})
ORDER BY received_at DESC, id DESC LIMIT 100"""
TIMELINE_FEED = """SELECT id FROM ingest_timelineevent
WHERE workspace_id = %(ws)s AND received_at >= %(cutoff)s AND ({match})
ORDER BY received_at DESC, id DESC LIMIT 100"""
WORKERS_FIRST = """SELECT id FROM workspaces_worker WHERE workspace_id = %(ws)s
AND (UPPER(display_name::text) LIKE UPPER(%(pattern)s) OR UPPER(external_id::text) LIKE UPPER(%(pattern)s))"""

TRGM_EVENTS = ("UPPER(message::text) LIKE UPPER(%(pattern)s) OR UPPER(external_id::text) LIKE "
               "UPPER(%(pattern)s) OR UPPER((metadata)::text::text) LIKE UPPER(%(pattern)s)")
TRGM_TIMELINE = "worker_id = ANY(%(workers)s) OR UPPER((metadata)::text::text) LIKE UPPER(%(pattern)s)"
TRGM_COLUMNS = [("event_message", "ingest_event", "message"),
                ("event_external_id", "ingest_event", "external_id"),
                ("event_metadata", "ingest_event", "metadata"),
                ("timeline_metadata", "ingest_timelineevent", "metadata"),
                ("worker_display_name", "workspaces_worker", "display_name"),
                ("worker_external_id", "workspaces_worker", "external_id")]
TRGM_INDEXES = [
    f"CREATE INDEX lab_{name}_trgm ON {table} USING gin (UPPER({column}::text) gin_trgm_ops) {{with_}}"
    for name, table, column in TRGM_COLUMNS
]
FTS_EVENT_DOC = ("to_tsvector('simple'::regconfig, message || ' ' || external_id || ' ' || "
                 "coalesce(metadata::text, ''))")
FTS_TIMELINE_DOC = "to_tsvector('simple'::regconfig, coalesce(metadata::text, ''))"
FTS_EVENTS = f"{FTS_EVENT_DOC} @@ to_tsquery('simple', %(tsquery)s)"
FTS_TIMELINE = f"worker_id = ANY(%(workers)s) OR {FTS_TIMELINE_DOC} @@ to_tsquery('simple', %(tsquery)s)"
FTS_WORKERS = """SELECT id FROM workspaces_worker WHERE workspace_id = %(ws)s
AND to_tsvector('simple'::regconfig, display_name || ' ' || coalesce(external_id, ''))
    @@ to_tsquery('simple', %(tsquery)s)"""
FTS_INDEXES = [
    f"CREATE INDEX lab_event_fts ON ingest_event USING gin ({FTS_EVENT_DOC}) {{with_}}",
    f"CREATE INDEX lab_timeline_fts ON ingest_timelineevent USING gin ({FTS_TIMELINE_DOC}) {{with_}}",
]

INSERT_ONE = """\\set n random(1, 1000000000)
INSERT INTO ingest_event (public_id, workspace_id, source_id, status, message, description,
  event_type, external_id, duration_ms, metadata, received_at)
VALUES (substr(md5(random()::text), 1, 24), {ws}, {source}, 'success',
  'Nightly backup of db-' || (:n % 40) || ' completed for Acme Corp ' || :n, '', 'job.1',
  'run-' || :n, 12.5,
  jsonb_build_object('host', 'web-' || (:n % 30), 'region', 'eu-west-1', 'invoice', 'inv_' || :n),
  now() - interval '1000 days');
"""
INSERT_BATCH = """INSERT INTO ingest_timelineevent (public_id, workspace_id, source_id, worker_id,
  event_type, category, timestamp, duration, metadata, request_id, received_at)
SELECT 'tle_' || substr(md5(random()::text), 1, 24), {ws}, {source}, {worker0} + i % 200,
  'ticket.1', 'support', now(), 30,
  jsonb_build_object('ticket', 'ZD-' || (random() * 1e6)::int, 'channel', 'chat'),
  'req_pgbench', now() - interval '1000 days'
FROM generate_series(1, 500) AS i;
"""


def tsquery(term: str) -> str:
    """The prefix query full-text search would run for a typed term: every word as a prefix."""
    words = [w for w in re.split(r"\W+", term.lower()) if w]
    return " & ".join(f"{w}:*" for w in words) or "''"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000,
                        help="events and timeline events in the searched workspace (each)")
    parser.add_argument("--keep", action="store_true", help="leave the database for inspection")
    parser.add_argument("--reuse", action="store_true", help="use a database --keep left")
    parser.add_argument("--pgbench-seconds", type=int, default=20)
    parser.add_argument("--parts", default="none,trgm,fts,app",
                        help="any of none,trgm,fts (queries and inserts), app (the migration, then the "
                        "app's feed), inserts (with app: before and after the migration), feed "
                        "(the app's feed alone)")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ackly.settings")
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    from bench.run import db_name, drop_database, recreate_database

    if not db_name(url).startswith("ackly_search_lab"):
        raise SystemExit("the lab's database name must start with ackly_search_lab")
    if not args.reuse:
        recreate_database(url, prefix="ackly_search_lab")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if not args.reuse:
        call_command("migrate", verbosity=0)
    try:
        lab = Lab(connection, args, url)
        lab.run()
    finally:
        connection.close()
        if not args.keep:
            drop_database(url)
    return 0


class Lab:
    def __init__(self, connection, args, url: str) -> None:
        self.db, self.args, self.url = connection, args, url

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def execute(self, sql: str, params=None) -> list[tuple]:
        with self.db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    # --- data ---------------------------------------------------------------------------------
    def fill(self) -> None:
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from sources.services import create_source
        from workspaces.models import Workspace
        from workspaces.services import create_workspace

        if self.args.reuse:
            self.ws = Workspace.objects.get(name="Search lab")
            self.other = Workspace.objects.get(name="Search lab, other")
        else:
            owner = get_user_model().objects.create_user("lab", "lab@example.com", "lab-passphrase")
            self.ws = create_workspace("Search lab", "pro", owner=owner)
            self.other = create_workspace("Search lab, other", "pro", owner=owner)
        self.cutoff = timezone.now() - timedelta(days=self.ws.plan.retention_days)
        span = min(self.ws.plan.retention_days, 30) * 86400
        n = self.args.events
        self.sources, self.worker0 = {}, {}
        for ws, rows, salt in ((self.ws, n, "a"), (self.other, n // 4, "b")):
            if self.args.reuse:
                self.sources[ws.pk] = ws.sources.first().pk
                self.worker0[ws.pk] = self.execute(
                    "SELECT min(id) FROM workspaces_worker WHERE workspace_id = %s", [ws.pk])[0][0]
                continue
            source, _ = create_source(ws, "Lab source")
            self.sources[ws.pk] = source.pk
            started = time.monotonic()
            self.execute(WORKERS_SQL, {"salt": salt, "ws": ws.pk})
            self.worker0[ws.pk] = self.execute(
                "SELECT min(id) FROM workspaces_worker WHERE workspace_id = %s", [ws.pk])[0][0]
            chunk = 500_000
            for first in range(1, rows + 1, chunk):
                params = {"salt": salt, "ws": ws.pk, "source": source.pk, "first": first,
                          "last": min(first + chunk - 1, rows), "step": span / rows,
                          "worker0": self.worker0[ws.pk]}
                self.execute(EVENTS_SQL, params)
                self.execute(TIMELINE_SQL, params)
            self.say(f"filled {ws.name!r}: {rows:,} events + {rows:,} timeline events + 200 "
                     f"workers in {time.monotonic() - started:.0f} s")
        self.execute("VACUUM ANALYZE ingest_event")
        self.execute("VACUUM ANALYZE ingest_timelineevent")
        self.execute("VACUUM ANALYZE workspaces_worker")
        for table in ("ingest_event", "ingest_timelineevent"):
            size = self.execute("SELECT pg_size_pretty(pg_table_size(%s)), count(*) FROM "
                                + table, [table])[0]
            self.say(f"{table}: {size[1]:,} rows, table {size[0]}")

    def terms(self) -> list[tuple[str, str]]:
        """(label, term): a miss, a few, many, in each field, and two short terms."""
        one_external = self.execute(
            "SELECT external_id FROM ingest_event WHERE workspace_id = %s ORDER BY id "
            "OFFSET 12345 LIMIT 1", [self.ws.pk])[0][0]
        return [
            ("miss: rare trigrams", "zebra quantum"),
            ("miss: common trigrams", "backup shipped"),
            ("miss: an id", "ord-x1234"),
            ("few: one externalId", one_external),
            ("few: externalId part", one_external[-7:]),
            ("few: metadata invoice", "inv_1234567"),
            ("few: timeline ticket", "ZD-123456"),
            ("mid: company+suffix", "Wernham Systems"),
            ("many: message word", "backup"),
            ("many: worker name", "Zoe Tanaka"),
            ("many: metadata region", "eu-west-1"),
            ("short: 2 chars", "zq"),
        ]

    # --- measuring ----------------------------------------------------------------------------
    def time_query(self, sql: str, params: dict, repeat: int = REPEAT) -> tuple[list[float], int]:
        times, rows = [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            rows = len(self.execute(sql, params))
            times.append((time.perf_counter() - started) * 1000)
        return times, rows

    def report_times(self, label: str, times: list[float], rows: int) -> None:
        ordered = sorted(times)
        p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
        self.say(f"  {label:<28} rows={rows:<4} first={times[0]:8.1f} ms  "
                 f"p50={statistics.median(times):8.1f} ms  p95={p95:8.1f} ms  "
                 f"max={ordered[-1]:8.1f} ms")

    def plan(self, sql: str, params: dict) -> str:
        rows = self.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + sql, params)
        return "\n".join("      " + r[0] for r in rows)

    def search(self, variant: str, repeat: bool = True) -> None:
        self.say(f"\n## queries, {variant}\n")
        events_sql = EVENTS_FEED.format(match=TRGM_EVENTS if variant != "fts" else FTS_EVENTS)
        timeline_sql = TIMELINE_FEED.format(
            match=TRGM_TIMELINE if variant != "fts" else FTS_TIMELINE)
        workers_sql = WORKERS_FIRST if variant != "fts" else FTS_WORKERS
        self.say("events:\n" + events_sql + "\nworkers first:\n" + workers_sql
                 + "\ntimeline, with the workers found:\n" + timeline_sql + "\n")
        terms = self.terms()
        if variant == "none":
            terms = [t for t in terms if t[0].startswith(("miss: rare", "many: message"))]
        for label, term in terms:
            pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params = {"ws": self.ws.pk, "cutoff": self.cutoff, "pattern": pattern,
                      "tsquery": tsquery(term)}
            params["workers"] = [r[0] for r in self.execute(workers_sql, params)]
            self.say(f"{label}: {term!r} (tsquery {params['tsquery']!r}, "
                     f"{len(params['workers'])} workers match)")
            repeat = 3 if variant == "none" else REPEAT  # seconds each without an index
            times, rows = self.time_query(events_sql, params, repeat)
            self.report_times("events", times, rows)
            times_w, _ = self.time_query(workers_sql, params, repeat)
            self.report_times("workers first", times_w, len(params["workers"]))
            times_t, rows_t = self.time_query(timeline_sql, params, repeat)
            self.report_times("timeline", times_t, rows_t)
            total = [a + b + c for a, b, c in zip(times, times_w, times_t, strict=True)]
            self.report_times("all three (the feed)", total, rows + rows_t)
            if label.startswith(("miss: rare", "mid", "many: message", "many: worker",
                                 "short")):
                self.say("    events plan:\n" + self.plan(events_sql, params))
                self.say("    timeline plan:\n" + self.plan(timeline_sql, params))

    def build(self, statements: list[str], fastupdate: bool = True) -> None:
        self.execute("SET maintenance_work_mem = '512MB'")
        with_ = "" if fastupdate else "WITH (fastupdate = off)"
        for statement in statements:
            sql = statement.format(with_=with_)
            started = time.monotonic()
            self.execute(sql)
            name = sql.split()[2]
            size = self.execute("SELECT pg_size_pretty(pg_relation_size(%s))", [name])[0][0]
            self.say(f"  {sql}\n    built in {time.monotonic() - started:.1f} s, size {size}")
        self.execute("ANALYZE ingest_event")
        self.execute("ANALYZE ingest_timelineevent")
        self.execute("ANALYZE workspaces_worker")

    def drop(self, statements: list[str]) -> None:
        for statement in statements:
            self.drop_index(statement.split()[2])

    def drop_index(self, name: str) -> None:
        self.execute(f"DROP INDEX IF EXISTS {name}")

    def pgbench(self, label: str) -> None:
        """One-row event inserts (2 clients) and 500-row timeline batches (1 client), each with
        synchronous_commit on (as served) and off (no wait for the WAL flush: the CPU's part)."""
        ws, source = self.ws.pk, self.sources[self.ws.pk]
        runs = [(f"{kind}, sync {sync}", script, clients, sync)
                for sync in ("on", "off")
                for kind, script, clients in (
                    ("1-row event INSERT", INSERT_ONE.format(ws=ws, source=source), 2),
                    ("500-row timeline INSERT", INSERT_BATCH.format(
                        ws=ws, source=source, worker0=self.worker0[ws]), 1))]
        for kind, script, clients, sync in runs:
            with tempfile.TemporaryDirectory() as work:
                path = Path(work) / "script.sql"
                path.write_text(script)
                done = subprocess.run(
                    ["pgbench", "-n", "-c", str(clients), "-T", str(self.args.pgbench_seconds),
                     "-f", str(path), "-l", "--log-prefix", str(Path(work) / "log"),
                     self.url.replace("postgres://", "postgresql://")],
                    capture_output=True, text=True, check=True,
                    env={**os.environ, "PGOPTIONS": f"-c synchronous_commit={sync}"},
                )
                latencies = sorted(
                    int(line.split()[2]) / 1000
                    for log in Path(work).glob("log*") for line in log.read_text().splitlines()
                )
            tps = re.search(r"tps = ([\d.]+)", done.stdout).group(1)
            n = len(latencies)
            self.say(f"  {label:<26} {kind:<37} {n:>6} tx  tps={float(tps):8.1f}  "
                     f"mean={statistics.mean(latencies):6.2f} ms  "
                     f"p50={latencies[n // 2]:6.2f} ms  p99={latencies[int(n * 0.99)]:6.2f} ms  "
                     f"max={latencies[-1]:7.2f} ms")
        self.execute("DELETE FROM ingest_event WHERE received_at < now() - interval '999 days'")
        self.execute("DELETE FROM ingest_timelineevent WHERE received_at < now() - interval '999 days'")
        self.execute("VACUUM ingest_event")
        self.execute("VACUUM ingest_timelineevent")

    def substrings(self) -> None:
        self.say("\n## substrings: what each finds\n")
        cases = [("abcd", "bc"), ("Nightly backup completed", "ckup"),
                 ("Nightly backup completed", "backup"), ("Nightly backup completed", "back"),
                 ("ord-00412345", "412345"), ("ord-00412345", "ord-004"),
                 ('{"invoice": "inv_4711"}', "4711"), ('{"invoice": "inv_4711"}', "inv_47"),
                 ("Alex Chen", "lex"), ("eu-west-1", "west")]
        self.say(f"  {'text':<28} {'term':<10} {'ILIKE (pg_trgm)':<16} FTS prefix tsquery")
        for text, term in cases:
            found = self.execute(
                "SELECT %(t)s ILIKE %(p)s, to_tsvector('simple', %(t)s) @@ to_tsquery('simple', %(q)s)",
                {"t": text, "p": f"%{term}%", "q": tsquery(term)})[0]
            self.say(f"  {text!r:<28} {term!r:<10} {found[0]!s:<16} {found[1]}  ({tsquery(term)})")

    def app(self, inserts: bool) -> None:
        """The app's own feed (both kinds) against the migration's indexes; with `inserts`, the
        insert loops without them and with them."""
        from django.core.management import call_command

        call_command("migrate", "ingest", "0004", verbosity=0)
        if inserts:
            self.say("\n## inserts: before ingest.0005, then with the search indexes\n")
            self.pgbench("no search index")
        started = time.monotonic()
        call_command("migrate", "ingest", verbosity=0)
        self.say(f"ingest.0005-0007 (the search indexes, CONCURRENTLY) took "
                 f"{time.monotonic() - started:.0f} s")
        if inserts:
            self.pgbench("the migrations' pg_trgm")
        self.feed_times()

    def feed_times(self) -> None:
        """`workspaces.live.feed` for each term, and the plans of a miss and of a 0.5 % term."""
        from workspaces import live

        self.execute("ANALYZE ingest_event")
        self.execute("ANALYZE ingest_timelineevent")
        self.execute("ANALYZE workspaces_worker")
        self.say("\n## the app: workspaces.live.feed (both kinds, 100 items), migration's indexes\n")
        for label, term in self.terms():
            filters = live.FeedFilters(q=term)
            times, rows = [], 0
            # A short term reads every row of the workspace (seconds each): once is enough.
            for _ in range(1 if label.startswith("short") else REPEAT):
                started = time.perf_counter()
                rows = len(live.feed(self.ws, filters))
                times.append((time.perf_counter() - started) * 1000)
            self.report_times(f"{label} {term!r}"[:28], times, rows)
        for term in ("zebra quantum", "Wernham Systems"):
            filters = live.FeedFilters(q=term)
            for query in (live.events_query(self.ws, filters, live.timezone.now()),
                          live.timeline_query(self.ws, filters, live.timezone.now())):
                plan = query[:100].explain(analyze=True).replace("\n", "\n    ")
                self.say(f"  {term!r}, {query.model.__name__}:\n    {plan}")

    def run(self) -> None:
        parts = self.args.parts.split(",")
        self.say(f"# search lab, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {self.args.events:,} "
                 "events and timeline events\n")
        self.say(self.execute("SELECT version()")[0][0])
        self.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        if {"none", "trgm", "fts"} & set(parts):  # compared without the migration's indexes
            for name in APP_INDEXES:
                self.drop_index(name)
        self.fill()
        if "none" in parts:
            self.search("none")
            self.say("\n## inserts, no search index\n")
            self.pgbench("no search index")
        if "trgm" in parts:
            self.say("\n## pg_trgm: one GIN index per searched column (fastupdate on)\n")
            self.build(TRGM_INDEXES)
            self.search("trgm")
            self.say("\n## inserts, pg_trgm\n")
            self.pgbench("pg_trgm, fastupdate on")
            self.drop(TRGM_INDEXES)
            self.build(TRGM_INDEXES, fastupdate=False)
            self.pgbench("pg_trgm, fastupdate off")
            self.drop(TRGM_INDEXES)
        if "fts" in parts:
            self.say("\n## full-text search: one tsvector GIN index per table (fastupdate on)\n")
            self.build(FTS_INDEXES)
            self.search("fts")
            self.say("\n## inserts, full-text search\n")
            self.pgbench("FTS, fastupdate on")
            self.drop(FTS_INDEXES)
        self.substrings()
        if "app" in parts:
            self.app(inserts="inserts" in parts)
        elif "feed" in parts:  # the app's feed against the indexes already there
            self.feed_times()


if __name__ == "__main__":
    raise SystemExit(main())
