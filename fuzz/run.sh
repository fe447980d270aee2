#!/usr/bin/env bash
# Run every cargo-fuzz target for N seconds each (first argument, default 60).
#
#   fuzz/run.sh            # 60 s per target (CI-style smoke run)
#   fuzz/run.sh 1800       # longer run
#
# Environment:
#   FUZZ_TARGETS    space-separated subset of targets (default: all, from `cargo fuzz list`)
#   FUZZ_SANITIZER  address (default) or none
#   FUZZ_JOBS       cargo build jobs (default 1; the machine is shared)
#
# Works on stable Rust: cargo-fuzz needs -Z flags (sanitizer coverage, -Zsanitizer), which
# RUSTC_BOOTSTRAP=1 unlocks; the stable toolchain ships the ASan runtime.
# Exits non-zero if any target crashes (panic, ASan report, timeout, OOM); the input is in
# fuzz/artifacts/<target>/ — copy it to fuzz/regressions/<target>/ so every later run replays it.
set -euo pipefail

secs="${1:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${FUZZ_JOBS:-1}"
sanitizer="${FUZZ_SANITIZER:-address}"
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"

for t in $targets; do
    cargo fuzz build --sanitizer "$sanitizer" "$t"
done

mkdir -p target/logs
status=0
for t in $targets; do
    # New inputs go to a scratch corpus under target/ (ignored); the committed seeds and
    # regression inputs are read-only inputs to every run.
    work="target/corpus-work/$t"
    mkdir -p "$work" "artifacts/$t"
    dirs=("$work")
    for d in "corpus/$t" "regressions/$t"; do
        if [ -d "$d" ]; then dirs+=("$d"); fi
    done
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    if [ -f "dict/$t.dict" ]; then args+=(-dict="dict/$t.dict"); fi
    log="target/logs/$t.log"
    echo "=== $t: ${secs}s, sanitizer=$sanitizer, log fuzz/$log" >&2
    if cargo fuzz run --sanitizer "$sanitizer" "$t" "${dirs[@]}" -- "${args[@]}" >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
        # The panic message (line after "panicked at") or the sanitizer report, and the input.
        grep -E -A2 "panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" "$log" >&2 || tail -40 "$log" >&2
        grep -E "Test unit written|SUMMARY" "$log" >&2 || true
    fi
    cov="$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)"
    execs="$(grep -oE 'stat::number_of_executed_units:[[:space:]]+[0-9]+' "$log" | grep -oE '[0-9]+$' || true)"
    speed="$(grep -oE 'stat::average_exec_per_sec:[[:space:]]+[0-9]+' "$log" | grep -oE '[0-9]+$' || true)"
    echo "=== $t: $result executions=${execs:-?} exec/s=${speed:-?} ${cov:-}" >&2
done
exit "$status"
