#!/usr/bin/env bash
# Check that explain.py renders exactly the SQL the server sends: run the release binary on a copy of the
# SQLite file made by load.sh with statement logging on, make the requests behind queries a..h (following
# nextLinks for the keyset pages), stop it, and compare the logged statement texts with explain.py's.
# Query i (a device token's own run states) needs an assignment the data set does not have; not checked.
# Also prints each request's status and wall time (HTTP, server on the copied database with statistics).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export PLANS_DIR="${PLANS_DIR:-/tmp/remediate-plans}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
# shellcheck source=venv.sh
source "$HERE/venv.sh"
BIN="${REMEDIATE_BIN:-$REPO/target/release/remediate}"
SRV="$PLANS_DIR/srv"
TENANT='c0ffee00-1111-4222-8333-444455556666'
rm -rf "$SRV" && mkdir -p "$SRV"
"$PY" - "$PLANS_DIR/remediate.db" "$SRV/remediate.db" <<'PY'
import sys, apsw
src = apsw.Connection(sys.argv[1]); dst = apsw.Connection(sys.argv[2])
with dst.backup("main", src, "main") as b:
    b.step()
# The schema came from the migration file: record it as applied so the server does not re-run it.
dst.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL);"
            "INSERT OR IGNORE INTO schema_migrations VALUES (1, 'initial')")
PY
REMEDIATE_LOG='info,sqlx=debug' "$BIN" serve --listen 127.0.0.1:0 --data-dir "$SRV" > "$SRV/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q 'listening on http' "$SRV/server.log" && break; sleep 0.2; done
port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$SRV/server.log" | grep -o '[0-9]*$')
token=$("$BIN" token --data-dir "$SRV" --tenant "$TENANT" --role DeviceManagementScripts.Read.All \
  --role DeviceManagementManagedDevices.Read.All)
big=$("$PY" -c "
import apsw; c = apsw.Connection('$SRV/remediate.db')
print(c.execute('SELECT \"scriptId\" FROM device_run_states GROUP BY 1 ORDER BY COUNT(*) DESC LIMIT 1').fetchall()[0][0])")
base="http://127.0.0.1:$port/beta/deviceManagement"
runs="$base/deviceHealthScripts/$big/deviceRunStates"
req() { curl -s -o "$SRV/resp.json" -w "%{http_code} %{time_total}s  $1\n" -H "Authorization: Bearer $token" "$1"; }
next() { "$PY" -c "import json; print(json.load(open('$SRV/resp.json'))['@odata.nextLink'])"; }
fail="\$filter=detectionState%20eq%20'fail'"
recent="\$filter=detectionState%20eq%20'fail'%20and%20lastStateUpdateDateTime%20ge%202025-09-02T00:00:00Z"
{
  req "$runs"                                                     # a
  req "$runs?$fail"; req "$(next)"                                # b (page 2 has the keyset text of b2)
  req "$runs?\$orderby=lastStateUpdateDateTime%20desc"; req "$(next)"   # c1, c2/c3
  req "$runs?\$orderby=lastStateUpdateDateTime"                   # c4
  req "$runs?$recent&\$orderby=lastStateUpdateDateTime%20desc"; req "$(next)"   # d1, d2
  req "$runs?\$filter=managedDevice/deviceName%20eq%20'pc-00042'" # e
  req "$runs?\$count=true"; req "$runs?$fail&\$count=true"        # f1, f2
  req "$base/deviceHealthScripts/$big/runSummary"                 # g
  req "$base/managedDevices?\$orderby=deviceName"; req "$(next)"  # h1, h2/h3
} | tee "$SRV/requests.log"
kill $pid; wait $pid 2>/dev/null || true
trap - EXIT
"$PY" "$HERE/explain.py" server-check "$SRV/server.log"
