#!/usr/bin/env bash
# The device status table at scale (docs/dashboard.md "At scale", docs/query-plans.md "Device
# status table"): seeds N run states (default 1,000,000) of one script, each bound to its own device,
# plus three small scripts, on SQLite or PostgreSQL, starts the release server and times with curl
# the dashboard's script page for every sort × direction, each filter and searches matching
# many/few/no devices, and the API's equivalent deviceRunStates requests (second request of each).
#
#   bench/plans/status-table.sh sqlite|postgres [N]
#   BIN=/path/to/remediate KEEP=1 bench/plans/status-table.sh postgres
#
# Data (every value a hash of the row number i = 1..N):
#   devices: deviceName 'PC-' || 7 digits of (i*48271 mod 2^31-1) mod 10^7 (duplicates occur), NULL for
#   every 100,000th; userPrincipalName 'user<hash mod 10^6>@contoso.com'.
#   run states: detectionState 85% success, 10% fail, 2.5% scriptError, 2% pending, 0.5% notApplicable;
#   remediationState correlated (success: 80% skipped / 20% success; fail: 50% skipped / 40%
#   remediationFailed / 10% scriptError; else unknown); lastStateUpdateDateTime and lastSyncDateTime
#   independent hashes over 90 days; every 50,000th run state unbound (managedDeviceId NULL).
set -euo pipefail
cd "$(dirname "$0")/../.."
db="${1:?sqlite|postgres}"
n="${2:-1000000}"
bin="${BIN:-target/release/remediate}"
work="${WORK:-$(mktemp -d)}"
mkdir -p "$work"
echo "work directory: $work" >&2
pgdb="${PGDB:-status_table_$$}"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  if [ -z "${KEEP:-}" ]; then
    rm -rf "$work"
    [ "$db" = postgres ] && psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1
  fi
  true
}
trap cleanup EXIT
dbflag=()
if [ "$db" = postgres ]; then
  dbflag=(--database "postgres://postgres@127.0.0.1:5432/$pgdb")
fi

start_server() {
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" "${dbflag[@]}" > "$work/server.out" 2> "$work/server.err" &
  server=$!
  for _ in $(seq 1 600); do grep -q 'listening on' "$work/server.out" 2>/dev/null && break; sleep 0.1; done
  url="$(grep -o 'http://[0-9.:]*' "$work/server.out" | tail -1)"
}
stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; : > "$work/server.out"; }

start_server
token="$("$bin" token --data-dir "$work/data" --tenant bench \
  --scope DeviceManagementScripts.ReadWrite.All --scope DeviceManagementConfiguration.ReadWrite.All \
  --scope DeviceManagementManagedDevices.ReadWrite.All)"
