#!/usr/bin/env bash
# Runs the JavaScript client suite (Node's own test runner) against the remediate binary:
# @microsoft/microsoft-graph-client 3.x + @azure/msal-node through the proxy and over --tls, and
# @microsoft/msgraph-beta-sdk (Kiota) over http, each on SQLite and on PostgreSQL.
#   REMEDIATE_BIN  server binary (default: target/release/remediate under the repo root)
#   CI=true        PostgreSQL at 127.0.0.1:5432 is required (otherwise its half is skipped if unreachable)
# Extra arguments go to `node --test` (e.g. --test-name-pattern=PageIterator).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# REMEDIATE_BIN → an absolute path; sets `root`.
. "$here/../lib.sh"

cd "$here"
npm ci --no-audit --no-fund --loglevel=error

# The run's local CA, made once by `remediate serve --tls`; every server of the run reuses it from its own data
# directory. NODE_EXTRA_CA_CERTS is read only when Node starts, so it is set here, before the test runner.
work="$(mktemp -d "${TMPDIR:-/tmp}/remediate-js.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export REMEDIATE_JS_CA_DIR="$work/ca"
NODE_EXTRA_CA_CERTS="$(node support/make-ca.mjs "$REMEDIATE_JS_CA_DIR")"
export NODE_EXTRA_CA_CERTS

node --test "$@" ./*.test.mjs
