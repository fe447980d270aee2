#!/usr/bin/env bash
# Fleet capacity (issue 14): N virtual devices (`remediate-agent simulate`, the agent's own client
# code over real HTTP) with three scripts assigned to all devices (hourly), checking in every 60 s.
#   bench/agent/fleet.sh sqlite   DEVICES [WARMUP_S] [DURATION_S]
#   bench/agent/fleet.sh postgres DEVICES [WARMUP_S] [DURATION_S] [PROCESSES]
# PostgreSQL: a fresh database on 127.0.0.1:5432 (user postgres), PROCESSES server processes
# (default 2) sharing it, one simulator per process with DEVICES/PROCESSES devices each.
# Everything (servers, simulators, PostgreSQL) shares this machine's cores: the figures are
# pessimistic. Prints each simulator's report (check-in p50/p99, reports, errors).
set -euo pipefail
cd "$(dirname "$0")/../.."
db="${1:?sqlite or postgres}"
devices="${2:?number of devices}"
warmup="${3:-90}"
duration="${4:-120}"
processes="${5:-2}"
[ "$db" = sqlite ] && processes=1
cargo build --release -q --bin remediate --bin remediate-agent
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
work="$(mktemp -d "${TMPDIR:-/tmp}/fleet.XXXXXX")"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
  if [ "$db" = postgres ]; then
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $dbname" || true
  fi
}
trap cleanup EXIT

database_args=()
if [ "$db" = postgres ]; then
  dbname="fleet_$$"
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $dbname"
  database_args=(--database "postgres://postgres@127.0.0.1:5432/$dbname")
fi

urls=()
for i in $(seq 1 "$processes"); do
  "$bin/remediate" serve --listen 127.0.0.1:0 --data-dir "$work/data" "${database_args[@]}" \
    > "$work/server$i.out" 2> "$work/server$i.err" &
  pids+=($!)
  for _ in $(seq 1 300); do grep -q 'listening on' "$work/server$i.out" 2>/dev/null && break; sleep 0.1; done
  urls+=("$(grep -o 'http://[0-9.:]*' "$work/server$i.out" | head -1)")
done
url="${urls[0]}"
token="$("$bin/remediate" token --data-dir "$work/data" --tenant fleet \
  --scope DeviceManagementScripts.ReadWrite.All --scope DeviceManagementManagedDevices.ReadWrite.All)"
h=(-s -f -H "Authorization: Bearer $token" -H "Content-Type: application/json")
for n in 1 2 3; do
  script="$(curl "${h[@]}" -X POST "$url/beta/deviceManagement/deviceHealthScripts" \
    -d "{\"displayName\":\"fleet $n\",\"detectionScriptContent\":\"$(printf '#!/bin/sh\nexit 0\n' | base64 -w0)\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  curl "${h[@]}" -X POST "$url/beta/deviceManagement/deviceHealthScripts/$script/assign" \
    -d '{"deviceHealthScriptAssignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"},"runSchedule":{"@odata.type":"#microsoft.graph.deviceHealthScriptHourlySchedule","interval":1}}]}' > /dev/null
done
secret="$(curl "${h[@]}" -X POST "$url/beta/deviceManagement/agentEnrollmentSecrets" \
  -d "{\"usesRemaining\": $((devices + 10))}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')"

sims=()
for i in $(seq 1 "$processes"); do
  REMEDIATE_AGENT_LOG=error "$bin/remediate-agent" simulate --server "${urls[$((i - 1))]}" --secret "$secret" \
    --devices $((devices / processes)) --warmup "$warmup" --duration "$duration" --check-in-interval 60 \
    > "$work/sim$i.out" 2> "$work/sim$i.err" &
  sims+=($!)
done
status=0
for i in $(seq 1 "$processes"); do
  wait "${sims[$((i - 1))]}" || status=$?
  echo "== simulator $i (${urls[$((i - 1))]}, $((devices / processes)) devices, $db)"
  cat "$work/sim$i.out" || true
  tail -3 "$work/sim$i.err" || true
done
exit "$status"
