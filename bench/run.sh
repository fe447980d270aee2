#!/usr/bin/env bash
# remediate's benchmark: floors, remediate on SQLite and PostgreSQL, peers; one table, one JSON, one plot.
#
#   bench/run.sh --quick     # clients 8 and 64, 10k and 100k rows, 3 s per measurement (about 4 minutes)
#   bench/run.sh             # clients 1, 8, 64, 256, 10k, 100k and 1M rows, 10 s per measurement (about 20 minutes)
#   bench/run.sh --only sqlite,floors    # a subset: sqlite, postgres, floors, peers
#
# Writes bench/results/latest.json and docs/bench-scaling.png; see docs/benchmarks.md.
# Needs: PostgreSQL at 127.0.0.1:5432 (trust, user postgres), pgbench/psql, Node.js 20, a Rust toolchain.
# Installs what is missing: wrk (apt), matplotlib (bench/.venv), json-server and Prism (bench/node_modules),
# the floor program (bench/target), and the release binary when it is older than the newest commit.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
say() { echo "[$(date +%H:%M:%S)] $*"; }

# the load generator
if ! command -v wrk >/dev/null; then
  say "installing wrk"
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
command -v pgbench >/dev/null || { say "installing postgresql-client"; apt-get install -y -qq postgresql-client >/dev/null; }

# remediate, built once per commit
BIN="$REPO/target/release/remediate"
if [ ! -x "$BIN" ] || [ "$(stat -c %Y "$BIN")" -lt "$(git -C "$REPO" log -1 --format=%ct)" ]; then
  say "building remediate (release)"
  (cd "$REPO" && cargo build --release -q)
fi

# the floors (a standalone Cargo project, not in the workspace)
FLOOR="$HERE/target/release/remediate-bench-floor"
if [ ! -x "$FLOOR" ] || [ -n "$(find "$HERE/floor" -newer "$FLOOR" -type f -print -quit)" ]; then
  say "building the floor program"
  (cd "$HERE/floor" && CARGO_TARGET_DIR="$HERE/target" cargo build --release -q)
fi

# matplotlib for the plot
if [ ! -x "$HERE/.venv/bin/python" ] || ! "$HERE/.venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  say "creating bench/.venv with matplotlib"
  python3 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install -q --disable-pip-version-check matplotlib
fi

# peers (a failure is recorded in the results, not fatal)
if [ ! -x "$HERE/node_modules/.bin/json-server" ] || [ ! -x "$HERE/node_modules/.bin/prism" ]; then
  say "installing json-server and Prism into bench/node_modules"
  (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error) || say "npm install failed: peers will be recorded as not installed"
fi

exec "$HERE/.venv/bin/python" "$HERE/bench.py" "$@"
