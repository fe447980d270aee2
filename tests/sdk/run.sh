#!/usr/bin/env bash
# Runs the msgraph-beta-sdk compatibility suite against the remediate binary.
#   REMEDIATE_BIN  server binary (default: target/release/remediate under the repo root)
#   CI=true        PostgreSQL at 127.0.0.1:5432 is required (otherwise its half is skipped if unreachable)
# Extra arguments go to pytest (e.g. -k paging, -x).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv"

if [ -n "${REMEDIATE_BIN:-}" ]; then
  case "$REMEDIATE_BIN" in
    /*) bin="$REMEDIATE_BIN" ;;
    *) bin="$PWD/$REMEDIATE_BIN" ;;  # relative to where run.sh was called from
  esac
else
  bin="$root/target/release/remediate"
fi
if [ ! -x "$bin" ]; then
  echo "run.sh: server binary not found or not executable: $bin (build it, or set REMEDIATE_BIN)" >&2
  exit 1
fi
export REMEDIATE_BIN="$bin"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"

cd "$here"
exec "$venv/bin/python" -m pytest -q "$here" "$@"
