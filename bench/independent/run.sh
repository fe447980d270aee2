#!/usr/bin/env bash
# Independent side-by-side measurement of remediate (see README.md). Load generator: oha.
# Usage: bench/independent/run.sh            (about 8 minutes; data in $WORK, on disk)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
R=${REMEDIATE:-$HERE/../../target/release/remediate}
OHA=${OHA:-$(command -v oha || echo /tmp/oha-target/release/oha)}
WORK=${WORK:-/tmp/indep/run}
OUT=${OUT:-$HERE/results}
SECS=${SECS:-10}
DB=remediate_indep_$$
PGURL=postgres://postgres@127.0.0.1:5432/$DB
PY="python3 $HERE/check.py"
rm -rf "$WORK"; mkdir -p "$WORK" "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  psql -X -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" postgres || true
}
trap cleanup EXIT
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/log.txt"; }
: > "$OUT/log.txt"
log "uptime: $(uptime)"
log "oha: $($OHA --version)"

start() {  # start DATA_DIR [--database URL]; sets ADDR, SPID
  local dir=$1; shift
  "$R" serve --listen 127.0.0.1:0 --data-dir "$dir" "$@" > "$dir.out" 2> "$dir.log" &
  SPID=$!; PIDS+=("$SPID")
  for _ in $(seq 100); do grep -q 'listening on' "$dir.out" 2>/dev/null && break; sleep 0.1; done
  ADDR=$(sed -n 's/.*listening on //p' "$dir.out" | head -1)
  log "server pid $SPID at $ADDR ($dir $*)"
}
stop() { kill "$SPID"; wait "$SPID" 2>/dev/null || true; }
hwm() { grep VmHWM /proc/$SPID/status | awk '{print $2}'; }
token() { "$R" token --data-dir "$1" --tenant indep --scope DeviceManagementScripts.ReadWrite.All \
            --scope DeviceManagementManagedDevices.ReadWrite.All; }
