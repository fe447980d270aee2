#!/usr/bin/env bash
# Second look at the discrepancies of run.sh, on the data run.sh left in $WORK (run it right after run.sh):
#  A. runSummary p50 at 1 client, 10k and 1M servers alternated twice (noise check of ratio 2)
#  B. POST SQLite c64 again, with oha's own CPU time (load-generator cost on the 2 shared cores)
#  C. the SQLite floor with random keys (as the server) vs sequential keys (as bench/floor forms them)
#  D. cross-check only: the repo's prebuilt bench/target/release/remediate-bench-floor (not rebuilt) fed our DDL/row
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
R=${REMEDIATE:-$HERE/../../target/release/remediate}
OHA=${OHA:-$(command -v oha || echo /root/.cargo/bin/oha)}
WORK=${WORK:-/tmp/indep/run}; OUT=$HERE/results; SECS=${SECS:-10}; PY="python3 $HERE/check.py"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/recheck.txt"; }
: > "$OUT/recheck.txt"; log "uptime: $(uptime)"
PIDS=(); trap 'for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done' EXIT
start() { "$R" serve --listen 127.0.0.1:0 --data-dir "$1" > "$1.out" 2> "$1.log" & SPID=$!; PIDS+=("$SPID")
  for _ in $(seq 100); do grep -q 'listening on' "$1.out" 2>/dev/null && break; sleep 0.1; done
  ADDR=$(sed -n 's/.*listening on //p' "$1.out" | head -1); }
stop() { kill "$SPID"; wait "$SPID" 2>/dev/null || true; }
D=$WORK/sqlite; S=$WORK/s10k; rm -rf "$S"; mkdir -p "$S"; cp "$WORK/schema.db" "$S/remediate.db"; cp "$D/signing-key.pk8" "$S/"
TOKEN=$("$R" token --data-dir "$D" --tenant indep --scope DeviceManagementScripts.ReadWrite.All --scope DeviceManagementManagedDevices.ReadWrite.All)
SID=$(python3 -c "import sqlite3;print(sqlite3.connect('$S/remediate.db').execute('select scriptId from device_run_states where managedDeviceId is null limit 1').fetchone()[0])")
for round in 1 2; do for dir in "$S" "$D"; do
  start "$dir"; n=$(basename "$dir")
  "$OHA" -z ${SECS}s -c 1 --no-tui --output-format json -H "Authorization: Bearer $TOKEN" \
    "$ADDR/beta/deviceManagement/deviceHealthScripts/$SID/runSummary" > "$WORK/rs.json"
  $PY oha-summary "$WORK/rs.json" > "$OUT/recheck_runsummary_${n}_r$round.json"; stop
  log "runSummary $n round $round: $(cat "$OUT/recheck_runsummary_${n}_r$round.json")"
done; done
POSTBODY='{"@odata.type":"#microsoft.management.services.api.deviceHealthScriptDeviceState","detectionState":"fail","remediationState":"success","lastStateUpdateDateTime":"2025-03-01T10:00:00.1234567+02:00","lastSyncDateTime":"2025-03-01T08:00:00Z","expectedStateUpdateDateTime":"2025-03-02T08:00:00Z","preRemediationDetectionScriptOutput":"Disk 91% full","preRemediationDetectionScriptError":"","remediationScriptError":"","postRemediationDetectionScriptOutput":"Disk 40% full","postRemediationDetectionScriptError":""}'
start "$D"
/usr/bin/time -f '%U %S %e' -o "$WORK/ohatime" "$OHA" -z ${SECS}s -c 64 --no-tui --output-format json -m POST \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d "$POSTBODY" \
  "$ADDR/beta/deviceManagement/deviceHealthScripts/$SID/deviceRunStates" > "$WORK/post.json"
SCPU=$(awk '{print ($14+$15)/100}' /proc/$SPID/stat); stop
$PY oha-summary "$WORK/post.json" > "$OUT/recheck_post_c64.json"
log "POST sqlite c64 again: $(cat "$OUT/recheck_post_c64.json")"
log "oha user/sys/elapsed s: $(cat "$WORK/ohatime"); server CPU s over its life (incl. startup): $SCPU"
for mode in seed seq; do
  $PY sqlite-floor "$WORK/schema.db" "$WORK/floor.db" $SECS 100 $mode > "$OUT/recheck_floor_py_$mode.json"
  log "py floor 100/tx $mode: $(cat "$OUT/recheck_floor_py_$mode.json")"
done
FLOOR=$HERE/../target/release/remediate-bench-floor
if [ -x "$FLOOR" ]; then
  python3 - "$WORK/schema.db" "$WORK/ddl.sql" "$WORK/row.json" <<'PYEOF'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.row_factory = sqlite3.Row
open(sys.argv[2], "w").write(";\n".join(r[0] for r in c.execute("SELECT sql FROM sqlite_master WHERE tbl_name='device_run_states' AND sql IS NOT NULL")) + ";\n")
r = c.execute("SELECT * FROM device_run_states WHERE managedDeviceId IS NOT NULL LIMIT 1").fetchone()
json.dump(dict(r), open(sys.argv[3], "w"))
PYEOF
  "$FLOOR" sqlite --db "$WORK/floor.db" --ddl "$WORK/ddl.sql" --row "$WORK/row.json" --rows-per-tx 100 --seconds $SECS > "$OUT/recheck_floor_rust_repo_binary.json"
  log "repo's Rust floor binary 100/tx (sequential keys): $(cat "$OUT/recheck_floor_rust_repo_binary.json")"
fi
rm -f "$WORK"/floor.db*
log "uptime: $(uptime)"
