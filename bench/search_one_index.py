"""The search of ingest events: ingest.0007's one trigram index on the three fields joined,
against ingest.0005's three (one per column), on a database bench.scale has prefilled.

    .venv/bin/python -m bench.scale --rows 2000000 --prefill-only \\
        --db-url postgres://postgres@127.0.0.1:5432/ackly_scale_h1 \\
        --redis-url redis://127.0.0.1:6379/15
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ackly_scale_h1 \\
        .venv/bin/python -m bench.search_one_index [--rounds 7]

Both sets of indexes are built (the index definitions are the migration's own), so it prints:

* each index's build time (plain CREATE INDEX, one at a time) and size;
* the cost per inserted event with the three indexes, with the one, and with neither: a
  PL/pgSQL loop of one-row INSERTs and 500-row INSERT … SELECT statements shaped like the
  prefill's rows, each in a transaction that drops the other set and is rolled back, the
  variants alternated round by round; then the time of `gin_clean_pending_list` on the indexes
  inserted into, the work GIN's fastupdate defers to VACUUM or to a later insert;
* the feed's events query (workspace, retention, newest 100), the old rule against the three
  indexes and the new against the one, for a term matching nothing, one row, about 0.4 % and
  about 1.2 % of the workspace's events, and many: p50/p95 and the plan.

It leaves the database with both sets of indexes; bench.scale or DROP DATABASE cleans up.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

import psycopg

MIGRATION = importlib.import_module("ingest.migrations.0007_one_event_search_index")
NEW = (MIGRATION.NAME, MIGRATION.EXPRESSION)
OLD = list(MIGRATION.OLD)
VARIANTS = {"three": [name for name, _ in OLD], "one": [NEW[0]], "none": []}
ALL = [NEW[0], *VARIANTS["three"]]

ROW = """
    SELECT lpad(to_hex(extract(epoch FROM now())::bigint), 8, '0') || lpad(to_hex(9000000 + i), 16, '0'),
        {ws}, {source}, 'success',
        'deploy.finished on host-' || (i % 40) || ' took ' || (i % 9000) || ' ms', '',
        'deploy.finished', 'run-' || (9000000 + i), (i % 9000)::float,
        jsonb_build_object('host', 'host-' || (i % 40), 'region', 'eu-west-1',
                           'bytes', i * 97, 'attempt', 1 + i % 3),
        now()