oha_run() {  # name clients -- oha args...
  local name=$1 c=$2; shift 2
  "$OHA" -z ${SECS}s -c "$c" --no-tui --output-format json "$@" > "$WORK/$name.oha.json"
  $PY oha-summary "$WORK/$name.oha.json" > "$OUT/$name.json"
  log "$name (c=$c): $(cat "$OUT/$name.json")"
}
seed_bound() {  # POST the README's seed body bound to a fresh device, on a second script
  local H=(-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json") B=$ADDR/beta/deviceManagement
  local s d
  s=$(curl -sf "${H[@]}" -d '{"displayName":"seed","detectionScriptContent":"ZWNobyAx"}' $B/deviceHealthScripts | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  d=$(curl -sf "${H[@]}" -d '{"deviceName":"PC-001","operatingSystem":"Windows"}' $B/managedDevices | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  curl -sf -o /dev/null -w "seed POST %{http_code}\n" "${H[@]}" $B/deviceHealthScripts/$s/deviceRunStates -d '{
  "@odata.type": "#microsoft.management.services.api.deviceHealthScriptDeviceState",
  "managedDevice@odata.bind": "https://graph.microsoft.com/beta/deviceManagement/managedDevices('"'$d'"')",
  "detectionState": "fail", "remediationState": "success",
  "lastStateUpdateDateTime": "2025-03-01T10:00:00.1234567+02:00", "lastSyncDateTime": "2025-03-01T08:00:00Z",
  "expectedStateUpdateDateTime": "2025-03-02T08:00:00Z",
  "preRemediationDetectionScriptOutput": "Disk 91% full", "preRemediationDetectionScriptError": "",
  "remediationScriptError": "", "postRemediationDetectionScriptOutput": "Disk 40% full",
  "postRemediationDetectionScriptError": ""}'
}
# POST body: unbound (oha sends one fixed body, and a bound body would be a 409 after the first request)
POSTBODY='{"@odata.type":"#microsoft.management.services.api.deviceHealthScriptDeviceState","detectionState":"fail","remediationState":"success","lastStateUpdateDateTime":"2025-03-01T10:00:00.1234567+02:00","lastSyncDateTime":"2025-03-01T08:00:00Z","expectedStateUpdateDateTime":"2025-03-02T08:00:00Z","preRemediationDetectionScriptOutput":"Disk 91% full","preRemediationDetectionScriptError":"","remediationScriptError":"","postRemediationDetectionScriptOutput":"Disk 40% full","postRemediationDetectionScriptError":""}'
PAGEQ="?\$filter=detectionState%20eq%20'fail'&\$orderby=lastStateUpdateDateTime%20desc&\$top=100"

# ---------------------------------------------------------------- SQLite
D=$WORK/sqlite; mkdir -p "$D"
start "$D"; TOKEN=$(token "$D"); AUTH="Authorization: Bearer $TOKEN"
t0=$(date +%s.%N)
SID=$($PY load "$ADDR" "$TOKEN" 10000)
log "loaded 10,000 run states via \$batch in $(echo "$(date +%s.%N) - $t0" | bc) s; script $SID"
seed_bound | tee -a "$OUT/log.txt"
$PY summary "$ADDR" "$TOKEN" "$SID" > "$OUT/sqlite_summary_10k.json"; log "summary@10k: $(cat "$OUT/sqlite_summary_10k.json")"
stop; start "$D"
oha_run sqlite_runsummary_10k_c1 1 -H "$AUTH" "$ADDR/beta/deviceManagement/deviceHealthScripts/$SID/runSummary"
stop
sqlite3 "$D/remediate.db" "PRAGMA wal_checkpoint(TRUNCATE)" > /dev/null
cp "$D/remediate.db" "$WORK/schema.db"   # 10k copy: DDL and the seed row for the floor
t0=$(date +%s)
$PY replicate "$D/remediate.db" 100 | tee -a "$OUT/log.txt"
"$R" recount --data-dir "$D" 2>&1 | tail -3 | tee -a "$OUT/log.txt"
log "replicated to 1M and recounted in $(( $(date +%s) - t0 )) s; db $(du -sh "$D" | cut -f1)"
start "$D"
$PY summary "$ADDR" "$TOKEN" "$SID" > "$OUT/sqlite_summary_1m.json"; log "summary@1M: $(cat "$OUT/sqlite_summary_1m.json")"
python3 - "$OUT/sqlite_summary_10k.json" "$OUT/sqlite_summary_1m.json" <<'EOF' | tee -a "$OUT/log.txt"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
bad = {k: (a[k], b[k]) for k in a if b[k] != 100 * a[k]}
print("summary check 1M == 100 x 10k:", "OK" if not bad else "MISMATCH %r" % bad)
EOF
oha_run sqlite_runsummary_1m_c1 1 -H "$AUTH" "$ADDR/beta/deviceManagement/deviceHealthScripts/$SID/runSummary"
curl -sf -H "$AUTH" "$ADDR/beta/deviceManagement/deviceHealthScripts/$SID/deviceRunStates$PAGEQ" > "$WORK/page.json"
log "page bytes: $(wc -c < "$WORK/page.json"), items: $(python3 -c "import json;print(len(json.load(open('$WORK/page.json'))['value']))" )"
oha_run sqlite_getpage_1m_c64 64 -H "$AUTH" "$ADDR/beta/deviceManagement/deviceHealthScripts/$SID/deviceRunStates$PAGEQ"
oha_run sqlite_post_1m_c64 64 -m POST -H "$AUTH" -H "Content-Type: application/json" -d "$POSTBODY" \
  "$ADDR/beta/deviceManagement/deviceHealthScripts/$SID/deviceRunStates"
log "sqlite 1M server VmHWM kB: $(hwm)"; echo "{\"sqlite_1m_vmhwm_kb\": $(hwm)}" > "$OUT/sqlite_rss.json"
stop
log "server log size: $(du -sh "$D.log" | cut -f1)"

# ---------------------------------------------------------------- SQLite insert floor (python sqlite3)
for mode in seed kb; do
  $PY sqlite-floor "$WORK/schema.db" "$WORK/floor.db" $SECS 100 $mode > "$OUT/floor_sqlite_100_$mode.json"
  log "sqlite floor 100/tx $mode: $(cat "$OUT/floor_sqlite_100_$mode.json")"
done
rm -f "$WORK"/floor.db*

# ---------------------------------------------------------------- HTTP floor (python asyncio)
for mode in json static; do
  $PY http-floor 18089 "$WORK/page.json" $mode > "$WORK/httpfloor.out" 2>&1 & HP=$!; PIDS+=("$HP"); sleep 1
  oha_run floor_http_getpage_${mode}_c64 64 "http://127.0.0.1:18089/page"
  log "python http floor VmHWM kB: $(grep VmHWM /proc/$HP/status | awk '{print $2}')"
  kill $HP; wait $HP 2>/dev/null || true
done

# ---------------------------------------------------------------- PostgreSQL
psql -X -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" postgres
P=$WORK/pg; mkdir -p "$P"
start "$P" --database "$PGURL"; TOKEN=$(token "$P"); AUTH="Authorization: Bearer $TOKEN"
t0=$(date +%s.%N)
SID=$($PY load "$ADDR" "$TOKEN" 10000)
log "pg: loaded 10,000 via \$batch in $(echo "$(date +%s.%N) - $t0" | bc) s; script $SID"
seed_bound | tee -a "$OUT/log.txt"
$PY summary "$ADDR" "$TOKEN" "$SID" > "$OUT/pg_summary_10k.json"
stop
$PY pgreplicate "$PGURL" 100 | tee -a "$OUT/log.txt"
"$R" recount --data-dir "$P" --database "$PGURL" 2>&1 | tail -3 | tee -a "$OUT/log.txt"
start "$P" --database "$PGURL"
$PY summary "$ADDR" "$TOKEN" "$SID" > "$OUT/pg_summary_1m.json"; log "pg summary@1M: $(cat "$OUT/pg_summary_1m.json")"
oha_run pg_post_1m_c64 64 -m POST -H "$AUTH" -H "Content-Type: application/json" -d "$POSTBODY" \
  "$ADDR/beta/deviceManagement/deviceHealthScripts/$SID/deviceRunStates"
log "pg server VmHWM kB: $(hwm)"; echo "{\"pg_1m_vmhwm_kb\": $(hwm)}" > "$OUT/pg_rss.json"
stop

# pgbench floor: a copy of device_run_states (same columns, PK and indexes), the stored seed row, fresh ids
PSQL="psql -X -q -At -v ON_ERROR_STOP=1 $PGURL"
$PSQL -c 'CREATE TABLE floor_runs (LIKE device_run_states INCLUDING ALL)'
log "pg floor table indexes: $($PSQL -c "select count(*) from pg_indexes where tablename='floor_runs'")"
VALS=$($PSQL -c "SELECT string_agg(CASE WHEN key IN ('id','managedDeviceId') THEN 'gen_random_uuid()::text' ELSE quote_nullable(value) END, ',') FROM json_each_text((SELECT row_to_json(r) FROM device_run_states r WHERE \"managedDeviceId\" IS NOT NULL LIMIT 1))")
echo "INSERT INTO floor_runs VALUES ($VALS);" > "$WORK/ins1.sql"
{ echo "BEGIN;"; for i in $(seq 100); do echo "INSERT INTO floor_runs VALUES ($VALS);"; done; echo "COMMIT;"; } > "$WORK/ins100.sql"
head -c 400 "$WORK/ins1.sql" | tee -a "$OUT/log.txt"; echo
pgb() {  # name clients file rows_per_tx
  pgbench -n -M prepared -h 127.0.0.1 -U postgres -c "$2" -j 2 -T $SECS -f "$3" "$DB" > "$WORK/$1.txt" 2>&1
  local tps; tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/$1.txt")
  echo "{\"clients\": $2, \"rows_per_tx\": $4, \"tx_per_s\": $tps, \"rows_per_s\": $(echo "$tps * $4" | bc)}" > "$OUT/$1.json"
  log "$1: $(cat "$OUT/$1.json")"
}
pgb floor_pg_1_c64 64 "$WORK/ins1.sql" 1
pgb floor_pg_100_c8 8 "$WORK/ins100.sql" 100
log "uptime: $(uptime)"

# ---------------------------------------------------------------- ratios
python3 - "$OUT" <<'EOF' | tee "$OUT/ratios.txt"
import json, os, sys
o = sys.argv[1]; j = lambda n: json.load(open(os.path.join(o, n + ".json")))
post = j("sqlite_post_1m_c64")["ok_per_s"]; fl_seed = j("floor_sqlite_100_seed")["rows_per_s"]; fl_kb = j("floor_sqlite_100_kb")["rows_per_s"]
rs10 = j("sqlite_runsummary_10k_c1")["p50_ms"]; rs1m = j("sqlite_runsummary_1m_c1")["p50_ms"]
gp = j("sqlite_getpage_1m_c64")["ok_per_s"]; hj = j("floor_http_getpage_json_c64")["ok_per_s"]; hs = j("floor_http_getpage_static_c64")["ok_per_s"]
pp = j("pg_post_1m_c64")["ok_per_s"]; pf = max(j("floor_pg_1_c64")["rows_per_s"], j("floor_pg_100_c8")["rows_per_s"])
rss = j("sqlite_rss")["sqlite_1m_vmhwm_kb"] / 1024
rows = [
 ("1 POST sqlite c64 / py sqlite floor (seed row)", "%.0f / %.0f" % (post, fl_seed), post / fl_seed, 0.131),
 ("1b POST sqlite c64 / py sqlite floor (~1 KB row)", "%.0f / %.0f" % (post, fl_kb), post / fl_kb, 0.131),
 ("2 runSummary p50 1M / 10k (1 client)", "%.3f / %.3f ms" % (rs1m, rs10), rs1m / rs10, 1.0),
 ("3 GET page 1M c64 / py floor (json.dumps per req)", "%.0f / %.0f" % (gp, hj), gp / hj, 4545 / 20928.3),
 ("3b GET page 1M c64 / py floor (static bytes)", "%.0f / %.0f" % (gp, hs), gp / hs, 4545 / 20928.3),
 ("4 POST pg c64 / best pgbench", "%.0f / %.0f" % (pp, pf), pp / pf, 0.124),
 ("5 peak RSS sqlite 1M server, MB", "%.1f" % rss, rss, 97.8),
]
for r in rows: print("%-52s %-22s ours %.3f  repo %.3f" % r)
EOF
