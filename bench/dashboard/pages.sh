#!/usr/bin/env bash
# Dashboard pages at scale (issue 15; docs/benchmarks.md, "Dashboard at scale"): for each database
# and each size N, seeds one tenant with 25 scripts, one of them ("big") with N run states bound to
# N managed devices and N run-history records over 89 days, the 24 others with 200 run states each;
# then times every dashboard page variant (and the API's device-status queries) on the release
# server: curl's time_total, the median of 5 requests after one warm-up, and the bytes downloaded.
#
#   bench/dashboard/pages.sh [--sizes 100,1000000] [--db sqlite|postgres|both] [--runs 5]
#                            [--slow-ms 2000] [--reuse DIR] [--keep-going] [--out FILE]
#
#   --sizes      comma-separated run-state counts of the big script (default 100,1000000)
#   --db         which database(s) (default both). PostgreSQL: 127.0.0.1:5432, user postgres, trust
#                auth (PGHOST/PGPORT/PGUSER override); a fresh database remediate_dash_<N>_<pid> each.
#   --runs       timed requests per variant after the warm-up (default 5; the median is reported)
#   --slow-ms    a variant whose warm-up takes longer than this is timed once only (default 2000)
#   --reuse DIR  work in DIR and skip seeding every (database, N) DIR already holds seeded (its
#                PostgreSQL databases are named in DIR/postgres-N/database); implies KEEP=1. When the
#                binary is newer than the seed, the server is started once (migrations) and
#                `remediate recount` rebuilds the derived tables before measuring.
#   --keep-going a non-200 answer is printed and recorded (flagged FAIL) instead of stopping the run;
#                the script still exits 1 at the end
#   --out FILE   the JSON results (default bench/results/dashboard-<UTC date>[-<db>].json)
#   KEEP=1       keep the work directory (and the PostgreSQL databases) and print where they are
#   CHECK=1      also run `remediate recount --check` after seeding (as long again as the recount)
#
# Needs: the release binary (built here), python3, curl, psql for PostgreSQL.
set -euo pipefail
{ # the whole script is one compound command: bash reads it entirely before running it, so editing
  # this file while a run is under way does not change that run.
cd "$(dirname "$0")/../.."
REPO="$PWD"

sizes="100,1000000"
dbs="both"
runs=5
slow_ms=2000
reuse=""
keep_going=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes="$2"; shift 2 ;;
    --db) dbs="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --slow-ms) slow_ms="$2"; shift 2 ;;
    --reuse) reuse="$2"; shift 2 ;;
    --keep-going) keep_going=1; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$dbs" in
  both) dbs="sqlite postgres" ;;
  sqlite|postgres) ;;
  *) echo "--db must be sqlite, postgres or both" >&2; exit 2 ;;
esac
IFS=, read -r -a size_list <<< "$sizes"
for n in "${size_list[@]}"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "--sizes: '$n' is not a positive integer" >&2; exit 2; }
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive integer" >&2; exit 2; }
[[ "$slow_ms" =~ ^[0-9]+$ ]] || { echo "--slow-ms must be a number of milliseconds" >&2; exit 2; }
suffix=""; [ "$dbs" = "sqlite postgres" ] || suffix="-$dbs"   # separate runs of each database keep both files
out="${out:-bench/results/dashboard-$(date -u +%Y-%m-%d)$suffix.json}"

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
TENANT='5e7a1c9d-2b40-4f6e-9a31-0c8d7e6f5a42'
SMALL=200            # run states of each of the 24 other scripts
SCRIPTS=25
P=2147483647         # 2^31-1 (prime): h(i, A) = (i * A) mod P mixes an integer without an RNG

echo "building the release binary…"
cargo build --release -q -p remediate
bin="$REPO/target/release/remediate"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain --untracked-files=no 2>/dev/null | grep -c . || true)"
binary="$(sha256sum "$bin" | cut -c1-12) $(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ)"   # the tree is shared: which build ran

if [ -n "$reuse" ]; then
  mkdir -p "$reuse"; work="$(cd "$reuse" && pwd)"; KEEP=1
else
  work="$(mktemp -d /tmp/remediate-dash.XXXXXX)"
