#!/usr/bin/env bash
# Export jobs at scale (docs/exports.md, docs/benchmarks.md "Export jobs"): seeds ROWS run states
# of one script (each bound to its own device, outputs holding quotes, commas and line breaks) in
# a SQLite database, then times a DeviceRunStatesByProactiveRemediation export job (every column,
# csv) on the release server: rows/s from the POST to `completed`, the server's peak RSS
# (VmHWM) before and after the job, the zip's size, and a check that the zip holds ROWS records.
#   bench/exports/export.sh [ROWS]       (default 1000000; builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
rows="${1:-1000000}"
cargo build --release -q -p remediate
bin=target/release/remediate
work="$(mktemp -d)"; [ -n "${KEEP:-}" ] && echo "work directory: $work"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

start_server() {
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" > "$work/server.out" 2> "$work/server.err" &
  server=$!
  for _ in $(seq 1 300); do grep -q 'listening on' "$work/server.out" 2>/dev/null && break; sleep 0.1; done
  url="$(grep -o 'http://[0-9.:]*' "$work/server.out" | tail -1)"
}
stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; : > "$work/server.out"; }

start_server
token="$("$bin" token --data-dir "$work/data" --tenant bench \
  --scope DeviceManagementScripts.ReadWrite.All --scope DeviceManagementConfiguration.ReadWrite.All)"
h=(-s -H "Authorization: Bearer $token" -H "Content-Type: application/json")
script="$(curl "${h[@]}" -X POST "$url/beta/deviceManagement/deviceHealthScripts" \
  -d '{"displayName":"bench","detectionScriptContent":"ZXhpdCAx"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
stop_server

# Seed with SQL (as bench/run.sh copies rows), then rebuild the counters the copy bypassed.
seed_start=$(date +%s)
python3 - "$work/data/remediate.db" "$script" "$rows" <<'EOF'
import sqlite3, sys
db, script, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=OFF")
now = 638_000_000_000_000_000
c.execute(f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
INSERT INTO managed_devices ("tenant", "id", "userId", "userId_lc", "deviceName", "deviceName_lc",
  "managedDeviceOwnerType", "ownerType", "enrolledDateTime", "lastSyncDateTime", "operatingSystem",
  "operatingSystem_lc", "complianceState", "managementAgent", "osVersion", "osVersion_lc",
  "deviceEnrollmentType", "userPrincipalName", "userPrincipalName_lc", "emailAddress", "emailAddress_lc",
  "userDisplayName", "userDisplayName_lc", "model", "model_lc", "isEncrypted", "isSupervised",
  "totalStorageSpaceInBytes", "freeStorageSpaceInBytes", "physicalMemoryInBytes", "joinType", "roleScopeTagIds")
SELECT 'bench', printf('%08x-0000-4000-8000-%012x', i, i), printf('u%d', i), printf('u%d', i),
  printf('PC-%07d', i), printf('pc-%07d', i), 1, 1, {now}, {now}, 'Windows', 'windows', 1, 2,
  '10.0.22631.4602', '10.0.22631.4602', 5, printf('user%d@contoso.com', i), printf('user%d@contoso.com', i),
  printf('user%d@contoso.com', i), printf('user%d@contoso.com', i), printf('User %d', i), printf('user %d', i),
  'Surface Laptop 5', 'surface laptop 5', 1, 0, 256000000000, 128000000000, 16000000000, 1, '["0"]'
FROM n
""")
c.execute(f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
INSERT INTO device_run_states ("tenant", "scriptId", "managedDeviceId", "id", "detectionState",
  "lastStateUpdateDateTime", "expectedStateUpdateDateTime", "lastSyncDateTime",
  "preRemediationDetectionScriptOutput", "preRemediationDetectionScriptOutput_lc",
  "remediationScriptError", "remediationScriptError_lc",
  "postRemediationDetectionScriptOutput", "postRemediationDetectionScriptOutput_lc",
  "remediationState", "assignmentFilterIds")
SELECT 'bench', '{script}', printf('%08x-0000-4000-8000-%012x', i, i),
  '{script}:' || printf('%08x-0000-4000-8000-%012x', i, i), 1 + i % 3,
  {now} + i, {now} + 36000000000 + i, {now} + i,
  printf('Service "Spooler" state: Stopped, StartType: Auto' || char(13, 10) || 'checked %d items, 2 failed' || char(10) || 'done', i),
  printf('service "spooler" state: stopped, starttype: auto' || char(13, 10) || 'checked %d items, 2 failed' || char(10) || 'done', i),
  CASE WHEN i % 3 = 1 THEN 'Restart-Service: access denied, "retry"' END,
  CASE WHEN i % 3 = 1 THEN 'restart-service: access denied, "retry"' END,
  CASE WHEN i % 3 = 1 THEN 'Service "Spooler" state: Running' END,
  CASE WHEN i % 3 = 1 THEN 'service "spooler" state: running' END,
  CASE WHEN i % 3 = 1 THEN 2 ELSE 0 END, '[]'
FROM n
""")
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.close()
EOF
"$bin" recount --data-dir "$work/data" > /dev/null
echo "seeded $rows run states in $(( $(date +%s) - seed_start )) s; database $(du -sh "$work/data/remediate.db" | cut -f1)"

