#!/usr/bin/env python3
"""Shares of a server's CPU samples by component, from `perf script` output (perf record -g).

  perf script -i bench/.work/perf-remediate-sqlite.data --no-inline -F comm,tid,ip,sym,dso | python3 bench/perf_breakdown.py

Each sample goes to the component of the frame nearest the leaf that matches one of the patterns below (so
an allocation inside JSON encoding counts as allocation, a memcpy inside row decoding as row decoding); samples
in the kernel are split by the nearest user frame's component only when --kernel-by-caller is given (default:
one "kernel" share: syscalls, TCP over loopback, scheduling). Prints a Markdown table.
"""
import re
import sys

# (component, regex on the symbol), in priority order for one frame
PATTERNS = [
    ("allocation", r"^(mi_|_mi_|mi\b|__rust_alloc|__rust_dealloc|__rust_realloc|__rdl_|malloc|free|realloc|calloc|"
                   r"_int_malloc|_int_free|cfree|alloc::raw_vec::finish_grow|alloc::alloc::|__libc_malloc|__libc_free|"
                   r"__libc_realloc|sdallocx|mallocx|tcache)"),
    ("SQL execution (SQLite)", r"^(sqlite3|vdbe|btree|pager|pcache|walIndex|sqlite)"),
    ("authentication (token check)", r"remediate_api::auth|jsonwebtoken|remediate_api::agents::check_credential"),
    ("paging token, query fingerprint", r"remediate_api::paging"),
    ("metrics", r"remediate_api::metrics|prometheus_client"),
    ("logging/tracing", r"tracing_subscriber|tracing_core|tracing::|<tracing::|sharded_slab|nu_ansi_term"),
    ("JSON encoding", r"serde_json::ser|remediate_wire::encode|RecordJson|ValueJson|Instant>::iso|::iso\b|"
                      r"remediate_domain::time|remediate_api::ctx::ListBody|json_body|serde_json::value::ser|"
                      r"itoa::|ryu::|format_escaped_str"),
    ("row decoding (store)", r"serde_json::de|serde_core::de|remediate_store::codec|remediate_store::db::|remediate_store::reads|"
                             r"remediate_store::connect|remediate_store::plans|remediate_store::counters|"
                             r"remediate_store::translate|SqlStore|rusqlite::"),
    ("PostgreSQL driver (tokio-postgres, deadpool; sqlx before)", r"sqlx|sqlx_core|sqlx_postgres|tokio_postgres|postgres_protocol|postgres_types|deadpool"),
    ("OData parse/bind, routing", r"remediate_odata|remediate_api::query|remediate_api::route|remediate_api::ctx|"
                                  r"remediate_api::dispatch|remediate_api::device|percent_encoding"),
    ("request ids (uuid/getrandom)", r"uuid::|getrandom|rand::"),
    ("HTTP (hyper/axum/tower, server.rs, guard; floor: its handler)", r"hyper|axum|tower|http::|httparse|remediate_api::server|"
                                                 r"remediate_api::guard|remediate_api::respond|h1::|bytes::|"
                                                 r"remediate_bench_floor"),
    ("tokio runtime", r"tokio::|mio::|parking_lot|futures_util|std::sys::pal::unix::thread|std::thread"),
]
COMPILED = [(name, re.compile(p)) for name, p in PATTERNS]


def classify(frames, kernel_by_caller):
    """frames: list of (sym, dso), leaf first."""
    if frames and ("[kernel" in frames[0][1] or frames[0][1].startswith("[")) and not kernel_by_caller:
        return "kernel (syscalls, loopback TCP, scheduling)"
    for sym, dso in frames:
        if "[kernel" in dso:
            continue
        # the floor's own functions first (its render and page queries are its encoding and decoding)
        if sym.startswith(("remediate_bench_floor::render", "remediate_bench_floor::put_",
                           "remediate_bench_floor::base64url")):
            return "JSON encoding"
        if sym.startswith(("remediate_bench_floor::sqlite_page", "remediate_bench_floor::postgres_page",
                           "remediate_bench_floor::parse_filters")):
            return "row decoding (store)"
        for name, rx in COMPILED:
            if rx.search(sym):
                return name
        if "libc" in dso and sym.startswith(("__memmove", "__memcpy", "memcpy", "__memset", "memset", "__strlen",
                                            "__memcmp", "memcmp", "__memchr")):
            continue    # a libc string function: its caller's component
    if frames and "libc" in frames[0][1]:
        return "libc (other)"
    return "other"


def main():
    kernel_by_caller = "--kernel-by-caller" in sys.argv
    counts = {}
    total = 0
    frames = []
    header = True

    def flush():
        nonlocal total, frames
        if frames:
            c = classify(frames, kernel_by_caller)
            counts[c] = counts.get(c, 0) + 1
            total += 1
        frames = []

    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            flush()
            header = True
            continue
        if header:
            header = False      # "comm tid ..." line of a sample
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            frames.append((sym, m.group(2)))
    flush()
    print(f"| component | share of samples ({total}) |")
    print("|---|---:|")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {100.0 * n / total:.1f}% |")


if __name__ == "__main__":
    main()