fi
server=""
created_dbs=()
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  local rc=$?
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  if [ -n "${KEEP:-}" ]; then
    echo "work directory kept: $work"
    [ ${#created_dbs[@]} -eq 0 ] || echo "PostgreSQL databases kept: ${created_dbs[*]}"
  else
    for d in "${created_dbs[@]}"; do
      psql -q -d postgres -c "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

results="$work/results.tsv"      # db, N, kind, variant, median ms, bytes, status, note, all ms
: > "$results"
seeding="$work/seeding.tsv"      # db, N, seconds (or "reused"), database size, seconds of SQL
: > "$seeding"
loads="$work/load.tsv"           # db, N, 1-minute load average before and after the measurements
: > "$loads"

# ---- server --------------------------------------------------------------------------------------
db_args=()   # set per (database, N): --data-dir DIR [--database URL]
start_server() {
  local log="$1"
  "$bin" serve --listen 127.0.0.1:0 "${db_args[@]}" > "$log.out" 2> "$log.err" &
  server=$!
  for _ in $(seq 1 600); do
    grep -q 'listening on' "$log.out" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { echo "the server exited:" >&2; cat "$log.err" >&2; exit 1; }
    sleep 0.1
  done
  url="$(grep -o 'http://[0-9.:]*' "$log.out" | tail -1)"
  [ -n "$url" ] || { echo "the server did not start in 60 s:" >&2; cat "$log.err" >&2; exit 1; }
}
stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }

api_token() {
  "$bin" token "${db_args[@]:0:2}" --tenant "$TENANT" --expires-in 12h \
    --scope DeviceManagementScripts.ReadWrite.All --scope DeviceManagementConfiguration.ReadWrite.All \
    --scope DeviceManagementManagedDevices.Read.All --scope Group.ReadWrite.All --scope GroupMember.Read.All
}

# POST JSON to the API; print the answer's "id" (fails loudly on anything but 200/201).
api_post() {
  local path="$1" body="$2" reply code
  reply="$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -X POST "$url/beta/$path" -d "$body")"
  code="${reply##*$'\n'}"; reply="${reply%$'\n'*}"
  case "$code" in 200|201|204) ;; *) echo "POST /beta/$path answered $code: $reply" >&2; exit 1 ;; esac
  python3 -c 'import json,sys; t=sys.stdin.read(); print(json.loads(t).get("id","") if t.strip() else "")' <<< "$reply"
}

# ---- seeding SQL (one text for both dialects; D = sqlite | postgres) -----------------------------
D=sqlite
h() { echo "((($1) * CAST($2 AS BIGINT)) % $P)"; }
pad() { if [ "$D" = sqlite ]; then echo "printf('%0$1d', $2)"; else echo "lpad(($2)::text, $1, '0')"; fi; }
hex() { if [ "$D" = sqlite ]; then echo "printf('%0$1x', $2)"; else echo "lpad(to_hex($2), $1, '0')"; fi; }
series() { # a subquery of one column i = $1..$2
  if [ "$D" = sqlite ]; then
    echo "(WITH RECURSIVE n(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) SELECT i FROM n)"
  else
    echo "(SELECT generate_series($1::bigint, $2::bigint) AS i)"
  fi
}
# A device's id from its number j: random-looking first 8 hex digits, unique by the last 12.
device_id() { echo "($(hex 8 "$(h "$1" 1103515245)") || '-7d2e-4c1a-9b3f-' || $(hex 12 "$1"))"; }

# Run states: INSERT … SELECT from a source of (i: hash input, sid: script id, j: device number).
states_sql() {
  cat <<SQL
INSERT INTO "device_run_states" ("tenant", "scriptId", "managedDeviceId", "id", "detectionState",
  "lastStateUpdateDateTime", "expectedStateUpdateDateTime", "lastSyncDateTime",
  "preRemediationDetectionScriptOutput", "preRemediationDetectionScriptOutput_lc",
  "preRemediationDetectionScriptError", "preRemediationDetectionScriptError_lc",
  "remediationScriptError", "remediationScriptError_lc",
  "postRemediationDetectionScriptOutput", "postRemediationDetectionScriptOutput_lc",
  "postRemediationDetectionScriptError", "postRemediationDetectionScriptError_lc",
  "remediationState", "assignmentFilterIds")
SELECT '$TENANT', sid, did, sid || ':' || did, det, t, NULL, sync,
  pre_out, lower(pre_out), pre_err, lower(pre_err), rem_err, lower(rem_err), post_out, lower(post_out),
  NULL, NULL, rem, '[]'
FROM (
  SELECT sid, did, det, rem, t, CASE WHEN det = 4 THEN 0 ELSE t + sync_lag END AS sync,
    CASE det WHEN 1 THEN 'Compliant: Spooler running, ' || $(h i 22695477) % 900 || ' jobs queued'
             WHEN 2 THEN 'Issue detected: service Spooler stopped (exit 1)'
             WHEN 5 THEN 'Not applicable: no printer installed' ELSE NULL END AS pre_out,
    CASE WHEN det = 3 THEN 'Exit code 1: Access is denied. (0x80070005)' ELSE NULL END AS pre_err,
    CASE WHEN rem = 4 THEN 'Exit code 5: Restart-Service failed: "Spooler" cannot be started' ELSE NULL END AS rem_err,
    CASE WHEN rem = 2 THEN 'Compliant after remediation: Spooler running'
         WHEN rem = 3 THEN 'Issue still present: Spooler stopped' ELSE NULL END AS post_out
  FROM (
    SELECT i, sid, did, det,
      CASE WHEN det = 1 THEN (CASE WHEN r2 < 80 THEN 1 ELSE 2 END)
           WHEN det = 2 THEN (CASE WHEN r2 < 50 THEN 1 WHEN r2 < 90 THEN 3 ELSE 4 END)
           ELSE 0 END AS rem,
      CASE WHEN det = 4 THEN 0 ELSE $NOW - ($(h i 1140671485) % 7776000) * 10000000 - 10000000 END AS t,
      ($(h i 69069) % 86400) * 10000000 AS sync_lag
    FROM (
      SELECT i, sid, $(device_id j) AS did,
        CASE WHEN r1 < 850 THEN 1 WHEN r1 < 950 THEN 2 WHEN r1 < 975 THEN 3 WHEN r1 < 995 THEN 4 ELSE 5 END AS det,
        $(h i 1664525) % 100 AS r2
      FROM (SELECT i, sid, j, $(h i 1103515245) % 1000 AS r1 FROM ($1) src0) src1
    ) a
  ) b
) c;
SQL
}

