#!/usr/bin/env bash
# Write cost of migration 0011 (docs/query-plans.md "The device status table"): inserts 100,000 run
# states and 100,000 managed devices into a database seeded by status-table.sh (KEEP=1), once with
# 0011's indexes and triggers and once without (dropped inside the transaction), each in one
# transaction rolled back; best of three.
#   bench/plans/status-table-writes.sh sqlite WORK      # WORK: the work directory of status-table.sh
#   bench/plans/status-table-writes.sh postgres DBNAME
set -euo pipefail
case "$1" in
sqlite)
python3 - "$2/data/remediate.db" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA synchronous=FULL")
N = 100000
ins = f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {N})
INSERT INTO device_run_states ("tenant","scriptId","managedDeviceId","id","detectionState","lastStateUpdateDateTime","lastSyncDateTime","remediationState","assignmentFilterIds")
SELECT 'bench','wc-script',printf('%08x-0000-4000-8000-%012x', i, i),'wc:'||i,1+i%5,(i*48271)%2147483647,(i*16807)%2147483647,i%5,'[]' FROM n"""
dev = f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {N})
INSERT INTO managed_devices ("tenant","id","deviceName","deviceName_lc","userPrincipalName","userPrincipalName_lc","roleScopeTagIds")
SELECT 'bench','wc-dev-'||i,'WC-'||((i*48271)%2147483647),'wc-'||((i*48271)%2147483647),'u'||((i*69069)%2147483647)||'@x','u'||((i*69069)%2147483647)||'@x','[]' FROM n"""
def run(label, drop):
    for what, sql in (("run states", ins), ("devices", dev)):
        best = None
        for _ in range(3):
            c.execute("BEGIN")
            for d in drop: c.execute(d)
            t = time.time(); c.execute(sql); dt = time.time() - t
            c.execute("ROLLBACK")
            best = dt if best is None else min(best, dt)
        print(f"{label:28s} {what:10s} {N/best:10.0f} rows/s ({best*1000:.0f} ms for {N})")
run("with migration 0011", [])
run("without 0011's objects", ['DROP INDEX device_run_states_remediation', 'DROP INDEX device_run_states_synced',
    'DROP INDEX managed_devices_user', 'DROP TRIGGER managed_devices_created', 'DROP TRIGGER managed_devices_deleted'])
PY
;;
postgres)
db=$2
ins="INSERT INTO device_run_states (\"tenant\",\"scriptId\",\"managedDeviceId\",\"id\",\"detectionState\",\"lastStateUpdateDateTime\",\"lastSyncDateTime\",\"remediationState\",\"assignmentFilterIds\") SELECT 'bench','wc-script','d'||i,'wc:'||i,1+i%5,(i*48271)%2147483647,(i*16807)%2147483647,i%5,'[]' FROM generate_series(1::bigint,100000::bigint) i;"
dev="INSERT INTO managed_devices (\"tenant\",\"id\",\"deviceName\",\"deviceName_lc\",\"userPrincipalName\",\"userPrincipalName_lc\",\"roleScopeTagIds\") SELECT 'bench','wc-dev-'||i,'WC-'||((i*48271)%2147483647),'wc-'||((i*48271)%2147483647),'u'||((i*69069)%2147483647)||'@x','u'||((i*69069)%2147483647)||'@x','[]' FROM generate_series(1::bigint,100000::bigint) i;"
drop='DROP INDEX device_run_states_remediation; DROP INDEX device_run_states_synced; DROP INDEX managed_devices_user; DROP TRIGGER managed_devices_created ON managed_devices; DROP TRIGGER managed_devices_deleted ON managed_devices;'
for mode in with without; do for rep in 1 2 3; do
  d=""; [ $mode = without ] && d="$drop"
  printf 'BEGIN;\n%s\n\\timing on\n%s\n%s\n\\timing off\nROLLBACK;\n' "$d" "$ins" "$dev" | psql -h 127.0.0.1 -U postgres -d $db -q 2>&1 | grep Time | tr '\n' ' '; echo " $mode"
done; done
;;
esac
