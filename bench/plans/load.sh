#!/usr/bin/env bash
# Load a fresh SQLite file and a fresh PostgreSQL database with the remediate schema and a large,
# deterministic data set, then ANALYZE both. Used by explain.sh; see docs/query-plans.md.
#
#   bench/plans/load.sh            # both databases
#   ONLY=sqlite bench/plans/load.sh
#   ONLY=postgres bench/plans/load.sh
#
# Environment (defaults in brackets):
#   PLANS_DIR   scratch directory for the SQLite file and the Python venv [/tmp/remediate-plans]
#   PGHOST/PGPORT/PGUSER [127.0.0.1/5432/postgres], PGDATABASE_PLANS [remediate_plans]
#
# Data (identical on both databases: every value is an integer hash of the row number, no RNG):
#   tenant  T = 'c0ffee00-1111-4222-8333-444455556666'
#   10 scripts; script 0 ("big") has 900,000 run states, scripts 1..9 share 100,000 (11,111-11,112 each).
#   100,000 managed devices, deviceName 'PC-00000'..'PC-99999'.
#   Big script: states 1..100,000 are bound to devices 0..99,999 (id '{scriptId}:{deviceId}', as the
#   server forms it); states 100,001..900,000 are unbound (uuid ids, managedDeviceId NULL).
#   Small scripts: every state bound to a distinct device (devices 0..11,111).
#   detectionState: 85% success(1), 10% fail(2), 2.5% scriptError(3), 2% pending(4), 0.5% notApplicable(5).
#   remediationState correlated: success -> 80% skipped(1) / 20% success(2); fail -> 50% skipped /
#   40% remediationFailed(3) / 10% scriptError(4); others -> unknown(0).
#   lastStateUpdateDateTime: uniform over the 90 days before NOW (2025-11-01T00:00:00Z), 1 s resolution,
#   in ticks (100 ns since 0001-01-01); pending states never ran: 0 (0001-01-01, the server's default).
#   Output/error strings are short ASCII; every "_lc" column is lower(value).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PLANS_DIR="${PLANS_DIR:-/tmp/remediate-plans}"
SQLITE_DB="$PLANS_DIR/remediate.db"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
PGDB="${PGDATABASE_PLANS:-remediate_plans}"
ONLY="${ONLY:-}"

mkdir -p "$PLANS_DIR"
# shellcheck source=venv.sh
source "$HERE/venv.sh"   # sets $PY: a Python with apsw == the SQLite the server bundles (3.46.0)

TENANT='c0ffee00-1111-4222-8333-444455556666'
NOW=638975520000000000        # 2025-11-01T00:00:00Z in ticks
DAY=864000000000              # ticks per day
N_BIG=900000
N_ALL=1000000
N_DEV=100000
P=2147483647                  # 2^31-1 (prime): h(i, A) = (i * A) mod P is a bijection on 1..P-1

# ---- dialect helpers: print SQL expressions -------------------------------------------------
D=sqlite
h()   { echo "((($1) * CAST($2 AS BIGINT)) % $P)"; }          # hash of an integer expression (BIGINT: no int4 overflow on PG)
hex() { # hex DIGITS EXPR
  if [ "$D" = sqlite ]; then echo "printf('%0$1x', $2)"; else echo "lpad(to_hex($2), $1, '0')"; fi; }
pad() { # zero-padded decimal: pad DIGITS EXPR
  if [ "$D" = sqlite ]; then echo "printf('%0$1d', $2)"; else echo "lpad(($2)::text, $1, '0')"; fi; }
uuid() { # uuid EXPR SALT  -> a v4-shaped uuid, unique for EXPR in 0..P-2
  local x="(($1) + 1)" s=$2 a b c d e
  a=$(hex 8 "$(h "$x" $((1103515245 + s)))")
  b=$(hex 4 "$(h "$x" $((69069 + s))) % 65536")
  c=$(hex 3 "$(h "$x" $((48271 + s))) % 4096")
  d=$(hex 4 "32768 + $(h "$x" $((16807 + s))) % 16384")
  e=$(hex 12 "$(h "$x" $((1664525 + s))) * 131072 + $(h "$x" $((22695477 + s))) % 131072")
  echo "($a || '-' || $b || '-4' || $c || '-' || $d || '-' || $e)"; }
script_id() { uuid "$1" 7; }
device_id() { uuid "$1" 13; }
state_uuid() { uuid "$1" 29; }