gen_sql() { # $1 N, $2 big script id, $3 "id id …" of the 24 other scripts
  local n="$1" big="$2" devices values="" k=0 s
  devices=$(( n > SMALL ? n : SMALL ))
  for s in $3; do k=$((k + 1)); values="$values${values:+, }($k, '$s')"; done
  cat <<SQL
INSERT INTO "managed_devices" ("tenant", "id", "userId", "userId_lc", "deviceName", "deviceName_lc",
  "managedDeviceName", "managedDeviceName_lc", "managedDeviceOwnerType", "ownerType", "enrolledDateTime",
  "lastSyncDateTime", "operatingSystem", "operatingSystem_lc", "complianceState", "managementAgent", "osVersion",
  "osVersion_lc", "azureADDeviceId", "azureADDeviceId_lc", "deviceEnrollmentType", "emailAddress", "emailAddress_lc",
  "model", "model_lc", "manufacturer", "manufacturer_lc", "serialNumber", "serialNumber_lc", "userPrincipalName",
  "userPrincipalName_lc", "userDisplayName", "userDisplayName_lc", "isEncrypted", "isSupervised",
  "totalStorageSpaceInBytes", "freeStorageSpaceInBytes", "physicalMemoryInBytes", "joinType", "roleScopeTagIds")
SELECT '$TENANT', id, uid, uid, name, lower(name), upn || '_Windows', lower(upn) || '_windows',
  1, 1, $NOW - 400 * $DAY + j * 3000000, $NOW - ($(h j 48271) % 604800) * 10000000, 'Windows', 'windows',
  CASE WHEN j % 20 = 0 THEN 2 ELSE 1 END, 1, '10.0.22631.' || (4000 + j % 500), '10.0.22631.' || (4000 + j % 500),
  aad, aad, 5, upn, lower(upn),
  CASE j % 3 WHEN 0 THEN 'Latitude 7440' WHEN 1 THEN 'EliteBook 840 G10' ELSE 'ThinkPad T14 Gen 4' END,
  CASE j % 3 WHEN 0 THEN 'latitude 7440' WHEN 1 THEN 'elitebook 840 g10' ELSE 'thinkpad t14 gen 4' END,
  CASE j % 3 WHEN 0 THEN 'Dell Inc.' WHEN 1 THEN 'HP' ELSE 'LENOVO' END,
  CASE j % 3 WHEN 0 THEN 'dell inc.' WHEN 1 THEN 'hp' ELSE 'lenovo' END,
  'SN' || $(pad 8 j), 'sn' || $(pad 8 j), upn, lower(upn), 'User ' || u, 'user ' || u,
  1, 0, 512110190592, 200000000000 + j * 1000, 17179869184, 1, '["0"]'
FROM (SELECT j, u, $(device_id j) AS id, $(device_id "j + 2000000000") AS uid,
        $(device_id "j + 1000000000") AS aad, 'PC-' || $(pad 7 j) AS name, 'user' || u || '@contoso.com' AS upn
      FROM (SELECT i AS j, 1 + $(h i 16807) % ($devices * 9 / 10 + 1) AS u FROM $(series 1 "$devices") s0) s1) s;

$(states_sql "SELECT i, '$big' AS sid, i AS j FROM $(series 1 "$n") s")

$(states_sql "SELECT k * 1000003 + m.i AS i, sid, m.i AS j FROM $(series 1 "$SMALL") m, (SELECT column1 AS k, column2 AS sid FROM (VALUES $values) v) s")

INSERT INTO "run_history" ("tenant", "scriptId", "stateId", "id", "recordedDateTime", "managedDeviceId",
  "managedDeviceId_lc", "detectionState", "remediationState", "lastStateUpdateDateTime",
  "preRemediationDetectionScriptOutput", "preRemediationDetectionScriptOutput_lc",
  "remediationScriptError", "remediationScriptError_lc",
  "postRemediationDetectionScriptOutput", "postRemediationDetectionScriptOutput_lc")
SELECT '$TENANT', '$big', '$big' || ':' || did, $(pad 20 rec) || '-' || $(hex 8 "$(h k 48271)"), rec, did, did,
  det, rem, rec - 6000000000,
  CASE WHEN det = 2 THEN 'Issue detected: service Spooler stopped (exit 1)' ELSE 'Compliant' END,
  CASE WHEN det = 2 THEN 'issue detected: service spooler stopped (exit 1)' ELSE 'compliant' END,
  CASE WHEN rem = 4 THEN 'Exit code 5: Restart-Service failed' ELSE NULL END,
  CASE WHEN rem = 4 THEN 'exit code 5: restart-service failed' ELSE NULL END,
  CASE WHEN rem = 2 THEN 'Compliant after remediation' ELSE NULL END,
  CASE WHEN rem = 2 THEN 'compliant after remediation' ELSE NULL END
FROM (
  SELECT k, did, rec, det,
    CASE WHEN det = 1 THEN (CASE WHEN r2 < 80 THEN 1 ELSE 2 END)
         WHEN det = 2 THEN (CASE WHEN r2 < 50 THEN 1 WHEN r2 < 90 THEN 3 ELSE 4 END) ELSE 0 END AS rem
  FROM (
    SELECT k, $(device_id "1 + (k - 1) % $n") AS did,
      $NOW - ($(h k 1140671485) % (89 * 86400)) * 10000000 - 10000000 AS rec,
      CASE WHEN $(h k 22695477) % 1000 < 850 THEN 1 WHEN $(h k 22695477) % 1000 < 975 THEN 2 ELSE 3 END AS det,
      $(h k 69069) % 100 AS r2
    FROM (SELECT i AS k FROM $(series 1 "$n") s0) s1
  ) a
) b;
SQL
}

