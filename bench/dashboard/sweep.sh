#!/usr/bin/env bash
# Every filter × sort the dashboard's device status table offers, through the API, on data seeded by
# pages.sh (docs/benchmarks.md, "Dashboard at scale"): the big script's run states with each of 6 sorts
# × 2 directions × 6 detection × 5 remediation × 5 device-name search values (none, 'PC-00001' for
# 100 devices, 'zq' for none, 'PC-0000042' for one, 'PC' for all) — 1,800 requests, each the best of
# two — and prints every one above 50 ms, the slowest first, and the slowest overall.
#
#   bench/dashboard/sweep.sh DIR sqlite|postgres [N]
#
#   DIR  a work directory kept by `KEEP=1 bench/dashboard/pages.sh --reuse DIR --sizes N …`
#   N    the size to sweep (default 1000000)
#
# Needs the release binary (target/release/remediate, built by pages.sh), python3; for PostgreSQL
# the database pages.sh named in DIR/postgres-N/database on 127.0.0.1:5432 (PGHOST/PGPORT/PGUSER).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
dir="$1" db="$2" n="${3:-1000000}"
bin=target/release/remediate
TENANT='5e7a1c9d-2b40-4f6e-9a31-0c8d7e6f5a42'   # pages.sh's
case "$db" in
  sqlite) args=(--data-dir "$dir/sqlite-$n/data") ;;
  postgres)
    name="$(cat "$dir/postgres-$n/database")"
    args=(--data-dir "$dir/postgres-$n/data"
      --database "postgres://${PGUSER:-postgres}@${PGHOST:-127.0.0.1}:${PGPORT:-5432}/$name") ;;
  *) echo "the database is sqlite or postgres" >&2; exit 2 ;;
esac
big="$(cat "$dir/$db-$n/big")"
log="$(mktemp -d)"
"$bin" serve --listen 127.0.0.1:0 "${args[@]}" > "$log/out" 2> "$log/err" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$log"' EXIT
for _ in $(seq 1 600); do
  grep -q 'listening on' "$log/out" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$log/err" >&2; exit 1; }
  sleep 0.1
done
url="$(grep -o 'http://[0-9.:]*' "$log/out" | tail -1)"
token="$("$bin" token "${args[@]:0:2}" --tenant "$TENANT" \
  --scope DeviceManagementScripts.Read.All --scope DeviceManagementManagedDevices.Read.All | tail -1)"
python3 - "$url" "$token" "$big" "$db" <<'PY'
import itertools, sys, time, urllib.parse, urllib.request
url, token, big, db = sys.argv[1:5]
orders = ["managedDevice/deviceName", "managedDevice/userPrincipalName", "detectionState",
          "remediationState", "lastStateUpdateDateTime", "lastSyncDateTime"]
detections = [None, "fail", "success", "notApplicable", "scriptError", "pending"]
remediations = [None, "skipped", "scriptError", "remediationFailed", "success"]
searches = [None, "PC-00001", "zq", "PC-0000042", "PC"]
slow, n, worst = [], 0, (0.0, "", "")
for order, direction, det, rem, q in itertools.product(orders, ["asc", "desc"], detections, remediations, searches):
    parts = []
    if det: parts.append(f"detectionState eq '{det}'")
    if rem: parts.append(f"remediationState eq '{rem}'")
    if q: parts.append(f"contains(managedDevice/deviceName,'{q}')")
    query = {"$orderby": f"{order} {direction}", "$top": "25", "$expand": "managedDevice"}
    if parts: query["$filter"] = " and ".join(parts)
    target = f"{url}/beta/deviceManagement/deviceHealthScripts/{big}/deviceRunStates?" + \
        urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    best = None
    for _ in range(2):
        request = urllib.request.Request(target, headers={"Authorization": f"Bearer {token}"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as reply:
            reply.read()
        ms = (time.perf_counter() - start) * 1000
        best = ms if best is None else min(best, ms)
    n += 1
    row = (best, query.get("$filter", ""), query["$orderby"])
    worst = max(worst, row)
    if best > 50:
        slow.append(row)
print(f"{db}: {n} requests; over 50 ms: {len(slow)}; over 200 ms: {sum(1 for s in slow if s[0] > 200)}")
for ms, f, o in sorted(slow, reverse=True):
    print(f"{ms:8.1f} ms  {f or '(no filter)'}  /  {o}")
print(f"slowest: {worst[0]:.1f} ms  {worst[1] or '(no filter)'}  /  {worst[2]}")
PY
