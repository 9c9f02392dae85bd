#!/usr/bin/env bash
# CPU per request of the ingest path at several commits (bench/inprocess.py), for the
# before/after table of docs/performance.md. Each commit runs from its own git worktree
# against a fresh PostgreSQL database (ackly_inproc) and Redis DB 8 (its Ackly keys cleared); the tool itself is
# this checkout's. Usage: bench/compare_commits.sh SHA [SHA ...]   (quiet machine: see docs)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
DB=${INPROC_DB:-ackly_inproc}
for sha in "$@"; do
  tree=$(mktemp -d /tmp/ackly-wt.XXXXXX)
  git -C "$ROOT" worktree add -q --detach "$tree" "$sha"
  for kind in single batch; do
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" \
      >/dev/null 2>&1
    (cd "$ROOT" && "$PY" -c 'from bench.run import clear_redis; clear_redis("redis://127.0.0.1:6379/8")')
    result=$(cd "$tree" && PYTHONPATH=$tree DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB \
      REDIS_URL=redis://127.0.0.1:6379/8 "$PY" "$ROOT/bench/inprocess.py" --kind "$kind" \
      --requests "${REQUESTS:-2000}" --rounds "${ROUNDS:-5}" 2>&1 | tail -1) \
      || result="failed: $result"   # a commit that does not run alone is reported, not fatal
    echo "$(git -C "$ROOT" log -1 --format='%h %s' "$sha" | cut -c1-70) | $result"
  done
  git -C "$ROOT" worktree remove --force "$tree"
done
