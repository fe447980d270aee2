# Sourced by load.sh and explain.sh: a Python venv with apsw pinned to the SQLite version the server
# bundles (libsqlite3-sys 0.30.1 -> SQLite 3.46.0, with SQLITE_ENABLE_STAT4, as apsw's wheel).
# The Debian sqlite3 CLI (3.40.1 here) has no STAT4 and an older planner, so it is not used.
PLANS_DIR="${PLANS_DIR:-/tmp/remediate-plans}"
VENV="${PLANS_VENV:-$PLANS_DIR/venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import apsw, sys; sys.exit(apsw.sqlite_lib_version() != "3.46.0")' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'apsw==3.46.0.1'
fi
PY="$VENV/bin/python"
