# Shared by tests/{sdk,js,browser}/run.sh (sourced): resolves the server binary the suites run.
#   REMEDIATE_BIN  server binary (default: target/release/remediate under the repo root); a relative path is
#                  taken from where run.sh was called. Exported as an absolute path.
# Sets `root` (the repository) and exits with a message when the binary is missing.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${REMEDIATE_BIN:-}" ]; then
  case "$REMEDIATE_BIN" in
    /*) bin="$REMEDIATE_BIN" ;;
    *) bin="$PWD/$REMEDIATE_BIN" ;;
  esac
else
  bin="$root/target/release/remediate"
fi
if [ ! -x "$bin" ]; then
  echo "run.sh: server binary not found or not executable: $bin (build it, or set REMEDIATE_BIN)" >&2
  exit 1
fi
export REMEDIATE_BIN="$bin"