gen_sql() { # print the data-loading SQL for dialect $D
  local series
  if [ "$D" = sqlite ]; then
    series() { echo "WITH RECURSIVE n(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)"; }
  else
    series() { echo "WITH n(i) AS (SELECT generate_series($1::bigint, $2::bigint))"; }
  fi
  cat <<SQL
INSERT INTO "device_health_scripts" ("tenant", "id", "publisher", "publisher_lc", "version", "version_lc",
  "displayName", "displayName_lc", "description", "description_lc", "detectionScriptContent",
  "remediationScriptContent", "createdDateTime", "lastModifiedDateTime", "runAsAccount", "enforceSignatureCheck",
  "runAs32Bit", "roleScopeTagIds", "isGlobalScript", "highestAvailableVersion", "highestAvailableVersion_lc",
  "deviceHealthScriptType", "detectionScriptParameters", "remediationScriptParameters")
$(series 0 9)
SELECT '$TENANT', $(script_id i), 'Contoso IT', 'contoso it', '1', '1',
  'Remediation ' || i, 'remediation ' || i, 'Checks and fixes item ' || i, 'checks and fixes item ' || i,
  NULL, NULL, $NOW - 200 * $DAY + i * $DAY, $NOW - 100 * $DAY + i * $DAY, 0, 0, 0, '["0"]', 0, NULL, NULL, 0, '[]', '[]'
FROM n;

INSERT INTO "managed_devices" ("tenant", "id", "userId", "userId_lc", "deviceName", "deviceName_lc",
  "managedDeviceName", "managedDeviceName_lc", "managedDeviceOwnerType", "ownerType", "enrolledDateTime",
  "lastSyncDateTime", "operatingSystem", "operatingSystem_lc", "complianceState", "managementAgent", "osVersion",
  "osVersion_lc", "azureADDeviceId", "azureADDeviceId_lc", "deviceEnrollmentType", "emailAddress", "emailAddress_lc",
  "model", "model_lc", "manufacturer", "manufacturer_lc", "serialNumber", "serialNumber_lc", "userPrincipalName",
  "userPrincipalName_lc", "userDisplayName", "userDisplayName_lc", "isEncrypted", "isSupervised",
  "totalStorageSpaceInBytes", "freeStorageSpaceInBytes", "physicalMemoryInBytes", "joinType", "roleScopeTagIds")
SELECT '$TENANT', id, uid, lower(uid), name, lower(name), 'user' || j || '_Windows', lower('user' || j || '_Windows'),
  1, 1, $NOW - 400 * $DAY + j * 3000000000, $NOW - (j % 86400) * 10000000, 'Windows', 'windows',
  CASE WHEN j % 20 = 0 THEN 2 ELSE 1 END, 4, '10.0.22631.' || (4000 + j % 500), '10.0.22631.' || (4000 + j % 500),
  aad, lower(aad), 5, 'user' || j || '@contoso.com', 'user' || j || '@contoso.com',
  CASE j % 3 WHEN 0 THEN 'Latitude 7440' WHEN 1 THEN 'EliteBook 840 G10' ELSE 'ThinkPad T14' END,
  CASE j % 3 WHEN 0 THEN 'latitude 7440' WHEN 1 THEN 'elitebook 840 g10' ELSE 'thinkpad t14' END,
  CASE j % 3 WHEN 0 THEN 'Dell Inc.' WHEN 1 THEN 'HP' ELSE 'LENOVO' END,
  CASE j % 3 WHEN 0 THEN 'dell inc.' WHEN 1 THEN 'hp' ELSE 'lenovo' END,
  'SN' || $(pad 8 j), 'sn' || $(pad 8 j), 'user' || j || '@contoso.com', 'user' || j || '@contoso.com',
  'User ' || j, 'user ' || j, 1, 0, 512110190592, 200000000000 + j * 1000, 17179869184, 1, '["0"]'
FROM (SELECT j, $(device_id j) AS id, $(uuid j 41) AS uid, $(uuid j 53) AS aad, 'PC-' || $(pad 5 j) AS name
      FROM (SELECT i AS j FROM ($(series 0 $((N_DEV - 1))) SELECT i FROM n) s0) s1) s;

INSERT INTO "device_run_states" ("tenant", "scriptId", "managedDeviceId", "id", "detectionState",
  "lastStateUpdateDateTime", "expectedStateUpdateDateTime", "lastSyncDateTime",
  "preRemediationDetectionScriptOutput", "preRemediationDetectionScriptOutput_lc",
  "preRemediationDetectionScriptError", "preRemediationDetectionScriptError_lc",
  "remediationScriptError", "remediationScriptError_lc",
  "postRemediationDetectionScriptOutput", "postRemediationDetectionScriptOutput_lc",
  "postRemediationDetectionScriptError", "postRemediationDetectionScriptError_lc",
  "remediationState", "assignmentFilterIds")
SELECT '$TENANT', sid, did, CASE WHEN did IS NULL THEN $(state_uuid i) ELSE sid || ':' || did END, det, t,
  NULL, CASE WHEN t = 0 THEN 0 ELSE t + 300000000 END,
  pre_out, lower(pre_out), pre_err, lower(pre_err), rem_err, lower(rem_err), post_out, lower(post_out), NULL, NULL,
  rem, '[]'
FROM (
  SELECT i, sid, did, det, rem,
    CASE WHEN det = 4 THEN 0 ELSE $NOW - ($(h i 1140671485) % 7776000) * 10000000 - 10000000 END AS t,
    CASE det WHEN 1 THEN 'Compliant' WHEN 2 THEN 'Issue detected: Service Spooler stopped' WHEN 5 THEN 'Not applicable'
      ELSE NULL END AS pre_out,
    CASE WHEN det = 3 THEN 'Exit code 1: Access is denied' ELSE NULL END AS pre_err,
    CASE WHEN rem = 4 THEN 'Exit code 5: Restart-Service failed' ELSE NULL END AS rem_err,
    CASE WHEN rem = 2 THEN 'Compliant after remediation' WHEN rem = 3 THEN 'Issue still present' ELSE NULL END
      AS post_out
  FROM (
    SELECT i, sid, did, det,
      CASE WHEN det = 1 THEN (CASE WHEN r2 < 80 THEN 1 ELSE 2 END)
           WHEN det = 2 THEN (CASE WHEN r2 < 50 THEN 1 WHEN r2 < 90 THEN 3 ELSE 4 END)
           ELSE 0 END AS rem
    FROM (
      SELECT i, sid, did,
        CASE WHEN r1 < 850 THEN 1 WHEN r1 < 950 THEN 2 WHEN r1 < 975 THEN 3 WHEN r1 < 995 THEN 4 ELSE 5 END AS det,
        $(h i 1664525) % 100 AS r2
      FROM (
        SELECT i,
          CASE WHEN i <= $N_BIG THEN $(script_id 0) ELSE $(script_id "1 + (i - $N_BIG - 1) % 9") END AS sid,
          CASE WHEN i <= $N_DEV THEN $(device_id "i - 1")
               WHEN i > $N_BIG THEN $(device_id "(i - $N_BIG - 1) / 9")
               ELSE NULL END AS did,
          $(h i 1103515245) % 1000 AS r1
        FROM ($(series 1 $N_ALL) SELECT i FROM n) s0
      ) s1
    ) s2
  ) s3
) s4;
SQL
}