h=(-s -H "Authorization: Bearer $token" -H "Content-Type: application/json")
scripts=()
for name in big small1 small2 small3; do
  scripts+=("$(curl "${h[@]}" -X POST "$url/beta/deviceManagement/deviceHealthScripts" \
    -d "{\"displayName\":\"$name\",\"detectionScriptContent\":\"ZXhpdCAx\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
done
big="${scripts[0]}"
stop_server

now=638975520000000000
seed_sql() { # $1: dialect
  local series pad hash
  if [ "$1" = sqlite ]; then
    series="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $n)"
    fmt() { echo "printf('$1', $2)"; }
  else
    series="WITH n(i) AS (SELECT generate_series(1::bigint, $n::bigint))"
    fmt() { case "$1" in
      '%07d') echo "lpad(($2)::text, 7, '0')";;
      dev) echo "lpad(to_hex($2), 8, '0') || '-0000-4000-8000-' || lpad(to_hex($2), 12, '0')";;
    esac; }
  fi
  local devid
  if [ "$1" = sqlite ]; then devid="printf('%08x-0000-4000-8000-%012x', i, i)"; else devid="$(fmt dev i)"; fi
  hash() { echo "((($1) * CAST($2 AS BIGINT)) % 2147483647)"; }
  cat <<SQL
INSERT INTO managed_devices ("tenant", "id", "userId", "userId_lc", "deviceName", "deviceName_lc",
  "managedDeviceOwnerType", "ownerType", "enrolledDateTime", "lastSyncDateTime", "operatingSystem",
  "operatingSystem_lc", "complianceState", "managementAgent", "osVersion", "osVersion_lc",
  "deviceEnrollmentType", "userPrincipalName", "userPrincipalName_lc", "emailAddress", "emailAddress_lc",
  "userDisplayName", "userDisplayName_lc", "model", "model_lc", "isEncrypted", "isSupervised",
  "totalStorageSpaceInBytes", "freeStorageSpaceInBytes", "physicalMemoryInBytes", "joinType", "roleScopeTagIds")
SELECT 'bench', id, 'u' || i, 'u' || i, name, lower(name), 1, 1, $now, $now, 'Windows', 'windows', 1, 2,
  '10.0.22631.4602', '10.0.22631.4602', 5, upn, lower(upn), upn, lower(upn), 'User ' || i, 'user ' || i,
  'Surface Laptop 5', 'surface laptop 5', 1, 0, 256000000000, 128000000000, 16000000000, 1, '["0"]'
FROM (SELECT i, $devid AS id,
        CASE WHEN i % 100000 = 0 THEN NULL ELSE 'PC-' || $(fmt '%07d' "$(hash i 48271) % 10000000") END AS name,
        'User' || ($(hash i 69069) % 1000000) || '@contoso.com' AS upn
      FROM ($series SELECT i FROM n) s0) s;
INSERT INTO device_run_states ("tenant", "scriptId", "managedDeviceId", "id", "detectionState",
  "lastStateUpdateDateTime", "expectedStateUpdateDateTime", "lastSyncDateTime",
  "preRemediationDetectionScriptOutput", "preRemediationDetectionScriptOutput_lc",
  "postRemediationDetectionScriptOutput", "postRemediationDetectionScriptOutput_lc",
  "remediationState", "assignmentFilterIds")
SELECT 'bench', '$big', did, CASE WHEN did IS NULL THEN '$big:unbound-' || i ELSE '$big:' || did END, det,
  $now - ($(hash i 1140671485) % 7776000) * 10000000, NULL, $now - ($(hash i 16807) % 7776000) * 10000000,
  'checked ' || i || ' items', 'checked ' || i || ' items', 'ok', 'ok',
  CASE WHEN det = 1 THEN (CASE WHEN r < 80 THEN 1 ELSE 2 END)
       WHEN det = 2 THEN (CASE WHEN r < 50 THEN 1 WHEN r < 90 THEN 3 ELSE 4 END) ELSE 0 END, '[]'
FROM (SELECT i, CASE WHEN i % 50000 = 0 THEN NULL ELSE $devid END AS did,
        CASE WHEN k < 850 THEN 1 WHEN k < 950 THEN 2 WHEN k < 975 THEN 3 WHEN k < 995 THEN 4 ELSE 5 END AS det,
        $(hash i 48271) % 100 AS r
      FROM (SELECT i, $(hash i 69621) % 1000 AS k FROM ($series SELECT i FROM n) s0) s1) s;
SQL
  for s in "${scripts[@]:1}"; do
    cat <<SQL
INSERT INTO device_run_states ("tenant", "scriptId", "managedDeviceId", "id", "detectionState",
  "lastStateUpdateDateTime", "lastSyncDateTime", "remediationState", "assignmentFilterIds")
SELECT 'bench', '$s', id, '$s:' || id, 1 + i % 3, $now - i * 10000000, $now - i * 10000000, i % 3, '[]'
FROM (SELECT i, $devid AS id FROM ($series SELECT i FROM n) s0 WHERE i <= 100) s;
SQL
  done
}

seed_start=$(date +%s)
if [ "$db" = sqlite ]; then
  seed_sql sqlite > "$work/seed.sql"
  python3 - "$work/data/remediate.db" "$work/seed.sql" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=OFF")
c.executescript(open(sys.argv[2]).read())
c.commit(); c.execute("ANALYZE"); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()
PY
else
  seed_sql postgres > "$work/seed.sql"
  psql -h 127.0.0.1 -U postgres -d "$pgdb" -v ON_ERROR_STOP=1 -q -f "$work/seed.sql"
  psql -h 127.0.0.1 -U postgres -d "$pgdb" -qc "VACUUM ANALYZE"
fi
"$bin" recount --data-dir "$work/data" "${dbflag[@]}" > /dev/null
echo "seeded $n run states in $(( $(date +%s) - seed_start )) s" >&2
echo "$big" > "$work/big"
echo "$token" > "$work/token"
bash "$(dirname "$0")/status-table-time.sh" "$work" "$bin" "${dbflag[@]}"
