#!/usr/bin/env bash
# Times the device status table on data seeded by status-table.sh (which calls it; run it again on
# the kept data, e.g. with another binary): starts BIN's server on WORK's data directory (and
# database), makes the requests, stops it.
#   bench/plans/status-table-time.sh WORK BIN [--database URL]
# Prints one line per request: milliseconds (curl total time of the second request), status, what.
set -euo pipefail
work="$1"; bin="$2"; shift 2
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" "$@" > "$work/server-time.out" 2> "$work/server-time.err" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 1 1200); do grep -q 'listening on' "$work/server-time.out" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/server-time.out" | tail -1)"
token="$(cat "$work/token")"; big="$(cat "$work/big")"
link="$("$bin" login-link --tenant bench --scope DeviceManagementScripts.Read.All \
  --scope DeviceManagementManagedDevices.Read.All --data-dir "$work/data" "$@" --public-url "$url")"
cookie="$(curl -s -o /dev/null -D - "$link" | grep -io 'remediate_session=[0-9a-f]*' | head -1)"
t() { # what, curl args...
  local what="$1"; shift
  curl -s -o /dev/null "$@" || true
  local ms status
  read -r status ms < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$@")
  printf '%8.1f  %s  %s\n' "$(echo "$ms * 1000" | bc -l)" "$status" "$what"
}
page() { t "page $1" -H "Cookie: $cookie" "$url/scripts/$big?$1"; }
api() { t "api $1" -H "Authorization: Bearer $token" "$url/beta/deviceManagement/deviceHealthScripts/$big/deviceRunStates?$1"; }
for sort in device user detection remediation updated synced; do
  for dir in asc desc; do page "sort=$sort&dir=$dir"; done
done
for f in "detection=fail" "detection=notApplicable" "remediation=remediationFailed" "remediation=scriptError" \
         "detection=fail&remediation=scriptError" "detection=success&remediation=remediationFailed"; do
  page "$f"; page "$f&sort=device&dir=asc"; page "$f&sort=synced&dir=desc"
done
for q in pc- pc-12 pc-1234 pc-123456 zzz; do
  page "q=$q"; page "q=$q&sort=device&dir=asc"; page "q=$q&detection=fail"
done
# The API: the same orders and filters, with $expand=managedDevice and $count.
for ob in managedDevice/deviceName managedDevice/userPrincipalName remediationState lastSyncDateTime; do
  for dir in asc desc; do api "\$orderby=$ob%20$dir&\$top=25&\$expand=managedDevice"; done
done
api "\$filter=detectionState%20eq%20'fail'&\$count=true&\$top=25"
api "\$filter=detectionState%20eq%20'fail'%20and%20remediationState%20eq%20'scriptError'&\$count=true&\$top=25"
api "\$filter=contains(managedDevice/deviceName,'pc-1234')&\$count=true&\$top=25&\$expand=managedDevice"
api "\$filter=contains(managedDevice/deviceName,'zzz')&\$count=true&\$top=25&\$expand=managedDevice"
