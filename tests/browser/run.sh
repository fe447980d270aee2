#!/usr/bin/env bash
# Runs the dashboard's browser test (Node's own test runner): playwright-core drives Debian's Chromium
# (/usr/bin/chromium, or $CHROMIUM; install it with `apt-get install -y chromium` — a test tool's own browser
# download is not used) against the remediate binary, on SQLite and on PostgreSQL, with axe-core on every page.
#   REMEDIATE_BIN  server binary (default: target/release/remediate under the repo root)
#   CI=true        PostgreSQL at 127.0.0.1:5432 is required (otherwise its half is skipped if unreachable)
# Extra arguments go to `node --test`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# REMEDIATE_BIN → an absolute path; sets `root`.
. "$here/../lib.sh"
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "run.sh: Chromium not found at ${CHROMIUM:-/usr/bin/chromium} (apt-get install -y chromium)" >&2
  exit 1
fi

cd "$here"
# playwright-core never downloads a browser; this keeps it from trying.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund --loglevel=error

node --test "$@" ./*.test.mjs
