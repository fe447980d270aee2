#!/usr/bin/env bash
# Property-based API testing with schemathesis against the live server's /openapi.json
# (coverage, fuzzing and stateful phases; checks: no 5xx, documented statuses, content types,
# response schemas, and rejection of invalid data).
#   REMEDIATE_BIN        server binary (default target/release/remediate)
#   SCHEMATHESIS_TIME    time budget in seconds (default 120)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${REMEDIATE_BIN:-$root/target/release/remediate}"
venv="$root/.venv-schemathesis"
[ -x "$bin" ] || { echo "schemathesis/run.sh: no server binary at $bin" >&2; exit 1; }
[ -x "$venv/bin/schemathesis" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"; }
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
# One schemathesis run saw "Server Unavailable" once (1 of 4 clean-clone CI runs; reruns pass). Suspected: its
# pooled keep-alive connection reused just as the server's 60 s idle timeout closed it. Until that is confirmed,
# the idle timeout is raised here, and a failure prints the server's state and log (below).
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --idle-timeout-secs 600 > "$work/out" 2> "$work/err" &
server=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$work/out" 2>/dev/null && break; sleep 0.1; done
address="$(grep -o 'http://[0-9.:]*' "$work/out")"
token="$("$bin" token --data-dir "$work/data" --tenant schemathesis \
  --scope DeviceManagementScripts.ReadWrite.All --scope DeviceManagementManagedDevices.ReadWrite.All \
  --scope DeviceManagementManagedDevices.PrivilegedOperations.All \
  --scope DeviceManagementRBAC.ReadWrite.All --scope DeviceManagementConfiguration.ReadWrite.All \
  --scope Group.ReadWrite.All --scope Device.Read.All)"
cd "$work"
"$venv/bin/schemathesis" run "$address/openapi.json" --url "$address/beta" \
  -H "Authorization: Bearer $token" \
  -c not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
  --generation-deterministic -n 20 --max-time "${SCHEMATHESIS_TIME:-120}" --no-color || {
  status=$?
  if kill -0 "$server" 2>/dev/null; then echo "schemathesis/run.sh: the server is still running" >&2
  else echo "schemathesis/run.sh: the server process is gone" >&2; fi
  echo "schemathesis/run.sh: server warnings and errors, then its last 20 log lines:" >&2
  grep -E 'WARN|ERROR|panicked' "$work/err" | tail -40 >&2 || true
  tail -20 "$work/err" >&2
  exit "$status"
}