load_sqlite() {
  D=sqlite
  rm -f "$SQLITE_DB" "$SQLITE_DB-wal" "$SQLITE_DB-shm"
  local start=$SECONDS
  gen_sql > "$PLANS_DIR/load-sqlite.sql"
  "$PY" - "$SQLITE_DB" "$REPO/crates/store/migrations/sqlite/0001_initial.sql" "$PLANS_DIR/load-sqlite.sql" <<'PY'
import sys, time, apsw
db, schema, data = sys.argv[1:4]
c = apsw.Connection(db)
c.execute("PRAGMA journal_mode = WAL")            # as the server opens it
c.execute("PRAGMA synchronous = OFF")             # load only
c.execute("PRAGMA cache_size = -1000000")         # 1 GB for the load
c.execute("BEGIN")
c.execute(open(schema).read())                    # the server's migration, verbatim
t = time.time(); c.execute(open(data).read()); c.execute("COMMIT")
print(f"sqlite: rows loaded in {time.time() - t:.1f}s", flush=True)
t = time.time(); c.execute("ANALYZE"); print(f"sqlite: ANALYZE {time.time() - t:.1f}s")
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
for table in ("device_health_scripts", "managed_devices", "device_run_states"):
    print(f"sqlite: {table}: {c.execute(f'SELECT COUNT(*) FROM {table}').fetchall()[0][0]} rows")
PY
  echo "sqlite: $SQLITE_DB ($(du -h "$SQLITE_DB" | cut -f1)) in $((SECONDS - start))s"
}

load_postgres() {
  D=postgres
  local start=$SECONDS
  psql -q -d postgres -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$PGDB\"" -c "CREATE DATABASE \"$PGDB\""
  gen_sql > "$PLANS_DIR/load-postgres.sql"
  psql -q -d "$PGDB" -v ON_ERROR_STOP=1 -1 -f "$REPO/crates/store/migrations/postgres/0001_initial.sql"
  psql -q -d "$PGDB" -v ON_ERROR_STOP=1 <<SQL
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
\timing on
BEGIN;
\i $PLANS_DIR/load-postgres.sql
COMMIT;
-- autovacuum may be off (it is on this machine): set the visibility map and statistics explicitly.
VACUUM (ANALYZE);
SQL
  psql -At -d "$PGDB" -c "SELECT 'postgres: ' || relname || ': ' || n_live_tup || ' rows' FROM pg_stat_user_tables
    WHERE relname IN ('device_health_scripts','managed_devices','device_run_states') ORDER BY relname"
  echo "postgres: database $PGDB ($(psql -At -d "$PGDB" -c "SELECT pg_size_pretty(pg_database_size('$PGDB'))")) in $((SECONDS - start))s"
}

[ "$ONLY" = postgres ] || load_sqlite
[ "$ONLY" = sqlite ] || load_postgres