# ---- one (database, N): schema, scripts and groups through the API, rows with SQL, recount --------
seed() { # $1 db, $2 N, $3 dir
  local db="$1" n="$2" dir="$3" t0 big="" others="" i size
  local names=("Restart Print Spooler" "Clear Teams cache" "BitLocker recovery key escrow" "Windows Update health"
    "Disk cleanup (temp files)" "Defender signature age" "Time sync drift" "OneDrive known folders"
    "Stale user profiles" "Edge update channel" "Local admin members" "Firewall profile on"
    "Office click-to-run repair" "VPN client service" "Power plan" "DNS client cache"
    "Windows Hello prerequisites" "Certificate expiry" "Chrome extensions allowlist" "SMBv1 disabled"
    "Proxy auto-config" "Zoom auto-update" "Free disk space" "Pending reboot" "Intune agent health")
  echo "== $db N=$n: creating the schema and the scripts through the API"
  start_server "$dir/setup"
  token="$(api_token)"
  local detect remedy
  # shellcheck disable=SC2016  # PowerShell and OData text, not shell
  detect="$(printf '%s\n' '$s = Get-Service -Name Spooler' 'if ($s.Status -ne "Running") { Write-Output "Issue detected"; exit 1 }' 'Write-Output "Compliant"; exit 0' | base64 -w0)"
  remedy="$(printf '%s\n' 'Restart-Service -Name Spooler -Force' 'Write-Output "Restarted"' | base64 -w0)"
  local groups=() g
  for g in "All laptops" "Pilot ring" "Finance devices"; do
    groups+=("$(api_post groups "{\"displayName\":\"$g\",\"mailEnabled\":false,\"mailNickname\":\"${g// /-}\",\"securityEnabled\":true,\"description\":\"Benchmark group\"}")")
  done
  for i in $(seq 0 $((SCRIPTS - 1))); do
    local id
    id="$(api_post deviceManagement/deviceHealthScripts "{\"displayName\":\"${names[$i]}\",\"publisher\":\"$( [ $((i % 3)) = 0 ] && echo 'Contoso IT' || echo 'Workplace team')\",\"description\":\"Detects and fixes: ${names[$i]}\",\"detectionScriptContent\":\"$detect\",\"remediationScriptContent\":\"$remedy\",\"runAsAccount\":\"system\"}")"
    api_post "deviceManagement/deviceHealthScripts/$id/assign" "{\"deviceHealthScriptAssignments\":[{\"target\":{\"@odata.type\":\"#microsoft.graph.groupAssignmentTarget\",\"groupId\":\"${groups[$((i % 3))]}\"},\"runRemediationScript\":true,\"runSchedule\":{\"@odata.type\":\"#microsoft.graph.deviceHealthScriptDailySchedule\",\"interval\":1,\"time\":\"09:00:00.0000000\",\"useUtc\":false}}]}" > /dev/null
    if [ "$i" = 0 ]; then big="$id"; else others="$others $id"; fi
  done
  stop_server
  echo "$big" > "$dir/big"

  echo "== $db N=$n: seeding with SQL"
  t0=$(date +%s.%N)
  NOW=$(( ($(date +%s) + 62135596800) * 10000000 )); DAY=864000000000
  D="$db"
  gen_sql "$n" "$big" "$others" > "$dir/seed.sql"
  if [ "$db" = sqlite ]; then
    python3 - "$dir/data/remediate.db" "$dir/seed.sql" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=OFF")
c.execute("PRAGMA cache_size=-1000000")
c.executescript(open(sys.argv[2]).read())
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.close()
EOF
  else
    psql -q -d "$(cat "$dir/database")" -v ON_ERROR_STOP=1 -c "SET synchronous_commit = off" -1 -f "$dir/seed.sql"
    # Autovacuum would do this soon after such a load; do it now so every run measures the same plans.
    psql -q -d "$(cat "$dir/database")" -v ON_ERROR_STOP=1 -c "VACUUM (ANALYZE)"
  fi
  local t1; t1=$(date +%s.%N)
  "$bin" recount "${db_args[@]}" > "$dir/recount.out"
  if [ -n "${CHECK:-}" ]; then   # as long again as the recount: only on request
    "$bin" recount --check "${db_args[@]}" > "$dir/recount-check.out" \
      || { echo "recount --check found differences after recount:" >&2; cat "$dir/recount-check.out" >&2; exit 1; }
  fi
  if [ "$db" = sqlite ]; then size="$(du -sh "$dir/data/remediate.db" | cut -f1)"
  else size="$(psql -At -d "$(cat "$dir/database")" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")"; fi
  local secs sql_secs; secs="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')"
  sql_secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }')"
  printf '%s\t%s\t%s\t%s\t%s\n' "$db" "$n" "$secs" "$size" "$sql_secs" >> "$seeding"
  echo "== $db N=$n: seeded in $secs s (SQL $sql_secs s, recount $((secs - sql_secs)) s); database $size"
  touch "$dir/seeded"
}

