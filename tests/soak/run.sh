#!/usr/bin/env bash
# SIGKILL soak (issue 17; not in CI): kill `remediate serve` at random moments under concurrent
# writers, restart it, and check every acknowledged write, the history and `recount --check`
# after each kill. See tests/soak/README.md.
#
#   tests/soak/run.sh                         # 1000 cycles on SQLite, then 1000 on PostgreSQL
#   tests/soak/run.sh --cycles 50 --db sqlite
#   nice -n 19 tests/soak/run.sh --parallel   # both databases at once
#
# Options: --cycles N (1000), --writers W (8), --db sqlite|postgres|both (both), --seed S,
# --parallel (run the two databases at the same time), --keep (keep data directories).
# Environment: REMEDIATE_BIN (default target/release/remediate, built if missing),
# SOAK_PG (default 127.0.0.1:5432; user postgres, trust authentication).
# Exits non-zero on the first lost or wrong acknowledged write, history or counter difference.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cycles=1000
writers=8
db=both
parallel=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cycles) cycles="$2"; shift 2 ;;
        --writers) writers="$2"; shift 2 ;;
        --db) db="$2"; shift 2 ;;
        --seed) extra+=(--seed "$2"); shift 2 ;;
        --keep) extra+=(--keep); shift ;;
        --parallel) parallel=1; shift ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

binary="${REMEDIATE_BIN:-$root/target/release/remediate}"
if [ ! -x "$binary" ]; then
    (cd "$root" && cargo build --release -p remediate --bin remediate)
fi
pg="${SOAK_PG:-127.0.0.1:5432}"
pg_host="${pg%:*}"
pg_port="${pg##*:}"
database="soak_$$"

drop_database() {
    psql -h "$pg_host" -p "$pg_port" -U postgres -d postgres -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
}

soak() { # label [--database URL]
    local label="$1"
    shift
    python3 "$root/tests/soak/soak.py" --binary "$binary" --label "$label" \
        --cycles "$cycles" --writers "$writers" "${extra[@]}" "$@"
}

run_sqlite() { soak sqlite; }
run_postgres() {
    psql -h "$pg_host" -p "$pg_port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE $database" >/dev/null
    if soak postgres --database "postgres://postgres@$pg_host:$pg_port/$database"; then
        drop_database
    else
        echo "soak: the database $database is kept for inspection" >&2
        return 1
    fi
}

echo "soak: $binary, $cycles cycles, $writers writers, databases: $db" >&2
start=$(date +%s)
status=0
case "$db" in
    sqlite) run_sqlite || status=$? ;;
    postgres) run_postgres || status=$? ;;
    both)
        if [ "$parallel" = 1 ]; then
            run_sqlite & s=$!
            run_postgres & p=$!
            wait "$s" || status=1
            wait "$p" || status=1
        else
            run_sqlite || status=$?
            if [ "$status" = 0 ]; then run_postgres || status=$?; fi
        fi
        ;;
    *) echo "run.sh: --db is sqlite, postgres or both" >&2; exit 2 ;;
esac
echo "soak: finished in $(( $(date +%s) - start )) s, status $status" >&2
exit "$status"