"""
COLUMNS = ("public_id, workspace_id, source_id, status, message, description, event_type, "
           "external_id, duration_ms, metadata, received_at")
TERMS = [("miss", "zebra quantum"), ("one row", "run-815220"), ("~0.4 %", "host-17 took 2"),
         ("~1.2 %", "took 42"), ("many", "deploy.finished")]


def say(line: str = "") -> None:
    print(line, flush=True)


def build(conn: psycopg.Connection) -> None:
    say("## builds (plain CREATE INDEX, one at a time, default maintenance_work_mem)\n")
    for name, expression in [*OLD, NEW]:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
        started = time.perf_counter()
        conn.execute(f"CREATE INDEX {name} ON ingest_event USING gin (({expression}) gin_trgm_ops)")
        took = time.perf_counter() - started
        conn.execute(f"ALTER INDEX {name} ALTER COLUMN 1 SET STATISTICS {MIGRATION.STATISTICS}")
        size = conn.execute("SELECT pg_size_pretty(pg_relation_size(%s::regclass))",
                            [name]).fetchone()[0]
        say(f"  {name:<24} {took:6.1f} s  {size}")
    total = conn.execute("SELECT pg_size_pretty(sum(pg_relation_size(c::regclass))) "
                         "FROM unnest(%s::text[]) c", [VARIANTS["three"]]).fetchone()[0]
    say(f"  (the three together: {total})")
    conn.execute("ANALYZE ingest_event")


def insert_cost(conn: psycopg.Connection, rounds: int) -> None:
    ws, source = conn.execute("SELECT workspace_id, id FROM sources_source ORDER BY id LIMIT 1"
                              ).fetchone()
    row = ROW.format(ws=ws, source=source)
    workloads = {
        "1,000 one-row INSERTs (PL/pgSQL loop)": (
            1000, [f"DO $$ BEGIN FOR i IN 1..1000 LOOP INSERT INTO ingest_event ({COLUMNS}) "
                   f"{row}; END LOOP; END $$"]),
        "4 x 500-row INSERT ... SELECT": (
            2000, [f"INSERT INTO ingest_event ({COLUMNS}) {row} "
                   f"FROM generate_series({k * 500}, {k * 500 + 499}) AS i" for k in range(4)]),
    }
    for mode in ("production", "triggers off"):
        for label, (rows, statements) in workloads.items():
            say(f"\n## per event, {label}, {mode}: us inserting / us cleaning the pending list\n")
            timings: dict[str, tuple[list[float], list[float]]] = {
                v: ([], []) for v in VARIANTS}
            order = list(VARIANTS)
            for r in range(rounds):
                for variant in order[r % 3:] + order[:r % 3]:
                    conn.execute("BEGIN")
                    if mode == "triggers off":
                        conn.execute("SET LOCAL session_replication_role = replica")
                    for name in ALL:
                        if name not in VARIANTS[variant]:
                            conn.execute(f"DROP INDEX {name}")
                    started = time.perf_counter()
                    for statement in statements:
                        conn.execute(statement)
                    inserting = time.perf_counter() - started
                    conn.execute("ROLLBACK")
                    started = time.perf_counter()
                    for name in VARIANTS[variant]:
                        conn.execute("SELECT gin_clean_pending_list(%s::regclass)", [name])
                    cleaning = time.perf_counter() - started
                    timings[variant][0].append(inserting / rows * 1e6)
                    timings[variant][1].append(cleaning / rows * 1e6)
            for variant, (ins, clean) in timings.items():
                say(f"  {variant:<6} median {statistics.median(ins):6.1f} / "
                    f"{statistics.median(clean):5.1f}   each round "
                    f"{[round(v, 1) for v in ins]} / {[round(v, 1) for v in clean]}")


def search(repeat: int) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ackly.settings")
    django.setup()
    from django.db import connection
    from django.db.models import Q, TextField
    from django.db.models.functions import Cast
    from django.utils import timezone

    from workspaces import live
    from workspaces.models import Workspace

    def three_columns(qs, term):  # the rule before ingest.0007, verbatim
        return qs.alias(metadata_text=Cast("metadata", TextField())).filter(
            Q(message__icontains=term) | Q(external_id__icontains=term)
            | Q(metadata_text__icontains=term))

    one_text = live.search_events
    with connection.cursor() as cursor:
        for name in ALL:
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [name])
        cursor.execute("ANALYZE ingest_event")
        cursor.execute("SELECT workspace_id FROM ingest_event GROUP BY 1 ORDER BY count(*) DESC "
                       "LIMIT 1")
        ws = Workspace.objects.select_related("plan").get(pk=cursor.fetchone()[0])
    say(f"\n## the feed's events query (newest 100), {ws.public_id}, ms p50 / p95 of {repeat}\n")
    plans = []
    for label, term in TERMS:
        for rule, fn in (("three indexes", three_columns), ("one index", one_text)):
            live.search_events = fn
            qs = live.events_query(ws, live.FeedFilters(q=term), timezone.now())[:100]
            times, rows = [], 0
            for _ in range(repeat):
                started = time.perf_counter()
                rows = len(list(qs.all()))
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            say(f"  {label:<8} {term!r:<18} {rule:<14} {statistics.median(times):8.1f} / "
                f"{times[int(0.95 * (len(times) - 1))]:8.1f} ms  ({rows} rows)")
            if label in ("miss", "~0.4 %"):
                plans.append((f"{term!r}, {rule}", qs.explain(analyze=True)))
    live.search_events = one_text
    for title, plan in plans:
        say(f"\n  {title}:\n    " + plan.replace("\n", "\n    "))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--parts", default="build,insert,search")
    args = p.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if "ackly_scale" not in url:
        sys.exit("DATABASE_URL must name a database bench.scale prefilled (ackly_scale…)")
    say(f"# search: one index against three, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    with psycopg.connect(url, autocommit=True) as conn:
        say(conn.execute("SELECT version()").fetchone()[0])
        say(conn.execute("SELECT format('%s events, table %s', count(*), "
                         "pg_size_pretty(pg_relation_size('ingest_event'))) FROM ingest_event"
                         ).fetchone()[0] + "\n")
        parts = args.parts.split(",")
        if "build" in parts:
            build(conn)
        if "insert" in parts:
            insert_cost(conn, args.rounds)
    if "search" in parts:
        search(args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