# ---- timing --------------------------------------------------------------------------------------
failed=0
# measure KIND VARIANT URL [curl args…]: warm-up + $runs timed requests; one line into $results.
measure() {
  local kind="$1" variant="$2" target="$3"; shift 3
  local times=() code t size line note="" status=ok r note_slow=""
  local want="$runs"
  for r in $(seq 0 "$runs"); do
    [ "$r" -le "$want" ] || break
    line="$(curl -s --max-time 120 -o "$work/body" -w '%{http_code} %{time_total} %{size_download}' "$@" "$target")" || line="000 0 0"
    read -r code t size <<< "$line"
    if [ "$code" != 200 ]; then
      echo "!! $db N=$n $kind '$variant': HTTP $code after $(awk -v t="$t" 'BEGIN { printf "%.0f", t * 1000 }') ms for $target" >&2
      head -c 3000 "$work/body" >&2 2>/dev/null || true; echo >&2
      [ -n "$keep_going" ] || exit 1
      status="HTTP $code after $(awk -v t="$t" 'BEGIN { printf "%.0f", t * 1000 }') ms"; failed=1; times=(); break
    fi
    # A variant whose warm-up takes longer than --slow-ms is timed once only (it is over the limit
    # anyway; five more requests of seconds each would only make the run long).
    if [ "$r" = 0 ] && awk -v t="$t" -v s="$slow_ms" 'BEGIN { exit !(t * 1000 > s) }'; then
      want=1; note_slow="timed once (warm-up $(awk -v t="$t" 'BEGIN { printf "%.0f", t * 1000 }') ms)"
    fi
    [ "$r" = 0 ] || times+=("$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }')")
  done
  local median="" all=""
  if [ ${#times[@]} -gt 0 ]; then
    median="$(printf '%s\n' "${times[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
    all="$(IFS=,; echo "${times[*]}")"
  fi
  if [ "$kind" = page ] && [ "$status" = ok ]; then
    # The sort the page applied (the header with aria-sort) and its pager line, for the notes.
    local applied pager
    applied="$(grep -o 'aria-sort="[a-z]*"><a href="[^"]*">[^<]*</a>' "$work/body" | head -1 | sed 's/.*">\([^<]*\)<\/a>$/\1/' || true)"
    pager="$(grep -o '<p>Devices [^<]*</p>\|<p>No devices match.</p>' "$work/body" | head -1 | sed 's/<[^>]*>//g' || true)"
    note="${applied:+sorted by $applied}${applied:+${pager:+; }}$pager"
  elif [ "$kind" = api ] && [ "$status" = ok ]; then
    note="$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("%d rows" % len(d.get("value", [])) + (", count %s" % d["@odata.count"] if "@odata.count" in d else ""))' "$work/body")"
  fi
  [ -z "$note_slow" ] || note="${note:+$note; }$note_slow"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$db" "$n" "$kind" "$variant" "$median" "$size" "$status" "$note" "$all" >> "$results"
  printf '  %-5s %-44s %8s ms %9s B  %s\n' "$kind" "$variant" "${median:-—}" "$size" "${note:-$status}"
}
page() { measure page "$1" "$url$2" -b "$work/cookies"; }
api() { measure api "$1" "$url$2" -H "Authorization: Bearer $token"; }

unescape() { sed 's/&amp;/\&/g; s/&quot;/"/g; s/&#39;/'"'"'/g; s/&lt;/</g; s/&gt;/>/g'; }
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

measure_all() { # $1 db, $2 N, $3 dir
  local big device
  big="$(cat "$3/big")"
  echo "== $db N=$n: measuring"
  start_server "$3/measure"
  token="$(api_token)"
  local link code
  link="$("$bin" login-link "${db_args[@]}" --tenant "$TENANT" --public-url "$url" \
    --scope DeviceManagementScripts.Read.All --scope DeviceManagementManagedDevices.Read.All \
    --scope DeviceManagementConfiguration.Read.All --scope Group.Read.All --scope GroupMember.Read.All | tail -1)"
  code="$(curl -s -c "$work/cookies" -o "$work/body" -w '%{http_code}' "$link")"
  [ "$code" = 303 ] || { echo "the login link answered $code, not 303:" >&2; cat "$work/body" >&2; exit 1; }
  grep -q remediate_session "$work/cookies" || { echo "the login link set no session cookie" >&2; exit 1; }
  if [ "$db" = sqlite ]; then
    device="$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT id FROM managed_devices WHERE deviceName = ?", ("PC-0000001",)).fetchone()[0])' "$3/data/remediate.db")"
  else
    device="$(psql -At -d "$(cat "$3/database")" -c "SELECT id FROM managed_devices WHERE \"deviceName\" = 'PC-0000001'")"
  fi

  local load0; load0="$(cut -d' ' -f1 /proc/loadavg)"
  page "overview" "/"
  local s d
  for s in name publisher modified; do for d in asc desc; do page "overview sort=$s dir=$d" "/?sort=$s&dir=$d"; done; done
  page "script (default)" "/scripts/$big"
  for s in device user detection remediation updated synced; do
    for d in asc desc; do page "script sort=$s dir=$d" "/scripts/$big?sort=$s&dir=$d"; done
  done
  page "script detection=fail" "/scripts/$big?detection=fail"
  page "script remediation=remediationFailed" "/scripts/$big?remediation=remediationFailed"
  page "script detection=fail remediation=remediationFailed" "/scripts/$big?detection=fail&remediation=remediationFailed"
  page "script detection=fail remediation=scriptError sort=device" "/scripts/$big?detection=fail&remediation=scriptError&sort=device"
  page "script detection=success (common)" "/scripts/$big?detection=success"
  page "script remediation=skipped (common)" "/scripts/$big?remediation=skipped"
  page "script q=PC-0 (many)" "/scripts/$big?q=PC-0"
  page "script q=PC-0000042 (one)" "/scripts/$big?q=PC-0000042"
  page "script q=zzz (none)" "/scripts/$big?q=zzz"
  page "script q=PC (many, short)" "/scripts/$big?q=PC"
  page "script q=zq (none, short)" "/scripts/$big?q=zq"
  page "script q=Z (none, one character)" "/scripts/$big?q=Z"
  curl -s -b "$work/cookies" -o "$work/first" "$url/scripts/$big"
  local next
  next="$(grep -o '<a href="[^"]*" rel="next">' "$work/first" | head -1 | sed 's/^<a href="//; s/" rel="next">$//' | unescape)"
  [ -n "$next" ] || { echo "the script page has no Next link (N=$n)" >&2; exit 1; }
  page "script second page (Next link)" "$next"
  page "history" "/scripts/$big/history"
  page "device" "/devices/$device"
  page "groups" "/groups"

  # The API's equivalents of the device status queries.
  # shellcheck disable=SC2016  # PowerShell and OData text, not shell
  local base="/beta/deviceManagement/deviceHealthScripts/$big/deviceRunStates" tail='&$expand=managedDevice&$count=true&$top=25'
  local path
  declare -A orderby=([device]=managedDevice/deviceName [user]=managedDevice/userPrincipalName
    [detection]=detectionState [remediation]=remediationState [updated]=lastStateUpdateDateTime [synced]=lastSyncDateTime)
  api "api default (updated desc)" "$base?\$orderby=$(enc 'lastStateUpdateDateTime desc')$tail"
  for s in device user detection remediation updated synced; do
    for d in asc desc; do api "api \$orderby=$s $d" "$base?\$orderby=$(enc "${orderby[$s]} $d")$tail"; done
  done
  for path in "detectionState eq 'fail'" "remediationState eq 'remediationFailed'" \
      "detectionState eq 'success'" "remediationState eq 'skipped'" \
      "detectionState eq 'fail' and remediationState eq 'remediationFailed'" \
      "contains(managedDevice/deviceName,'PC-0')" "contains(managedDevice/deviceName,'PC-0000042')" \
      "contains(managedDevice/deviceName,'zzz')" "contains(managedDevice/deviceName,'zq')"; do
    api "api \$filter=$path" "$base?\$filter=$(enc "$path")&\$orderby=$(enc 'lastStateUpdateDateTime desc')$tail"
  done
  curl -s -H "Authorization: Bearer $token" -o "$work/first" "$url$base?\$orderby=$(enc 'lastStateUpdateDateTime desc')$tail"
  next="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("@odata.nextLink",""))' "$work/first")"
  [ -n "$next" ] || { echo "the API page has no @odata.nextLink (N=$n)" >&2; exit 1; }
  api "api second page (nextLink)" "${next#"$url"}"
  api "api getRemediationHistory" "/beta/deviceManagement/deviceHealthScripts/$big/getRemediationHistory"

  # What a browser fetches once besides the page (cached an hour).
  measure asset "/assets/dashboard.css" "$url/assets/dashboard.css"
  measure asset "/assets/dashboard.js" "$url/assets/dashboard.js"
  printf '%s\t%s\t%s\t%s\n' "$db" "$n" "$load0" "$(cut -d' ' -f1 /proc/loadavg)" >> "$loads"
  echo "  load average (1 min): $load0 before, $(cut -d' ' -f1 /proc/loadavg) after ($(nproc) cores)"
  stop_server
}

# ---- main ----------------------------------------------------------------------------------------
[ -n "${KEEP:-}" ] && echo "work directory: $work"
start_all=$(date +%s)
for db in $dbs; do
  if [ "$db" = postgres ]; then
    command -v psql > /dev/null || { echo "psql is needed for --db postgres" >&2; exit 1; }
    psql -q -d postgres -c 'SELECT 1' > /dev/null || { echo "no PostgreSQL at $PGHOST:$PGPORT (user $PGUSER)" >&2; exit 1; }
  fi
  for n in "${size_list[@]}"; do
    dir="$work/$db-$n"
    mkdir -p "$dir/data"
    if [ "$db" = postgres ]; then
      [ -s "$dir/database" ] || echo "remediate_dash_${n}_$$" > "$dir/database"
      dbname="$(cat "$dir/database")"
      created_dbs+=("$dbname")
      db_args=(--data-dir "$dir/data" --database "postgres://$PGUSER@$PGHOST:$PGPORT/$dbname")
      if [ ! -e "$dir/seeded" ] || [ "$(psql -At -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$dbname'")" != 1 ]; then
        rm -f "$dir/seeded"
        psql -q -d postgres -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS \"$dbname\" WITH (FORCE)" -c "CREATE DATABASE \"$dbname\""
      fi
    else
      db_args=(--data-dir "$dir/data")
      if [ ! -e "$dir/seeded" ]; then rm -rf "${dir:?}/data"; mkdir -p "$dir/data"; fi
    fi
    if [ -e "$dir/seeded" ]; then
      echo "== $db N=$n: reusing the seeded database in $dir"
      printf '%s\t%s\treused\t\t\n' "$db" "$n" >> "$seeding"
      if [ "$bin" -nt "$dir/seeded" ]; then
        # A newer build may bring migrations and derived tables: start it once (the migrations run),
        # then rebuild the counters and aggregates from the rows, as after seeding.
        echo "== $db N=$n: the binary is newer than the seed: migrating and recounting"
        start_server "$dir/migrate"; stop_server
        "$bin" recount "${db_args[@]}" > "$dir/recount.out"
        touch "$dir/seeded"
      fi
    else
      seed "$db" "$n" "$dir"
    fi
    measure_all "$db" "$n" "$dir"
  done
done
elapsed=$(( $(date +%s) - start_all ))

# ---- report --------------------------------------------------------------------------------------
mkdir -p "$(dirname "$out")"
python3 - "$results" "$seeding" "$out" "$sizes" "$runs" "$commit" "$dirty" "$elapsed" "$loads" "$slow_ms" "$binary" <<'EOF'
import json, os, platform, subprocess, sys, datetime
results, seeding, out, sizes, runs, commit, dirty, elapsed, loads, slow_ms, binary = sys.argv[1:12]
loads = [l.rstrip("\n").split("\t") for l in open(loads) if l.strip()]
sizes = [int(s) for s in sizes.split(",")]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
seeds = [l.rstrip("\n").split("\t") for l in open(seeding) if l.strip()]
LIMIT = 200.0
SORT_LABELS = {"device": "Device", "user": "User", "detection": "Detection status",
               "remediation": "Remediation status", "updated": "Last update", "synced": "Last sync"}
def fnum(s): return float(s) if s else None
data = {}
for db, n, kind, variant, median, size, status, note, allms in rows:
    data.setdefault(db, {}).setdefault((kind, variant), {})[int(n)] = {
        "ms": fnum(median), "bytes": int(size), "status": status, "note": note,
        "runs_ms": [float(x) for x in allms.split(",") if x]}
def label(n): return f"{n:,}"
over = []
for db, variants in data.items():
    print(f"\n### {db}\n")
    print("Seeding: " + "; ".join(f"N={label(int(n))}: {s} s (SQL {q} s, recount {int(s) - int(q)} s), {sz}" if s != "reused" else f"N={label(int(n))}: reused"
                                  for d, n, s, sz, q in seeds if d == db))
    print("Load average (1 min) during the measurements: " + "; ".join(
        f"N={label(int(n))}: {a} → {b}" for d, n, a, b in loads if d == db) + f" ({os.cpu_count()} cores)\n")
    head = ["variant"] + [f"N={label(n)} ms" for n in sizes]
    if len(sizes) > 1: head.append("ratio")
    head += [f"bytes N={label(sizes[-1])}", "notes (largest N)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" + "---:|" * (len(head) - 2) + "---|")
    for (kind, variant), by_n in variants.items():
        cells, flag = [f"{variant}" if kind != "asset" else f"asset {variant}"], ""
        for n in sizes:
            r = by_n.get(n)
            if r is None: cells.append(""); continue
            if r["ms"] is None:
                cells.append(f"**{r['status']}**"); flag = " FAIL"; over.append((db, variant, n, r["status"])); continue
            mark = ""
            if kind != "asset" and r["ms"] > LIMIT:
                mark = " **OVER**"; over.append((db, variant, n, f"{r['ms']} ms"))
            cells.append(f"{r['ms']:.1f}{mark}")
        if len(sizes) > 1:
            a, b = by_n.get(sizes[0]), by_n.get(sizes[-1])
            cells.append(f"{b['ms'] / a['ms']:.1f}×" if a and b and a["ms"] and b["ms"] else "")
        if kind == "page" and variant.startswith("script sort="):
            want = SORT_LABELS[variant.split("=")[1].split()[0]]
            for n in sizes:
                r = by_n.get(n)
                if r and r["status"] == "ok" and not r["note"].startswith(f"sorted by {want}"):
                    r["note"] = f"NOT sorted by {want} (not offered): " + r["note"]
        last = by_n.get(sizes[-1]) or {}
        cells += [f"{last.get('bytes', '')}", last.get("note", "") + flag]
        print("| " + " | ".join(cells) + " |")
print()
if over:
    print(f"Over {LIMIT:.0f} ms (or failed):")
    for db, variant, n, what in over: print(f"  {db} N={label(n)} {variant}: {what}")
else:
    print(f"Every page and API query answered within {LIMIT:.0f} ms.")
def sh(cmd):
    try: return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
doc = {
    "benchmark": "bench/dashboard/pages.sh",
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "commit": commit, "uncommitted_tracked_changes": int(dirty or 0),
    "binary": {"sha256_prefix": binary.split()[0], "modified": binary.split()[1]}, "sizes": sizes, "runs": int(runs),
    "statistic": "median of curl time_total over the runs after one warm-up request (one run only when the warm-up took more than slow_ms); bytes = size_download", "slow_ms": int(slow_ms),
    "limit_ms": LIMIT, "elapsed_s": int(elapsed),
    "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
                "postgres": sh("psql -At -d postgres -c 'SHOW server_version' 2>/dev/null")},
    "seeding": [{"db": d, "n": int(n), "seconds": (None if s == "reused" else int(s)),
                 "sql_seconds": (int(q) if q else None), "reused": s == "reused", "size": sz}
                for d, n, s, sz, q in seeds],
    "load_average": [{"db": d, "n": int(n), "before": float(a), "after": float(b)} for d, n, a, b in loads],
    "results": [{"db": db, "kind": kind, "variant": variant, "n": n, **r}
                for db, variants in data.items() for (kind, variant), by_n in variants.items() for n, r in sorted(by_n.items())],
    "over_limit": [{"db": d, "variant": v, "n": n, "what": w} for d, v, n, w in over],
}
with open(out, "w") as f: json.dump(doc, f, indent=1); f.write("\n")
print(f"\nbinary {binary} (commit {commit}, {dirty} tracked files changed)\nwrote {out}")
EOF
echo "total time: ${elapsed} s"
[ "$failed" = 0 ] || { echo "some requests failed (see above)" >&2; exit 1; }
exit 0
}
