#!/usr/bin/env bash
# Commits side by side, each run from its own git worktree of this checkout (this .venv).
#
#   bench/compare_commits.sh SHA [SHA ...]
#     CPU per request of the ingest path in one process (bench/inprocess.py), for the
#     before/after table of docs/performance.md: a fresh PostgreSQL database per commit and kind
#     (INPROC_DB, default ackly_inproc) and a Redis DB with its Ackly keys cleared (INPROC_REDIS,
#     default redis://127.0.0.1:6379/8). REQUESTS and ROUNDS as bench/inprocess.py's options.
#
#   bench/compare_commits.sh --bench ROUNDS SHA [SHA ...]
#     `python -m bench.run --parts a,b` (BENCH_ARGS replaces the options) at every commit in
#     turn, ROUNDS times: on a shared machine the load changes from minute to minute, and only
#     runs alternated in the same minutes compare. Each run's header line carries the machine's
#     load when it starts; the raw lines go to stdout, for bench/results/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
TREES=()
trap 'for t in "${TREES[@]}"; do git -C "$ROOT" worktree remove --force "$t"; done' EXIT

worktree() {  # a worktree of $1 with this checkout's .venv; its path in $TREE
  TREE=$(mktemp -d /tmp/ackly-wt.XXXXXX)
  git -C "$ROOT" worktree add -q --detach "$TREE" "$1"
  ln -s "$ROOT/.venv" "$TREE/.venv"
  TREES+=("$TREE")
}

title() { git -C "$ROOT" log -1 --format='%h %s' "$1" | cut -c1-70; }

if [[ ${1:-} == --bench ]]; then
  rounds=$2
  shift 2
  declare -A tree_of
  for sha in "$@"; do
    worktree "$sha"
    tree_of[$sha]=$TREE
  done
  read -r -a args <<< "${BENCH_ARGS:---parts a,b}"
  for round in $(seq 1 "$rounds"); do
    for sha in "$@"; do
      echo "=== $(title "$sha") | round $round | $(date -u +%H:%M:%S) UTC"
      # The bench's own header line (from `Ackly bench`) gives the load when the run starts.
      (cd "${tree_of[$sha]}" && .venv/bin/python -m bench.run "${args[@]}" \
        --out "${tree_of[$sha]}/bench/results/latest.json" 2>&1 \
        | grep -E '^(Ackly bench|\([a-f]\)|count check)') || echo "failed: see bench.run"
    done
  done
  exit 0
fi

DB=${INPROC_DB:-ackly_inproc}
REDIS=${INPROC_REDIS:-redis://127.0.0.1:6379/8}
RUN_BY_PATH='import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")'
for sha in "$@"; do
  worktree "$sha"
  for kind in single batch; do
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" \
      >/dev/null 2>&1
    (cd "$ROOT" && "$PY" -c "from bench.run import clear_redis; clear_redis('$REDIS')")
    # This checkout's bench/inprocess.py on the commit's code: run by path, its own directory
    # would come first on sys.path and bench/alerts.py would hide the alerts app.
    result=$(cd "$TREE" && PYTHONPATH=$TREE DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB \
      REDIS_URL=$REDIS "$PY" -c "$RUN_BY_PATH" "$ROOT/bench/inprocess.py" --kind "$kind" \
      --requests "${REQUESTS:-2000}" --rounds "${ROUNDS:-5}" 2>&1 | tail -1) \
      || result="failed: $result"   # a commit that does not run alone is reported, not fatal
    echo "$(title "$sha") | $result"
  done
done
