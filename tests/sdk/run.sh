#!/usr/bin/env bash
# Runs the msgraph-beta-sdk compatibility suite against the remediate binary.
#   REMEDIATE_BIN  server binary (default: target/release/remediate under the repo root)
#   CI=true        PostgreSQL at 127.0.0.1:5432 is required (otherwise its half is skipped if unreachable)
# Extra arguments go to pytest (e.g. -k paging, -x).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# REMEDIATE_BIN → an absolute path; sets `root`.
. "$here/../lib.sh"
venv="$root/.venv"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"

cd "$here"
exec "$venv/bin/python" -m pytest -q "$here" "$@"
