#!/usr/bin/env bash
# Show and time the plans of the statements remediate generates for common requests, on the databases
# made by load.sh (run that first). Writes bench/plans/results/<variant>.{txt,json} and prints a summary.
#
#   bench/plans/explain.sh                 # every variant (about 20 minutes on 2 cores)
#   bench/plans/explain.sh baseline        # one variant: baseline | indexes | rewrite | rewrite-indexes
#   ONLY=a,c3 bench/plans/explain.sh baseline
#
# Each variant runs with full SQLite statistics (ANALYZE, as load.sh left them) and with none (what a
# database the server created has: it never runs ANALYZE); baseline and rewrite-indexes also with the
# statistics `PRAGMA optimize=0x10002` makes. See explain.py for the variants.
# The index variants create their indexes in the scratch databases and undo them at the end.
# SQLite is driven through apsw 3.46.0 (the SQLite the server bundles, with STAT4); PostgreSQL through psql.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PLANS_DIR="${PLANS_DIR:-/tmp/remediate-plans}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGDATABASE_PLANS="${PGDATABASE_PLANS:-remediate_plans}"
# shellcheck source=venv.sh
source "$HERE/venv.sh"
[ -f "$PLANS_DIR/remediate.db" ] || { echo "run bench/plans/load.sh first" >&2; exit 1; }
only=()
[ -n "${ONLY:-}" ] && only=(--only "$ONLY")
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(baseline indexes rewrite rewrite-indexes)
for v in "${variants[@]}"; do
  "$PY" "$HERE/explain.py" "$v" "${only[@]}"
  "$PY" "$HERE/explain.py" "$v" --stats none "${only[@]}"
  case "$v" in baseline|rewrite-indexes) "$PY" "$HERE/explain.py" "$v" --stats optimize "${only[@]}" ;; esac
done