start_server
hwm() { awk '/VmHWM/ {print $2}' "/proc/$server/status"; }
curl -s "$url/healthz" > /dev/null
echo "server peak RSS before the export: $(( $(hwm) / 1024 )) MiB"
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
cpu0=$(cpu)
load0="$(cut -d' ' -f1 /proc/loadavg)"
t0=$(date +%s%N)
job="$(curl "${h[@]}" -X POST "$url/beta/deviceManagement/reports/exportJobs" \
  -d "{\"reportName\":\"DeviceRunStatesByProactiveRemediation\",\"filter\":\"PolicyId eq '$script'\",\"format\":\"csv\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
while :; do
  state="$(curl "${h[@]}" "$url/beta/deviceManagement/reports/exportJobs/$job")"
  status="$(grep -o '"status":"[A-Za-z]*"' <<< "$state" | cut -d'"' -f4)"
  [ "$status" = completed ] || [ "$status" = failed ] && break
  sleep 0.05
done
t1=$(date +%s%N)
[ "$status" = completed ] || { echo "the job failed: $state"; exit 1; }
cpu1=$(cpu)
elapsed_ms=$(( (t1 - t0) / 1000000 ))
cpu_ms=$(( (cpu1 - cpu0) * 1000 / $(getconf CLK_TCK) ))
echo "export job: $rows rows in ${elapsed_ms} ms (POST to completed) = $(( rows * 1000 / elapsed_ms )) rows/s"
runner_ms="$(grep 'export job completed' "$work/server.err" | grep -o 'elapsed_ms=[0-9]*' | cut -d= -f2)"
echo "  the runner's own time (claim to completed): ${runner_ms} ms = $(( rows * 1000 / runner_ms )) rows/s"
echo "  server CPU time during the job: ${cpu_ms} ms (both threads of the pipeline) = $(( rows * 1000 / cpu_ms )) rows per CPU-second; load average $load0 before, $(cut -d' ' -f1 /proc/loadavg) after ($(nproc) cores)"
echo "server peak RSS after the export: $(( $(hwm) / 1024 )) MiB"
link="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["url"])' "$state")"
curl -s -o "$work/export.zip" "$link"
echo "zip: $(stat -c %s "$work/export.zip") bytes"
python3 - "$work/export.zip" "$job" "$rows" <<'EOF'
import csv, io, sys, zipfile
path, job, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
with zipfile.ZipFile(path) as z:
    assert z.namelist() == [f"{job}.csv"], z.namelist()
    info = z.getinfo(f"{job}.csv")
    with z.open(info) as f:
        reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8", newline=""))
        header = next(reader)
        count = sum(1 for _ in reader)
print(f"zip holds {job}.csv: {info.file_size} bytes uncompressed, {len(header)} columns, {count} records")
assert count == rows, (count, rows)
EOF
