#!/usr/bin/env bash
# The device agent's footprint (issue 14): stripped binary size, idle RSS and CPU between
# check-ins, and the time from a script's end to its report being stored on the server.
#   bench/agent/footprint.sh [IDLE_SECONDS]      (default 60; builds the release binaries)
# Prints one line per figure; the goals are ≤ 10 MB idle RSS and ≤ 0.1 % of a core idle.
set -euo pipefail
cd "$(dirname "$0")/../.."
idle="${1:-60}"
cargo build --release -q
bin=target/release
work="$(mktemp -d)"
trap 'kill $server $agent 2>/dev/null || true; rm -rf "$work"' EXIT

cp "$bin/remediate-agent" "$work/agent-stripped" && strip "$work/agent-stripped"
echo "agent binary: $(stat -c %s "$bin/remediate-agent") bytes, stripped $(stat -c %s "$work/agent-stripped") bytes"

"$bin/remediate" serve --listen 127.0.0.1:0 --data-dir "$work/data" > "$work/server.out" 2> "$work/server.err" &
server=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$work/server.out" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/server.out")"
token="$("$bin/remediate" token --data-dir "$work/data" --tenant bench \
  --scope DeviceManagementScripts.ReadWrite.All --scope DeviceManagementManagedDevices.ReadWrite.All)"
h=(-s -H "Authorization: Bearer $token" -H "Content-Type: application/json")
script="$(curl "${h[@]}" -X POST "$url/beta/deviceManagement/deviceHealthScripts" \
  -d "{\"displayName\":\"bench\",\"detectionScriptContent\":\"$(printf '#!/bin/sh\nexit 0\n' | base64 -w0)\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
curl "${h[@]}" -X POST "$url/beta/deviceManagement/deviceHealthScripts/$script/assign" \
  -d '{"deviceHealthScriptAssignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"},"runSchedule":{"@odata.type":"#microsoft.graph.deviceHealthScriptHourlySchedule","interval":23}}]}' > /dev/null
secret="$(curl "${h[@]}" -X POST "$url/beta/deviceManagement/agentEnrollmentSecrets" -d '{}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')"
"$work/agent-stripped" enroll --server "$url" --secret "$secret" --state-dir "$work/agent" --name bench > /dev/null

# Script end → stored report: the agent logs the run's end; the report is stored when the
# run state appears. Measured over a fresh --once pass (check-in, run, deliver).
start=$(date +%s%N)
"$work/agent-stripped" run --once --state-dir "$work/agent" 2> "$work/once.err"
end=$(date +%s%N)
echo "one pass (check-in, run, report stored): $(( (end - start) / 1000000 )) ms"

REMEDIATE_AGENT_LOG=warn "$work/agent-stripped" run --state-dir "$work/agent" --check-in-interval 60 2> "$work/agent.err" &
agent=$!
sleep 5
ticks_before=$(awk '{print $14 + $15}' "/proc/$agent/stat")
sleep "$idle"
ticks_after=$(awk '{print $14 + $15}' "/proc/$agent/stat")
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
hz=$(getconf CLK_TCK)
cpu=$(python3 -c "print(f'{($ticks_after - $ticks_before) / $hz / $idle * 100:.3f}')")
echo "idle RSS: $rss_kb kB"
echo "idle CPU over ${idle} s (one check-in a minute): ${cpu} % of a core"
